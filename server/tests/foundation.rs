//! Health, auth, tokens, audit and the trust chain, in-process.

mod common;

use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use common::TestApp;
use firmup_fixtures::RootBuilder;
use firmup_fixtures::keys::NEXT_ROOT_KEYS;
use firmup_server::app::{App, AppState};
use firmup_server::auth::{authenticate, hash_token};
use firmup_server::domain::roles::Actor;
use firmup_server::{db, invalidation, snapshot};
use serde_json::json;

#[tokio::test]
async fn probes_and_openapi() {
    let t = TestApp::new().await;
    assert_eq!(t.get("/healthz", None).await.status, StatusCode::OK);
    assert_eq!(t.get("/readyz", None).await.status, StatusCode::OK);
    let doc = t.get("/openapi.json", None).await.json();
    assert!(doc["paths"]["/v1/trust/roots"].is_object(), "{doc}");
}

#[tokio::test]
async fn tokens_are_checked_and_roles_enforced() {
    let t = TestApp::new().await;
    let r = t.get("/v1/admin/audit", None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
    let r = t.get("/v1/admin/audit", Some("fu_nonsense")).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let r = t
        .send(
            Method::GET,
            "/v1/admin/audit",
            None,
            &[("authorization", "Basic abc")],
            "",
        )
        .await;
    assert_eq!(r.error_code(), "malformed_authorization");
    let r = t.get("/v1/admin/audit", Some(&t.technician)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "wrong_role")
    );
    assert_eq!(
        t.get("/v1/admin/audit", Some(&t.admin)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn created_tokens_work_are_audited_and_can_be_revoked() {
    let t = TestApp::new().await;
    let r = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &serde_json::json!({ "role": "technician", "label": "bob", "expires_in_days": 1 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let created = r.json();
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("fu_"));

    // Device tokens must name a serial; others must not.
    let r = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &serde_json::json!({ "role": "device", "label": "d" }),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "serial_required")
    );
    let r = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &serde_json::json!({ "role": "device", "label": "d", "serial": "../x" }),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_name");

    let audit = t.get("/v1/admin/audit", Some(&t.admin)).await.json();
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "token.create" && e["detail"].as_str().unwrap().contains("bob"))
        .expect("token creation is audited");
    assert_eq!(entry["actor_role"], "admin");

    // The stored form is a hash: the secret is nowhere in the database.
    let hashes = db::tokens::stored_hashes(&t.app.db).await.unwrap();
    assert!(hashes.iter().all(|h| h != &secret && h.len() == 64));

    // Use the token, so this replica has its lookup cached when it is revoked.
    let r = t.get("/v1/admin/tokens", Some(&secret)).await;
    assert_eq!(r.error_code(), "wrong_role", "a technician token works");
    assert!(t.app.caches.tokens.contains_key(&hash_token(&secret)));

    let id = created["id"].as_str().unwrap();
    let r = t
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{id}"),
            Some(&t.admin),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{id}"),
            Some(&t.admin),
            &[],
            "",
        )
        .await;
    assert_eq!(r.error_code(), "unknown_token");
    // Refused at once, although the lookup was cached with an hour to live.
    let r = t.get("/v1/trust/roots", Some(&secret)).await;
    assert_eq!(r.status, StatusCode::OK, "public endpoint ignores tokens");
    let r = t.get("/v1/admin/tokens", Some(&secret)).await;
    assert_eq!(r.error_code(), "invalid_token");
}

#[tokio::test]
async fn root_rotation_is_verified_and_served() {
    let t = TestApp::new().await;
    let chain = t.get("/v1/trust/roots", None).await.json();
    assert_eq!(chain["latest_version"], 1);
    assert_eq!(chain["roots"].as_array().unwrap().len(), 1);

    // Missing the old keys' signatures: refused with the engine's code.
    let bad = RootBuilder::standard()
        .next()
        .root_keys(&NEXT_ROOT_KEYS, 2)
        .signed_by(&["root-4", "root-5"])
        .build();
    let r = t
        .send(Method::POST, "/v1/trust/roots", Some(&t.admin), &[], bad)
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "threshold_not_met")
    );

    let good = RootBuilder::standard()
        .next()
        .root_keys(&NEXT_ROOT_KEYS, 2)
        .signed_by(&["root-1", "root-2", "root-4", "root-5"])
        .build();
    let r = t
        .send(
            Method::POST,
            "/v1/trust/roots",
            Some(&t.release_engineer),
            &[],
            good.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .send(
            Method::POST,
            "/v1/trust/roots",
            Some(&t.admin),
            &[],
            good.clone(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    let after1 = t.get("/v1/trust/roots?after=1", None).await.json();
    assert_eq!(after1["latest_version"], 2);
    let served = after1["roots"][0].to_string();
    let original: serde_json::Value = serde_json::from_slice(&good).unwrap();
    assert_eq!(served, original.to_string());
    // Served byte-exact, so devices verify what was signed.
    let raw = t.get("/v1/trust/roots?after=1", None).await.body;
    let needle = std::str::from_utf8(&good).unwrap().trim_end();
    assert!(std::str::from_utf8(&raw).unwrap().contains(needle));

    // Replaying v2 is refused: only version 3 may follow.
    let r = t
        .send(Method::POST, "/v1/trust/roots", Some(&t.admin), &[], good)
        .await;
    assert_eq!(r.error_code(), "root_version_skip");
}

#[tokio::test]
async fn malformed_json_gets_the_error_envelope() {
    let t = TestApp::new().await;
    let r = t
        .send(
            Method::POST,
            "/v1/admin/tokens",
            Some(&t.admin),
            &[("content-type", "application/json")],
            "{\"role\": ",
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let r = t
        .send(
            Method::POST,
            "/v1/admin/tokens",
            Some(&t.admin),
            &[("content-type", "application/json")],
            "{\"role\": \"wizard\", \"label\": \"x\"}",
        )
        .await;
    assert_eq!(r.error_code(), "invalid_json");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wizard")
    );
    let r = t
        .send(Method::POST, "/v1/admin/tokens", Some(&t.admin), &[], "{}")
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
}

/// Two transactions that read, then write, at the same time: the second
/// waits for the first (on SQLite `BEGIN IMMEDIATE`, on PostgreSQL the
/// write lock every write transaction takes) instead of failing (SQLite:
/// `SQLITE_BUSY_SNAPSHOT`) or writing from a stale read, and reads what the
/// first wrote.
#[tokio::test]
async fn concurrent_read_then_write_transactions_both_commit() {
    let t = TestApp::new().await;
    let run = |n: u32| {
        let db = t.app.db.clone();
        tokio::spawn(async move {
            let mut tx = db.begin().await?;
            let before = db::audit::count_action(&mut tx, "test.race").await?;
            // Long enough for the other task to read too, were it allowed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            db::audit::record(
                &mut tx,
                &Actor::cli(),
                "test.race",
                &format!("race/{n}"),
                json!({ "before": before }),
            )
            .await?;
            tx.commit().await?;
            Ok::<i64, db::Error>(before)
        })
    };
    let (first, second) = (run(1), run(2));
    let first = first.await.unwrap().expect("first transaction commits");
    let second = second.await.unwrap().expect("second transaction commits");
    let mut seen = [first, second];
    seen.sort_unstable();
    assert_eq!(
        seen,
        [0, 1],
        "the later transaction saw the earlier one's write"
    );
}

#[tokio::test]
async fn token_expiry_is_bounded() {
    let t = TestApp::new().await;
    for days in [json!(0), json!(3651), json!(u32::MAX)] {
        let r = t
            .post_json(
                "/v1/admin/tokens",
                Some(&t.admin),
                &json!({ "role": "technician", "label": "x", "expires_in_days": days }),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "invalid_expiry"),
            "{days}"
        );
    }
    let r = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &json!({ "role": "technician", "label": "x", "expires_in_days": 3650 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let expires = time::OffsetDateTime::parse(
        r.json()["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let days = (expires - time::OffsetDateTime::now_utc()).whole_days();
    assert!((3649..=3650).contains(&days), "{days}");
}

#[tokio::test]
async fn token_list_is_paged_newest_first() {
    let t = TestApp::new().await;
    for n in 0..5 {
        let r = t
            .post_json(
                "/v1/admin/tokens",
                Some(&t.admin),
                &json!({ "role": "release_engineer", "label": format!("re-{n}") }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    // 3 tokens from TestApp (admin, release engineer, technician) + 5.
    let all = t.get("/v1/admin/tokens", Some(&t.admin)).await.json();
    let all = all.as_array().unwrap().clone();
    assert_eq!(all.len(), 8);
    assert_eq!(all[0]["label"], "re-4", "newest first");
    // Compared as times: RFC 3339 text drops trailing zeros of the
    // fraction, so "…:01.12Z" sorts after "…:01.123Z" as a string.
    let key = |v: &serde_json::Value| {
        (
            time::OffsetDateTime::parse(
                v["created_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap(),
            v["id"].as_str().unwrap().to_string(),
        )
    };
    assert!(all.windows(2).all(|w| key(&w[0]) > key(&w[1])));

    // Walk the pages with the cursor of each page's last token.
    let mut walked = Vec::new();
    let mut uri = "/v1/admin/tokens?limit=3".to_string();
    loop {
        let page = t.get(&uri, Some(&t.admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        let page = page.json().as_array().unwrap().clone();
        assert!(page.len() <= 3);
        walked.extend(page.iter().cloned());
        if page.len() < 3 {
            break;
        }
        let last = page.last().unwrap();
        uri = format!(
            "/v1/admin/tokens?limit=3&before={}&before_id={}",
            last["created_at"].as_str().unwrap(),
            last["id"].as_str().unwrap()
        );
    }
    assert_eq!(walked, all, "pages add up to the whole list, in order");

    // `before` alone: strictly older.
    let third = &all[2];
    let older = t
        .get(
            &format!(
                "/v1/admin/tokens?before={}",
                third["created_at"].as_str().unwrap()
            ),
            Some(&t.admin),
        )
        .await
        .json();
    assert_eq!(older.as_array().unwrap().as_slice(), &all[3..]);

    let engineers = t
        .get(
            "/v1/admin/tokens?role=release_engineer&limit=1000",
            Some(&t.admin),
        )
        .await
        .json();
    let engineers = engineers.as_array().unwrap();
    assert_eq!(engineers.len(), 6);
    assert!(engineers.iter().all(|e| e["role"] == "release_engineer"));

    // Out-of-range limits are clamped, like the audit log's.
    let one = t
        .get("/v1/admin/tokens?limit=0", Some(&t.admin))
        .await
        .json();
    assert_eq!(one.as_array().unwrap().len(), 1);

    for bad in ["role=wizard", "before=yesterday", "limit=many"] {
        let r = t
            .get(&format!("/v1/admin/tokens?{bad}"), Some(&t.admin))
            .await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, "invalid_query"),
            "{bad}"
        );
    }

    let doc = t.get("/openapi.json", None).await.json();
    let params: Vec<&str> = doc["paths"]["/v1/admin/tokens"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["limit", "role", "before", "before_id"]);
}

/// A second replica over the same database and data directory.
async fn replica(t: &TestApp) -> AppState {
    App::build(t.app.config.clone())
        .await
        .expect("replica builds")
}

fn bearer(secret: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", format!("Bearer {secret}").parse().unwrap());
    h
}

#[tokio::test]
async fn device_changes_reach_other_replicas_through_the_invalidation_log() {
    let t = TestApp::new().await;
    let created = time::macros::datetime!(2025-01-01 00:00 UTC);
    let mut tx = t.app.db.begin().await.unwrap();
    db::catalogue::upsert_product_line(
        &mut tx,
        "enc",
        &db::catalogue::LineTerms::new("Encoder", "hardware", 12),
    )
    .await
    .unwrap();
    let model = db::catalogue::ModelRow {
        id: "E4K".into(),
        product_line: "enc".into(),
        name: "Encoder 4K".into(),
        launched: None,
        eol: None,
    };
    db::catalogue::upsert_model(&mut tx, &model).await.unwrap();
    db::catalogue::set_hw_ids(&mut tx, "E4K", &["enc-4k-r1".to_string()])
        .await
        .unwrap();
    let device = db::devices::NewDevice {
        serial: "SN-1",
        model_id: "E4K",
        hw_id: "enc-4k-r1",
        channel: "stable",
    };
    db::devices::insert(&mut tx, device, created).await.unwrap();
    tx.commit().await.unwrap();
    let b = replica(&t).await;
    let facts = snapshot::device_facts(&b.db, &b.caches, "SN-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.channel, "stable");
    assert!(
        b.caches.device_facts.contains_key("SN-1"),
        "replica B has it cached"
    );

    // Changed through replica A.
    let r = t
        .put_json(
            "/v1/admin/devices/SN-1/channel",
            Some(&t.admin),
            &json!({ "channel": "beta" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    t.app.invalidations.flush().await.unwrap();

    // B's next poll (every 2 s in the background; here, directly) drops it.
    invalidation::poll(&b.db, &b.invalidations, &b.caches)
        .await
        .unwrap();
    assert!(!b.caches.device_facts.contains_key("SN-1"));
    let facts = snapshot::device_facts(&b.db, &b.caches, "SN-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.channel, "beta");

    // A replica that starts later begins after what is already written.
    let max = db::invalidations::max_seq(&t.app.db).await.unwrap();
    assert!(max > 0);
    assert_eq!(replica(&t).await.invalidations.applied(), max);
}

#[tokio::test]
async fn revocations_reach_other_replicas_through_the_invalidation_log() {
    let t = TestApp::new().await;
    let created = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &json!({ "role": "technician", "label": "carol" }),
        )
        .await
        .json();
    let secret = created["token"].as_str().unwrap();
    let b = replica(&t).await;
    assert!(authenticate(&b, &bearer(secret)).await.is_ok());
    assert!(b.caches.tokens.contains_key(&hash_token(secret)));

    let id = created["id"].as_str().unwrap();
    let r = t
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{id}"),
            Some(&t.admin),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Written in the revoking transaction: no flush needed.
    invalidation::poll(&b.db, &b.invalidations, &b.caches)
        .await
        .unwrap();
    let e = authenticate(&b, &bearer(secret)).await.unwrap_err();
    assert_eq!(e.code(), "invalid_token");
    // Other tokens stay cached.
    assert!(authenticate(&b, &bearer(&t.admin)).await.is_ok());
}

#[tokio::test]
async fn old_invalidations_are_pruned() {
    let t = TestApp::new().await;
    // The keys tell the two rows apart.
    let mut tx = t.app.db.begin().await.unwrap();
    for (key, at) in [
        ("X-2000", time::macros::datetime!(2000-01-01 00:00 UTC)),
        ("X-2999", time::macros::datetime!(2999-01-01 00:00 UTC)),
    ] {
        db::invalidations::record_at(&mut tx, db::invalidations::Kind::Device, key, at)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    assert_eq!(invalidation::prune(&t.app.db).await.unwrap(), 1);
    // The whole log: only the row from 2999 is left.
    let left = db::invalidations::after(&t.app.db, 0, 100).await.unwrap();
    assert!(left.complete);
    let left: Vec<String> = left.rows.into_iter().map(|r| r.key).collect();
    assert_eq!(left, ["X-2999"]);
}

/// Stores a root envelope the way another replica's `POST /v1/trust/roots`
/// would (without this replica's verification).
async fn insert_root(app: &App, version: i64, envelope: &[u8]) {
    let mut tx = app.db.begin().await.unwrap();
    db::trust::insert(&mut tx, version, envelope).await.unwrap();
    tx.commit().await.unwrap();
}

/// A rotation another replica stored reaches this one's trust state, but
/// only once it verifies against the latest root this one trusts.
#[tokio::test]
async fn stored_root_rotations_are_verified_before_they_are_trusted() {
    let t = TestApp::new().await;

    // Not signed by a threshold of version 1's root keys: never trusted.
    let forged = RootBuilder::standard()
        .next()
        .root_keys(&NEXT_ROOT_KEYS, 2)
        .signed_by(&["root-4", "root-5"])
        .build();
    insert_root(&t.app, 2, &forged).await;
    assert_eq!(
        firmup_server::trust::refresh(&t.app.db, &t.app.trust)
            .await
            .unwrap(),
        0
    );
    assert_eq!(t.app.trust().latest().unwrap().version(), 1);
    assert_eq!(
        t.get("/v1/trust/roots", None).await.json()["latest_version"],
        1
    );
    let mut tx = t.app.db.begin().await.unwrap();
    assert!(db::trust::delete(&mut tx, 2).await.unwrap());
    tx.commit().await.unwrap();

    let good = RootBuilder::standard()
        .next()
        .root_keys(&NEXT_ROOT_KEYS, 2)
        .signed_by(&["root-1", "root-2", "root-4", "root-5"])
        .build();
    insert_root(&t.app, 2, &good).await;
    assert_eq!(
        firmup_server::trust::refresh(&t.app.db, &t.app.trust)
            .await
            .unwrap(),
        1
    );
    assert_eq!(t.app.trust().latest().unwrap().version(), 2);
    let served = t.get("/v1/trust/roots?after=1", None).await;
    assert!(
        std::str::from_utf8(&served.body)
            .unwrap()
            .contains(std::str::from_utf8(&good).unwrap().trim_end())
    );
    // Nothing new: nothing added, and no double push.
    assert_eq!(
        firmup_server::trust::refresh(&t.app.db, &t.app.trust)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        t.get("/v1/trust/roots", None).await.json()["roots"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
