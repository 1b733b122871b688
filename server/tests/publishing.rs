//! Publishing, in-process: image uploads, the publish check and its
//! idempotency, listing, yanking, free-for-all and promotion.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use common::{TestApp, TestResponse};
use firmup_client::Sha256Digest;
use firmup_fixtures::release::SignedRelease;
use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_server::db;

/// Creates a product line directly in the database (the catalogue API is
/// not what these tests are about), with the schema's default warranty.
async fn seed_line(t: &TestApp, id: &str) {
    let mut tx = t.app.db.begin().await.unwrap();
    db::catalogue::upsert_product_line(
        &mut tx,
        id,
        &db::catalogue::LineTerms::new(&format!("{id} (test)"), "hardware", 12),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn seeded() -> TestApp {
    let t = TestApp::new().await;
    seed_line(&t, "encoders").await;
    t
}

fn sha(bytes: &[u8]) -> String {
    Sha256Digest::of(bytes).to_hex()
}

async fn upload(t: &TestApp, image: &[u8]) -> TestResponse {
    let len = image.len().to_string();
    t.send(
        Method::PUT,
        &format!("/v1/uploads/{}", sha(image)),
        Some(&t.release_engineer),
        &[("content-length", len.as_str())],
        image.to_vec(),
    )
    .await
}

async fn head(t: &TestApp, image: &[u8]) -> TestResponse {
    t.send(
        Method::HEAD,
        &format!("/v1/uploads/{}", sha(image)),
        Some(&t.release_engineer),
        &[],
        Body::empty(),
    )
    .await
}

async fn publish_as(t: &TestApp, token: &str, line: &str, envelope: &[u8]) -> TestResponse {
    t.send(
        Method::POST,
        &format!("/v1/product-lines/{line}/releases"),
        Some(token),
        &[("content-type", "application/json")],
        envelope.to_vec(),
    )
    .await
}

async fn publish(t: &TestApp, envelope: &[u8]) -> TestResponse {
    publish_as(t, &t.release_engineer, "encoders", envelope).await
}

/// Uploads the release's image and publishes it, asserting 201.
async fn upload_and_publish(t: &TestApp, r: &SignedRelease) -> serde_json::Value {
    let up = upload(t, &r.image).await;
    assert!(
        up.status.is_success(),
        "{}",
        String::from_utf8_lossy(&up.body)
    );
    let p = publish(t, &r.envelope).await;
    assert_eq!(
        p.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&p.body)
    );
    p.json()
}

fn release(version: &str, manifest_version: u64) -> ReleaseBuilder {
    let mut b = ReleaseBuilder::standard().version(version);
    b.manifest.manifest_version = manifest_version;
    b
}

/// Audit entries with this action and target.
async fn audited(t: &TestApp, action: &str, target: &str) -> Vec<serde_json::Value> {
    let all = t
        .get("/v1/admin/audit?limit=1000", Some(&t.admin))
        .await
        .json();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .cloned()
        .collect()
}

fn versions(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}@{}",
                r["version"].as_str().unwrap(),
                r["channel"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn upload_is_stored_once_and_answers_head() {
    let t = TestApp::new().await;
    let image = ReleaseBuilder::standard().image();
    assert_eq!(head(&t, &image).await.status, StatusCode::NOT_FOUND);

    let r = upload(&t, &image).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let body = r.json();
    assert_eq!(body["sha256"], sha(&image));
    assert_eq!(body["length"], image.len() as u64);
    assert_eq!(body["created"], true);

    let h = head(&t, &image).await;
    assert_eq!(h.status, StatusCode::OK);
    assert_eq!(
        h.header("content-length"),
        Some(image.len().to_string().as_str())
    );

    // Already stored: 200, and the body is not even read (an empty body
    // with the same URL is answered the same way).
    let again = upload(&t, &image).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["created"], false);
    let empty = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{}", sha(&image)),
            Some(&t.release_engineer),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(empty.status, StatusCode::OK);

    let rows = db::images::list(&t.app.db).await.unwrap();
    assert_eq!(rows, vec![(sha(&image), image.len() as u64)]);
    let entries = audited(&t, "image.upload", &format!("image/{}", sha(&image))).await;
    assert_eq!(entries.len(), 1, "one upload, one audit record");
    assert_eq!(entries[0]["actor_role"], "release_engineer");
}

#[tokio::test]
async fn upload_with_wrong_digest_is_refused_and_not_stored() {
    let t = TestApp::new().await;
    let image = ReleaseBuilder::standard().image();
    let claimed = sha(b"something else");
    let r = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{claimed}"),
            Some(&t.release_engineer),
            &[],
            image.clone(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "image_digest_mismatch")
    );
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&claimed) && message.contains(&sha(&image)),
        "{message}"
    );
    let h = t
        .send(
            Method::HEAD,
            &format!("/v1/uploads/{claimed}"),
            Some(&t.release_engineer),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(h.status, StatusCode::NOT_FOUND);

    let bad = t
        .send(
            Method::PUT,
            "/v1/uploads/not-hex",
            Some(&t.release_engineer),
            &[],
            image,
        )
        .await;
    assert_eq!(
        (bad.status, bad.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_sha256")
    );
}

#[tokio::test]
async fn upload_over_the_size_limit_is_refused() {
    let t = TestApp::with_config(|c| c.max_image_bytes = 1024).await;
    let image = ReleaseBuilder::standard().image();
    assert!(image.len() > 1024);

    // Announced too large: refused before reading.
    let r = upload(&t, &image).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large")
    );
    // Not announced: refused while streaming, when the limit is passed.
    let chunks: Vec<Result<Bytes, std::io::Error>> = image
        .chunks(512)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{}", sha(&image)),
            Some(&t.release_engineer),
            &[],
            Body::from_stream(futures_util::stream::iter(chunks)),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large")
    );
    assert_eq!(head(&t, &image).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn upload_with_wrong_content_length_is_refused() {
    let t = TestApp::new().await;
    let image = ReleaseBuilder::standard().image();
    for announced in [image.len() + 10, image.len() - 10] {
        let r = t
            .send(
                Method::PUT,
                &format!("/v1/uploads/{}", sha(&image)),
                Some(&t.release_engineer),
                &[("content-length", announced.to_string().as_str())],
                image.clone(),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "length_mismatch"),
            "announced {announced}"
        );
    }
    assert_eq!(head(&t, &image).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn interrupted_upload_leaves_nothing_and_can_be_retried() {
    let t = TestApp::new().await;
    let image = ReleaseBuilder::standard().image();
    let cut: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::copy_from_slice(&image[..1000])),
        Err(std::io::Error::other("connection reset by peer")),
    ];
    let r = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{}", sha(&image)),
            Some(&t.release_engineer),
            &[],
            Body::from_stream(futures_util::stream::iter(cut)),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "upload_interrupted")
    );
    assert_eq!(head(&t, &image).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        t.app.storage.staged_count().await.unwrap(),
        0,
        "no partial upload may remain"
    );

    assert_eq!(upload(&t, &image).await.status, StatusCode::CREATED);
    assert_eq!(head(&t, &image).await.status, StatusCode::OK);
}

#[tokio::test]
async fn uploads_need_the_release_engineer_role() {
    let t = TestApp::new().await;
    let image = ReleaseBuilder::standard().image();
    let device = t.device_token("SN-1").await;
    for token in [&t.technician, &device] {
        let r = t
            .send(
                Method::PUT,
                &format!("/v1/uploads/{}", sha(&image)),
                Some(token),
                &[],
                image.clone(),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::FORBIDDEN, "wrong_role")
        );
    }
    let admin = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{}", sha(&image)),
            Some(&t.admin),
            &[],
            image.clone(),
        )
        .await;
    assert_eq!(
        admin.status,
        StatusCode::CREATED,
        "admins may do everything"
    );
}

#[tokio::test]
async fn publish_is_idempotent_on_the_signed_payload() {
    let t = seeded().await;
    let generation = t.app.catalogue.generation();
    let r = ReleaseBuilder::standard().build();
    let created = upload_and_publish(&t, &r).await;
    assert_eq!(created["status"], "created");
    let rel = &created["release"];
    assert_eq!(rel["version"], "2.1.0");
    assert_eq!(rel["channel"], "stable");
    assert_eq!(rel["manifest_version"], 7);
    assert_eq!(rel["security_counter"], 3);
    assert_eq!(rel["requires"], "2.0.0");
    assert_eq!(rel["hw_compat"], serde_json::json!(["enc-4k-r2"]));
    assert_eq!(rel["images"][0]["sha256"], sha(&r.image));
    assert_eq!(rel["published_by"], "test-release_engineer");
    assert_eq!(rel["free_for_all"], false);
    assert!(
        t.app.catalogue.generation() > generation,
        "the catalogue snapshot is told"
    );

    // The same bytes again: 200, nothing new.
    let again = publish(&t, &r.envelope).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["status"], "already_exists");

    // An extra co-signature changes the envelope, not the signed payload:
    // still the same release.
    let cosigned = ReleaseBuilder::standard()
        .signed_by(&["release-encoders-1", "release-encoders-2", "someone-else"])
        .build();
    assert_ne!(cosigned.envelope, r.envelope);
    let c = publish(&t, &cosigned.envelope).await;
    assert_eq!(c.status, StatusCode::OK, "{:?}", c.body);
    assert_eq!(c.json()["status"], "already_exists");

    // Same version, different signed payload: conflict naming the digest.
    let mut other = ReleaseBuilder::standard();
    other.manifest.release_notes = Some("Different notes.".into());
    let other = other.build();
    let conflict = publish(&t, &other.envelope).await;
    assert_eq!(
        (conflict.status, conflict.error_code().as_str()),
        (StatusCode::CONFLICT, "version_exists")
    );
    let message = conflict.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    let stored = rel["payload_sha256"].as_str().unwrap();
    assert!(message.contains(stored), "{message}");

    // The stored envelope is the first one, byte for byte.
    let m = t
        .get(
            "/v1/product-lines/encoders/releases/stable/2.1.0/manifest",
            Some(&t.technician),
        )
        .await;
    assert_eq!(m.status, StatusCode::OK);
    assert_eq!(m.header("content-type"), Some("application/json"));
    assert_eq!(&m.body[..], &r.envelope[..]);

    let entries = audited(&t, "release.publish", "encoders/stable/2.1.0").await;
    assert_eq!(entries.len(), 1, "only the creation is audited");
    assert_eq!(db::releases::count(&t.app.db).await.unwrap(), 1);
}

#[tokio::test]
async fn manifest_version_must_increase_per_line_and_channel() {
    let t = seeded().await;
    upload_and_publish(&t, &release("2.1.0", 7).build()).await;
    for mv in [7, 6] {
        let r = publish(&t, &release("2.2.0", mv).build().envelope).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::CONFLICT, "manifest_version_not_increasing"),
            "manifest_version {mv}"
        );
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("--manifest-version 8"), "{message}");
    }
    // Another channel has its own sequence.
    let mut beta = release("2.2.0", 7);
    beta.manifest.channel = "beta".into();
    assert_eq!(
        publish(&t, &beta.build().envelope).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        publish(&t, &release("2.2.0", 8).build().envelope)
            .await
            .status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn publish_refuses_what_the_engine_refuses() {
    let t = seeded().await;
    let r = ReleaseBuilder::standard()
        .signed_by(&["release-encoders-1"])
        .build();
    assert_eq!(upload(&t, &r.image).await.status, StatusCode::CREATED);
    let p = publish(&t, &r.envelope).await;
    assert_eq!(
        (p.status, p.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "threshold_not_met")
    );
    // Submitted under another (existing) line: its keys did not sign it.
    seed_line(&t, "decoders").await;
    let good = ReleaseBuilder::standard().build();
    let p = publish_as(&t, &t.release_engineer, "decoders", &good.envelope).await;
    assert_eq!(p.error_code(), "threshold_not_met");
    let p = publish(&t, b"not json").await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    let list = t
        .get("/v1/product-lines/encoders/releases", Some(&t.technician))
        .await;
    assert_eq!(list.json(), serde_json::json!([]), "nothing was stored");
    assert!(
        audited(&t, "release.publish", "encoders/stable/2.1.0")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn publish_needs_a_known_line_uploaded_images_and_a_trust_root() {
    let t = seeded().await;
    let r = ReleaseBuilder::standard().build();
    let p = publish_as(&t, &t.release_engineer, "batteries", &r.envelope).await;
    assert_eq!(
        (p.status, p.error_code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_product_line")
    );

    let p = publish(&t, &r.envelope).await;
    assert_eq!(
        (p.status, p.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "image_missing")
    );
    let message = p.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("firmware.img") && message.contains(&sha(&r.image)),
        "{message}"
    );
    assert!(message.contains("firmup-signer publish"), "{message}");

    let bare = TestApp::with_config(|c| c.trust_root = None).await;
    seed_line(&bare, "encoders").await;
    let p = publish(&bare, &r.envelope).await;
    assert_eq!(
        (p.status, p.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "no_trust_root")
    );
    // Once an admin adds the root, the same release publishes.
    let root = bare
        .send(
            Method::POST,
            "/v1/trust/roots",
            Some(&bare.admin),
            &[],
            RootBuilder::standard().build(),
        )
        .await;
    assert_eq!(root.status, StatusCode::CREATED);
    upload_and_publish(&bare, &r).await;
}

#[tokio::test]
async fn oversize_manifest_is_refused_while_reading() {
    let t = seeded().await;
    let big = vec![b' '; firmup_client::manifest::MAX_MANIFEST_BYTES as usize + 1];
    let p = publish(&t, &big).await;
    assert_eq!(
        (p.status, p.error_code().as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "manifest_too_large")
    );
}

#[tokio::test]
async fn publishing_needs_the_release_engineer_role() {
    let t = seeded().await;
    let r = ReleaseBuilder::standard().build();
    upload(&t, &r.image).await;
    let device = t.device_token("SN-1").await;
    for token in [&t.technician, &device] {
        let p = publish_as(&t, token, "encoders", &r.envelope).await;
        assert_eq!(
            (p.status, p.error_code().as_str()),
            (StatusCode::FORBIDDEN, "wrong_role")
        );
    }
    let l = t
        .get("/v1/product-lines/encoders/releases", Some(&device))
        .await;
    assert_eq!(
        l.status,
        StatusCode::FORBIDDEN,
        "devices use the update check"
    );
    let p = publish_as(&t, &t.admin, "encoders", &r.envelope).await;
    assert_eq!(p.status, StatusCode::CREATED);
}

#[tokio::test]
async fn list_is_sorted_by_semver_and_detail_shows_one() {
    let t = seeded().await;
    upload_and_publish(&t, &release("2.9.0", 7).build()).await;
    upload_and_publish(&t, &release("2.10.0", 8).build()).await;
    let mut beta = release("2.10.0-rc.1", 7);
    beta.manifest.channel = "beta".into();
    upload_and_publish(&t, &beta.build()).await;

    let list = t
        .get("/v1/product-lines/encoders/releases", Some(&t.technician))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(
        versions(&list.json()),
        ["2.10.0@stable", "2.10.0-rc.1@beta", "2.9.0@stable"]
    );

    let d = t
        .get(
            "/v1/product-lines/encoders/releases/stable/2.10.0",
            Some(&t.release_engineer),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.json()["manifest_version"], 8);
    let missing = t
        .get(
            "/v1/product-lines/encoders/releases/stable/9.9.9",
            Some(&t.release_engineer),
        )
        .await;
    assert_eq!(
        (missing.status, missing.error_code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_release")
    );
    let bad = t
        .get(
            "/v1/product-lines/encoders/releases/stable/2.10",
            Some(&t.release_engineer),
        )
        .await;
    assert_eq!(bad.error_code(), "invalid_version");
    let unknown = t
        .get("/v1/product-lines/batteries/releases", Some(&t.technician))
        .await;
    assert_eq!(unknown.error_code(), "unknown_product_line");
}

#[tokio::test]
async fn yank_and_unyank() {
    let t = seeded().await;
    upload_and_publish(&t, &ReleaseBuilder::standard().build()).await;
    let url = "/v1/product-lines/encoders/releases/stable/2.1.0/yank";
    let reason = serde_json::json!({ "reason": "bricks enc-4k-r1 units" });

    let r = t.post_json(url, Some(&t.technician), &reason).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .post_json(
            url,
            Some(&t.release_engineer),
            &serde_json::json!({ "reason": " " }),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_reason");

    let generation = t.app.catalogue.generation();
    let r = t.post_json(url, Some(&t.release_engineer), &reason).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let body = r.json();
    assert!(body["yanked_at"].is_string());
    assert_eq!(body["yank_reason"], "bricks enc-4k-r1 units");
    assert!(t.app.catalogue.generation() > generation);
    let r = t.post_json(url, Some(&t.release_engineer), &reason).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "already_yanked")
    );
    // Listed with its yank, and its manifest is unchanged.
    let list = t
        .get("/v1/product-lines/encoders/releases", Some(&t.technician))
        .await
        .json();
    assert_eq!(list[0]["yank_reason"], "bricks enc-4k-r1 units");

    let r = t
        .send(
            Method::DELETE,
            url,
            Some(&t.release_engineer),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["yanked_at"].is_null());
    let r = t
        .send(
            Method::DELETE,
            url,
            Some(&t.release_engineer),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "not_yanked")
    );
    let missing = t
        .post_json(
            "/v1/product-lines/encoders/releases/stable/3.0.0/yank",
            Some(&t.release_engineer),
            &reason,
        )
        .await;
    assert_eq!(missing.error_code(), "unknown_release");

    let yanks = audited(&t, "release.yank", "encoders/stable/2.1.0").await;
    assert_eq!(yanks.len(), 1);
    assert!(yanks[0]["detail"].as_str().unwrap().contains("bricks"));
    assert_eq!(
        audited(&t, "release.unyank", "encoders/stable/2.1.0")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn free_for_all_can_be_set_at_publish_or_later() {
    let t = seeded().await;
    let r = ReleaseBuilder::standard().build();
    upload(&t, &r.image).await;
    let p = t
        .send(
            Method::POST,
            "/v1/product-lines/encoders/releases?free_for_all=true",
            Some(&t.release_engineer),
            &[],
            r.envelope.clone(),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED);
    assert_eq!(p.json()["release"]["free_for_all"], true);

    let url = "/v1/product-lines/encoders/releases/stable/2.1.0/free-for-all";
    let off = serde_json::json!({ "free_for_all": false });
    assert_eq!(
        t.post_json(url, Some(&t.technician), &off).await.status,
        StatusCode::FORBIDDEN
    );
    let r = t.post_json(url, Some(&t.release_engineer), &off).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["free_for_all"], false);
    let bad = t
        .post_json(
            url,
            Some(&t.release_engineer),
            &serde_json::json!({ "free": 1 }),
        )
        .await;
    assert_eq!(bad.error_code(), "invalid_json");

    let entries = audited(&t, "release.free_for_all", "encoders/stable/2.1.0").await;
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"to\":false")
    );
}

#[tokio::test]
async fn promotion_needs_a_manifest_signed_for_the_target_channel() {
    let t = seeded().await;
    let mut beta = release("2.1.0", 7);
    beta.manifest.channel = "beta".into();
    let beta = beta.build();
    upload_and_publish(&t, &beta).await;
    let url = "/v1/product-lines/encoders/releases/beta/2.1.0/promote";

    // Different images: refused, whatever the signatures.
    let mut other_image = release("2.1.0", 7);
    other_image.image_seed = "another build".into();
    let r = t
        .send(
            Method::POST,
            url,
            Some(&t.release_engineer),
            &[],
            other_image.build().envelope,
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "promotion_mismatch")
    );
    // Different version: refused.
    let r = t
        .send(
            Method::POST,
            url,
            Some(&t.release_engineer),
            &[],
            release("2.1.1", 7).build().envelope,
        )
        .await;
    assert_eq!(r.error_code(), "promotion_mismatch");
    // The same channel again: refused.
    let r = t
        .send(
            Method::POST,
            url,
            Some(&t.release_engineer),
            &[],
            beta.envelope.clone(),
        )
        .await;
    assert_eq!(r.error_code(), "promotion_mismatch");
    // Not signed by the threshold: the engine's verdict.
    let r = t
        .send(
            Method::POST,
            url,
            Some(&t.release_engineer),
            &[],
            release("2.1.0", 7)
                .signed_by(&["release-encoders-2"])
                .build()
                .envelope,
        )
        .await;
    assert_eq!(r.error_code(), "threshold_not_met");

    let stable = release("2.1.0", 7).build();
    let r = t
        .send(
            Method::POST,
            url,
            Some(&t.release_engineer),
            &[],
            stable.envelope.clone(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let body = r.json();
    assert_eq!(body["status"], "created");
    assert_eq!(body["release"]["channel"], "stable");
    let again = t
        .send(
            Method::POST,
            url,
            Some(&t.release_engineer),
            &[],
            stable.envelope,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json()["status"], "already_exists");

    let list = t
        .get("/v1/product-lines/encoders/releases", Some(&t.technician))
        .await
        .json();
    assert_eq!(versions(&list), ["2.1.0@beta", "2.1.0@stable"]);
    let entries = audited(&t, "release.promote", "encoders/stable/2.1.0").await;
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("\"from_channel\":\"beta\"")
    );
    let missing = t
        .send(
            Method::POST,
            "/v1/product-lines/encoders/releases/beta/9.0.0/promote",
            Some(&t.release_engineer),
            &[],
            beta.envelope,
        )
        .await;
    assert_eq!(missing.error_code(), "unknown_release");
}

#[tokio::test]
async fn release_routes_are_in_the_openapi_document() {
    let t = TestApp::new().await;
    let doc = t.get("/openapi.json", None).await.json();
    for path in [
        "/v1/uploads/{sha256}",
        "/v1/product-lines/{line}/releases",
        "/v1/product-lines/{line}/releases/{channel}/{version}",
        "/v1/product-lines/{line}/releases/{channel}/{version}/manifest",
        "/v1/product-lines/{line}/releases/{channel}/{version}/yank",
        "/v1/product-lines/{line}/releases/{channel}/{version}/free-for-all",
        "/v1/product-lines/{line}/releases/{channel}/{version}/promote",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/v1/uploads/{sha256}"]["head"].is_object());
}

#[tokio::test]
async fn releases_differing_only_in_build_metadata_conflict() {
    let t = seeded().await;
    upload_and_publish(&t, &release("2.1.0", 7).build()).await;
    let rebuild = release("2.1.0+rebuild.2", 8).build();
    upload(&t, &rebuild.image).await;
    let r = publish(&t, &rebuild.envelope).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "version_precedence_conflict")
    );
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("2.1.0"), "{message}");
    // Nothing of it was stored.
    assert_eq!(db::releases::count(&t.app.db).await.unwrap(), 1);
    // A real new version is fine.
    upload_and_publish(&t, &release("2.1.1+rebuild.2", 8).build()).await;
}
