//! What every storage backend must guarantee alike, run on the local
//! directory and, when `FIRMUP_TEST_STORAGE_URL` names one (the suite's
//! Garage run: see `firmup_fixtures::storage`), on a real S3-compatible
//! store: verified objects only, ranged reads (across multipart part
//! boundaries too), nothing left behind by a bad or cut upload, presigned
//! URLs that honour Range and are refused once expired or tampered with, and
//! start-up errors that name the bucket and endpoint but never the secret.

mod common;

use std::io;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use bytes::Bytes;
use common::TestApp;
use firmup_client::Sha256Digest;
use firmup_server::config::Delivery;
use firmup_server::storage::s3::MIN_PART_SIZE;
use firmup_server::storage::{PutOutcome, S3Location, Storage, StorageError, StorageKey};
use futures_util::{Stream, StreamExt as _, stream};

/// The backends to run a case on: the local directory always, the test
/// store when there is one. The directory guard lives as long as the store.
async fn backends(part_size: usize) -> Vec<(&'static str, Storage, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![(
        "local",
        Storage::local(dir.path().to_path_buf()).await.unwrap(),
        dir,
    )];
    if let Some(url) = firmup_fixtures::storage::fresh_url() {
        let location = S3Location::parse(&url).unwrap();
        let store = Storage::s3(location, part_size).await.unwrap();
        out.push(("s3", store, tempfile::tempdir().unwrap()));
    }
    out
}

fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
    stream::iter(
        data.chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
}

async fn read_all(s: &Storage, d: Sha256Digest, start: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut st = s
        .read_range(StorageKey::image(d), start, len)
        .await
        .unwrap();
    while let Some(c) = st.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

#[tokio::test]
async fn stores_verified_objects_and_reads_ranges() {
    for (name, s, _dir) in backends(MIN_PART_SIZE).await {
        let data = b"the quick brown fox jumps over the lazy dog".to_vec();
        let d = Sha256Digest::of(&data);
        let len = data.len() as u64;
        let out = s
            .put_image(d, Some(len), 1000, chunks(&data, 7))
            .await
            .unwrap();
        assert_eq!(out, PutOutcome::Created { length: len }, "{name}");
        let again = s.put_image(d, None, 1000, chunks(&data, 7)).await.unwrap();
        assert_eq!(again, PutOutcome::AlreadyExists { length: len }, "{name}");
        assert_eq!(read_all(&s, d, 4, 5).await, b"quick", "{name}");
        assert_eq!(read_all(&s, d, 0, len).await, data, "{name}");
        assert_eq!(s.len(StorageKey::image(d)).await.unwrap(), Some(len));
        assert_eq!(s.staged_count().await.unwrap(), 0, "{name}");
    }
}

#[tokio::test]
async fn attachments_are_keyed_by_the_digest_of_what_arrived_apart_from_images() {
    for (name, s, _dir) in backends(MIN_PART_SIZE).await {
        let data = b"bench log: no video on SDI out".to_vec();
        let d = Sha256Digest::of(&data);
        let len = data.len() as u64;
        // No digest named: the key is the digest of the bytes.
        let stored = s
            .put_attachment(None, Some(len), 1000, chunks(&data, 5))
            .await
            .unwrap();
        assert_eq!(stored.key, StorageKey::attachment(d), "{name}");
        assert_eq!(
            (stored.sha256, stored.length, stored.created),
            (d, len, true)
        );
        // The same bytes again, with their digest named: kept, not created.
        let again = s
            .put_attachment(Some(d), None, 1000, chunks(&data, 3))
            .await
            .unwrap();
        assert_eq!(
            (again.key, again.created),
            (StorageKey::attachment(d), false)
        );
        assert_eq!(s.len(StorageKey::attachment(d)).await.unwrap(), Some(len));
        // An attachment is never an image of the same digest.
        assert_eq!(s.len(StorageKey::image(d)).await.unwrap(), None, "{name}");
        let mut read = Vec::new();
        let mut st = s
            .read_range(StorageKey::attachment(d), 0, len)
            .await
            .unwrap();
        while let Some(c) = st.next().await {
            read.extend_from_slice(&c.unwrap());
        }
        assert_eq!(read, data, "{name}");

        // Refused uploads leave nothing.
        let other = b"a photo of the unit".to_vec();
        let od = Sha256Digest::of(&other);
        assert!(
            matches!(
                s.put_attachment(Some(d), None, 1000, chunks(&other, 4)).await,
                Err(StorageError::DigestMismatch { expected, actual }) if expected == d && actual == od
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.put_attachment(None, None, 10, chunks(&other, 4)).await,
                Err(StorageError::TooLarge { limit: 10 })
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.put_attachment(None, Some(100), 1000, chunks(&other, 4))
                    .await,
                Err(StorageError::LengthMismatch { expected: 100, .. })
            ),
            "{name}"
        );
        assert_eq!(
            s.len(StorageKey::attachment(od)).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(s.staged_count().await.unwrap(), 0, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_uploads_go_up_in_parts_and_read_across_part_boundaries() {
    // Two and a half parts.
    let data: Vec<u8> = (0..(MIN_PART_SIZE * 5 / 2) as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let d = Sha256Digest::of(&data);
    for (name, s, _dir) in backends(MIN_PART_SIZE).await {
        let out = s
            .put_image(d, None, 1 << 30, chunks(&data, 64 * 1024 + 3))
            .await
            .unwrap();
        assert_eq!(
            out,
            PutOutcome::Created {
                length: data.len() as u64
            },
            "{name}"
        );
        // A range that starts in the first part and ends in the third.
        let (start, end) = (MIN_PART_SIZE - 10, 2 * MIN_PART_SIZE + 10);
        assert_eq!(
            read_all(&s, d, start as u64, (end - start) as u64).await,
            data[start..end],
            "{name}"
        );
        assert_eq!(
            read_all(&s, d, 0, data.len() as u64).await.len(),
            data.len()
        );
        assert_eq!(s.staged_count().await.unwrap(), 0, "{name}");
    }
}

#[tokio::test]
async fn concurrent_uploads_of_the_same_bytes_store_one_object() {
    for (name, s, _dir) in backends(MIN_PART_SIZE).await {
        let s = std::sync::Arc::new(s);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let d = Sha256Digest::of(&data);
        // Each upload is past the existence check before any finishes.
        let uploads: Vec<_> = (0..8)
            .map(|_| {
                let (s, data) = (s.clone(), data.clone());
                tokio::spawn(async move {
                    let slow = chunks(&data, 7000).then(|c| async move {
                        tokio::task::yield_now().await;
                        c
                    });
                    s.put_image(d, None, 1 << 20, Box::pin(slow)).await.unwrap()
                })
            })
            .collect();
        let mut created = 0;
        for u in uploads {
            if matches!(u.await.unwrap(), PutOutcome::Created { .. }) {
                created += 1;
            }
        }
        // A hard link creates once; S3 has no create-if-absent copy, so
        // there several may copy the same verified bytes to the same key.
        if name == "local" {
            assert_eq!(created, 1, "exactly one upload creates the object");
        } else {
            assert!(created >= 1, "{name}");
        }
        assert_eq!(read_all(&s, d, 0, data.len() as u64).await, data, "{name}");
        assert_eq!(s.staged_count().await.unwrap(), 0, "{name}: no leftovers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_leave_nothing_behind() {
    let big: Vec<u8> = vec![7u8; MIN_PART_SIZE * 2 + 100];
    let big_digest = Sha256Digest::of(&big);
    for (name, s, _dir) in backends(MIN_PART_SIZE).await {
        let data = vec![9u8; 100];
        let d = Sha256Digest::of(&data);
        let wrong = Sha256Digest::of(b"other");
        assert!(
            matches!(
                s.put_image(wrong, None, 1000, chunks(&data, 7)).await,
                Err(StorageError::DigestMismatch { .. })
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.put_image(d, None, 50, chunks(&data, 7)).await,
                Err(StorageError::TooLarge { limit: 50 })
            ),
            "{name}"
        );
        assert!(
            matches!(
                s.put_image(d, Some(200), 1000, chunks(&data, 7)).await,
                Err(StorageError::LengthMismatch {
                    expected: 200,
                    actual: 100
                })
            ),
            "{name}"
        );
        let cut = stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("connection reset")),
        ]);
        assert!(
            matches!(
                s.put_image(d, None, 1000, cut).await,
                Err(StorageError::Interrupted(_))
            ),
            "{name}"
        );
        // Cut after two whole parts went up: the multipart upload is aborted.
        let mut parts: Vec<Result<Bytes, io::Error>> = big
            .chunks(MIN_PART_SIZE)
            .take(2)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        parts.push(Err(io::Error::other("connection reset")));
        assert!(
            matches!(
                s.put_image(big_digest, None, 1 << 30, stream::iter(parts))
                    .await,
                Err(StorageError::Interrupted(_))
            ),
            "{name}"
        );
        // Too long only past the first parts.
        assert!(
            matches!(
                s.put_image(
                    big_digest,
                    None,
                    (MIN_PART_SIZE * 2) as u64,
                    chunks(&big, 1 << 20)
                )
                .await,
                Err(StorageError::TooLarge { .. })
            ),
            "{name}"
        );
        assert_eq!(s.len(StorageKey::image(d)).await.unwrap(), None, "{name}");
        assert_eq!(
            s.len(StorageKey::image(big_digest)).await.unwrap(),
            None,
            "{name}"
        );
        assert_eq!(
            s.staged_count().await.unwrap(),
            0,
            "{name}: no partial upload may remain"
        );
    }
}

/// The S3 store under test, or `None` (with a note) when the suites run
/// without one; with `CI` set a missing store is a failure.
async fn s3_only() -> Option<(Storage, S3Location)> {
    let Some(url) = firmup_fixtures::storage::fresh_url() else {
        assert!(
            std::env::var_os("CI").is_none() || !firmup_fixtures::database::on_postgres(),
            "CI's PostgreSQL run must also have an object store (FIRMUP_TEST_STORAGE_URL)"
        );
        eprintln!("no FIRMUP_TEST_STORAGE_URL: S3-only checks not run here");
        return None;
    };
    let location = S3Location::parse(&url).unwrap();
    Some((
        Storage::s3(location.clone(), MIN_PART_SIZE).await.unwrap(),
        location,
    ))
}

#[tokio::test]
async fn presigned_urls_honour_range_and_are_refused_when_expired_or_tampered() {
    let Some((s, _)) = s3_only().await else {
        return;
    };
    let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let d = Sha256Digest::of(&data);
    s.put_image(d, None, 1 << 20, chunks(&data, 1000))
        .await
        .unwrap();
    let store = s.s3_store().unwrap();
    let key = StorageKey::image(d);
    let http = reqwest::Client::new();

    let url = store
        .presigned_get(key, Duration::from_secs(60))
        .await
        .unwrap();
    let r = http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), data[100..200]);
    let r = http
        .get(&url)
        .header("range", "bytes=9990-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), data[9990..]);
    let whole = http.get(&url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), data);

    // Another key with this URL's signature, or a changed signature.
    let other = url.replacen("/images/", "/images/x", 1);
    assert_eq!(http.get(&other).send().await.unwrap().status(), 403);
    let sig_at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone();
    let flipped = if &url[sig_at..=sig_at] == "0" {
        "1"
    } else {
        "0"
    };
    tampered.replace_range(sig_at..=sig_at, flipped);
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);

    let short = store
        .presigned_get(key, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(http.get(&short).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // AWS answers 403 ("Request has expired"), Garage 400 ("Date is too
    // old"): a refusal either way, and no byte of the image.
    let expired = http.get(&short).send().await.unwrap();
    assert!(
        matches!(expired.status().as_u16(), 400 | 403),
        "an expired presigned URL is refused by the store: {}",
        expired.status()
    );
    let body = expired.text().await.unwrap();
    assert!(body.contains("<Error>"), "{body}");
}

#[tokio::test]
async fn a_missing_bucket_or_wrong_credentials_fail_the_start_without_the_secret() {
    let Some((_, location)) = s3_only().await else {
        return;
    };
    let missing = S3Location {
        bucket: "no-such-bucket-here".into(),
        ..location.clone()
    };
    let e = Storage::s3(missing, MIN_PART_SIZE)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("no-such-bucket-here"), "{e}");
    assert!(e.contains(location.endpoint.as_deref().unwrap()), "{e}");
    assert!(e.contains("does not exist"), "{e}");

    // Wrong credentials: the SDK reads them from the environment, so this
    // case runs in a child process with a changed secret.
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firmup-server"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .args([
            "--storage-url",
            &firmup_fixtures::storage::fresh_url().unwrap(),
        ])
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .env_remove("FIRMUP_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused access"), "{stderr}");
    assert!(
        stderr.contains(&format!("{:?}", location.bucket)),
        "names the bucket: {stderr}"
    );
    assert!(!stderr.contains(&"0".repeat(64)), "never the secret");
    assert!(
        secret.is_empty() || !stderr.contains(&secret),
        "never the secret"
    );
}

#[tokio::test]
async fn downloads_are_redirected_to_a_presigned_url_that_carries_the_bytes() {
    if s3_only().await.is_none() {
        return;
    }
    let t = TestApp::with_config(|c| c.download_delivery = Delivery::Redirect).await;
    let image: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
    let sha = Sha256Digest::of(&image).to_hex();
    let up = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{sha}"),
            Some(&t.release_engineer),
            &[("content-length", image.len().to_string().as_str())],
            image.clone(),
        )
        .await;
    assert_eq!(up.status, StatusCode::CREATED, "{up:?}");

    let uri = format!("/v1/images/{sha}");
    for method in [Method::GET, Method::HEAD] {
        let r = t
            .send(
                method.clone(),
                &uri,
                Some(&t.release_engineer),
                &[("range", "bytes=1000-")],
                Body::empty(),
            )
            .await;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{method}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(r.body.is_empty());
        let location = r.header("location").unwrap().to_owned();
        assert!(location.contains("X-Amz-Signature="), "{location}");
        assert!(
            location.contains(&format!("/images/{}/{sha}", &sha[..2])),
            "{location}"
        );
        // The store honours the Range the device sends again.
        let http = reqwest::Client::new();
        let got = http
            .get(&location)
            .header("range", "bytes=1000-")
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 206);
        assert_eq!(got.bytes().await.unwrap(), image[1000..]);
    }
    // The grant and token checks come first: no redirect without them.
    let anon = t.send(Method::GET, &uri, None, &[], Body::empty()).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
    assert_eq!(anon.header("location"), None);
    let forged = t
        .send(
            Method::GET,
            &format!("{uri}?sub=SN-1&exp=99999999999&sig=AAAA"),
            None,
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.header("location"), None);
    // If-None-Match is still answered by the server.
    let cached = t
        .send(
            Method::GET,
            &uri,
            Some(&t.release_engineer),
            &[("if-none-match", &format!("\"{sha}\""))],
            Body::empty(),
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
}

async fn put(t: &TestApp, image: Vec<u8>) -> common::TestResponse {
    let uri = format!("/v1/uploads/{}", Sha256Digest::of(&image).to_hex());
    let len = image.len().to_string();
    t.send(
        Method::PUT,
        &uri,
        Some(&t.release_engineer),
        &[("content-length", len.as_str())],
        image,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_that_goes_away_gives_503s_and_the_server_recovers_by_itself() {
    if s3_only().await.is_none() {
        return;
    }
    // A node of this test's own: stopping the shared one would fail the
    // tests running beside this one.
    let garage = tokio::task::spawn_blocking(firmup_fixtures::storage::OwnGarage::start)
        .await
        .unwrap();
    let url = garage.url();
    let t = TestApp::with_config(|c| c.storage_url = Some(url.clone())).await;
    let image = vec![5u8; 4096];
    let sha = Sha256Digest::of(&image).to_hex();
    assert_eq!(put(&t, image.clone()).await.status, StatusCode::CREATED);
    let download = format!("/v1/images/{sha}");
    assert_eq!(
        t.get(&download, Some(&t.release_engineer)).await.status,
        StatusCode::OK
    );

    tokio::task::block_in_place(|| garage.stop());
    assert_eq!(
        t.get("/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let r = t.get(&download, Some(&t.release_engineer)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.error_code(), "unavailable");
    assert!(r.header("retry-after").is_some());
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(!body.contains(&std::env::var("AWS_SECRET_ACCESS_KEY").unwrap()));
    let other = vec![6u8; 4096];
    let w = put(&t, other.clone()).await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", w.body);
    // A server started while the store is down starts, and is not ready.
    let late = TestApp::with_config(|c| c.storage_url = Some(url.clone())).await;
    assert_eq!(
        late.get("/readyz", None).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    tokio::task::block_in_place(|| garage.restart());
    for app in [&t, &late] {
        let mut ready = false;
        for _ in 0..50 {
            if app.get("/readyz", None).await.status == StatusCode::OK {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ready, "ready again once the store is back");
    }
    let r = t.get(&download, Some(&t.release_engineer)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, image);
    assert_eq!(
        put(&t, other).await.status,
        StatusCode::CREATED,
        "the retry succeeds"
    );
    assert_eq!(t.app.storage.staged_count().await.unwrap(), 0);
}
