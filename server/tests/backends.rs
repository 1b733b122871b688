//! What each database backend must guarantee alike: concurrent publishes
//! store one row, invalidations that commit out of seq order are not
//! missed, an unreachable database fails the start with a plain message
//! (after waiting for one that is still starting), and a database that
//! goes away mid-run gives 503s and then recovers.
//!
//! Like every server suite, these run on SQLite, and on PostgreSQL when
//! `FIRMUP_TEST_DATABASE_URL` is set (see `firmup_fixtures::database`).

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::TestApp;
use firmup_client::Sha256Digest;
use firmup_fixtures::ReleaseBuilder;
use firmup_server::app::App;
use firmup_server::db::{self, Backend, Db};
use firmup_server::{invalidation, snapshot};

async fn seed_line(t: &TestApp) {
    let mut tx = t.app.db.begin().await.unwrap();
    db::catalogue::upsert_product_line(
        &mut tx,
        "encoders",
        &db::catalogue::LineTerms::new("Encoders", "hardware", 12),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn upload(t: &TestApp, image: &[u8]) {
    let len = image.len().to_string();
    let r = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{}", Sha256Digest::of(image).to_hex()),
            Some(&t.release_engineer),
            &[("content-length", len.as_str())],
            image.to_vec(),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
}

async fn publish(t: &TestApp, envelope: &[u8]) -> StatusCode {
    t.send(
        Method::POST,
        "/v1/product-lines/encoders/releases",
        Some(&t.release_engineer),
        &[("content-type", "application/json")],
        envelope.to_vec(),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_of_one_version_store_one_row() {
    let t = TestApp::new().await;
    seed_line(&t).await;
    let same = ReleaseBuilder::standard().version("3.0.0").build();
    let mut other = ReleaseBuilder::standard().version("3.0.0");
    other.manifest.release_notes = Some("another payload under the same version".into());
    let other = other.build();
    upload(&t, &same.image).await;
    upload(&t, &other.image).await;

    // Eight publishes of one envelope and four of another payload, all at
    // once: one row, one 201, the same bytes get the idempotent 200 and the
    // other bytes 409 (or, had they won, the reverse).
    let mut calls = Vec::new();
    for i in 0..12 {
        let envelope = if i % 3 == 2 {
            &other.envelope
        } else {
            &same.envelope
        };
        calls.push(publish(&t, envelope));
    }
    let statuses = futures_util::future::join_all(calls).await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{statuses:?}");
    let winner_is_same = statuses
        .iter()
        .enumerate()
        .any(|(i, s)| *s == StatusCode::CREATED && i % 3 != 2);
    for (i, s) in statuses.iter().enumerate() {
        let same_bytes = i % 3 != 2;
        if *s == StatusCode::CREATED {
            continue;
        }
        let expected = if same_bytes == winner_is_same {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        };
        assert_eq!(*s, expected, "call {i}: {statuses:?}");
    }
    let rows = db::releases::list(&t.app.db, "encoders").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
}

/// The race a PostgreSQL poller must survive: a transaction takes seq n, a
/// later one takes n + 1 and commits first; a poll in between sees n + 1
/// only. Remembering "the highest seq applied" would skip n for ever.
#[tokio::test]
async fn an_invalidation_that_commits_after_a_later_seq_is_still_applied() {
    let t = TestApp::new().await;
    if t.app.db.backend() != Backend::Postgres {
        // SQLite has one writer at a time: a second transaction's insert
        // waits for the first's commit, so seqs commit in order and this
        // interleaving cannot be built.
        return;
    }
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
    for serial in ["SN-EARLY", "SN-LATE"] {
        let device = db::devices::NewDevice {
            serial,
            model_id: "E4K",
            hw_id: "enc-4k-r1",
            channel: "stable",
        };
        db::devices::insert(&mut tx, device, created).await.unwrap();
    }
    tx.commit().await.unwrap();

    let b = App::build(t.app.config.clone()).await.unwrap();
    for serial in ["SN-EARLY", "SN-LATE"] {
        snapshot::device_facts(&b.db, &b.caches, serial)
            .await
            .unwrap()
            .unwrap();
        assert!(b.caches.device_facts.contains_key(serial));
    }

    let mut early = t.app.db.begin_unserialised().await.unwrap();
    db::invalidations::record(&mut early, db::invalidations::Kind::Device, "SN-EARLY")
        .await
        .unwrap();
    let mut late = t.app.db.begin_unserialised().await.unwrap();
    db::invalidations::record(&mut late, db::invalidations::Kind::Device, "SN-LATE")
        .await
        .unwrap();
    late.commit().await.unwrap();

    assert_eq!(
        invalidation::poll(&b.db, &b.invalidations, &b.caches)
            .await
            .unwrap(),
        1
    );
    assert!(!b.caches.device_facts.contains_key("SN-LATE"));
    assert!(b.caches.device_facts.contains_key("SN-EARLY"));
    let gaps = b.invalidations.gaps();
    assert_eq!(gaps.len(), 1, "the earlier seq is awaited: {gaps:?}");
    assert_eq!(gaps[0], b.invalidations.applied() - 1);

    early.commit().await.unwrap();
    assert_eq!(
        invalidation::poll(&b.db, &b.invalidations, &b.caches)
            .await
            .unwrap(),
        1
    );
    assert!(
        !b.caches.device_facts.contains_key("SN-EARLY"),
        "the late commit reached the cache"
    );
    assert!(b.invalidations.gaps().is_empty());
    // Nothing is applied twice afterwards.
    assert_eq!(
        invalidation::poll(&b.db, &b.invalidations, &b.caches)
            .await
            .unwrap(),
        0
    );
}

/// A seq taken by a transaction that rolls back never appears: the poller
/// keeps asking for it (cheaply) and carries on with later ones.
#[tokio::test]
async fn a_rolled_back_invalidation_leaves_a_gap_that_does_not_stall_the_poller() {
    let t = TestApp::new().await;
    if t.app.db.backend() != Backend::Postgres {
        // SQLite hands out no seq to a rolled-back insert.
        return;
    }
    let b = App::build(t.app.config.clone()).await.unwrap();
    let mut lost = t.app.db.begin_unserialised().await.unwrap();
    db::invalidations::record(&mut lost, db::invalidations::Kind::Token, "gone")
        .await
        .unwrap();
    lost.rollback().await.unwrap();
    for key in ["a", "b"] {
        let mut tx = t.app.db.begin().await.unwrap();
        db::invalidations::record(&mut tx, db::invalidations::Kind::Token, key)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            invalidation::poll(&b.db, &b.invalidations, &b.caches)
                .await
                .unwrap(),
            1,
            "{key}"
        );
    }
    assert_eq!(b.invalidations.gaps().len(), 1);
}

#[tokio::test]
async fn an_unreachable_postgres_fails_with_one_line_naming_host_and_database_only() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://firmup:hunter2@127.0.0.1:{port}/fleet");
    let settings = db::PoolSettings {
        acquire_timeout: Duration::from_secs(2),
        ..db::PoolSettings::default()
    };
    let e = Db::connect_with(&url, settings).await.unwrap_err();
    let message = format!("{e:#}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(
        message.contains(&format!("127.0.0.1:{port}")) && message.contains("fleet"),
        "names the host and database: {message}"
    );
    assert!(
        message.to_lowercase().contains("refused"),
        "says why, not only that the pool timed out: {message}"
    );
    let debug = format!("{e:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

/// Held by each test that stops a cluster of its own: while one is
/// stopped, another test's cluster starting could take its free port, and
/// the stopped one's server would reconnect to a database that never went
/// away.
static OWN_CLUSTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A server started while its database is still starting waits for it
/// (up to the acquire timeout) instead of exiting at the first refusal;
/// an error that waiting cannot cure fails at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_waits_for_a_database_that_is_starting_but_not_for_a_wrong_one() {
    if !firmup_fixtures::database::on_postgres() {
        return;
    }
    let _one_at_a_time = OWN_CLUSTERS.lock().await;
    let cluster = tokio::task::spawn_blocking(firmup_fixtures::database::OwnCluster::start)
        .await
        .unwrap();
    tokio::task::block_in_place(|| cluster.stop());
    let settings = db::PoolSettings {
        acquire_timeout: Duration::from_secs(30),
        ..db::PoolSettings::default()
    };
    let url = cluster.url();
    let connecting = tokio::spawn(async move { Db::connect_with(&url, settings).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !connecting.is_finished(),
        "gave up while the database was down"
    );
    tokio::task::block_in_place(|| cluster.restart());
    let db = connecting
        .await
        .unwrap()
        .expect("connected once the database was up");
    db.ready().await.unwrap();

    let wrong = cluster.url().replace("/postgres", "/no_such_database");
    let started = std::time::Instant::now();
    let e = Db::connect_with(&wrong, settings).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a missing database is not waited for: {:?}",
        started.elapsed()
    );
    assert!(format!("{e:#}").contains("no_such_database"), "{e:#}");
}

#[tokio::test]
async fn the_database_url_password_never_reaches_debug_output() {
    let Some(url) = firmup_fixtures::database::fresh_url() else {
        // SQLite URLs carry no password; the redaction itself has unit
        // tests in `config`.
        return;
    };
    // The test cluster trusts every local connection, so any password
    // connects: exactly what is needed to see where it could leak.
    let with_password = url.replacen("://postgres@", "://postgres:hunter2@", 1);
    assert_ne!(with_password, url, "the test URL names the postgres user");
    let db = Db::connect(&with_password).await.unwrap();
    let shown = format!("{db:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres:***@"), "{shown}");
    assert_eq!(db.backend(), Backend::Postgres);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_gives_503s_and_the_server_recovers_by_itself() {
    if !firmup_fixtures::database::on_postgres() {
        // The embedded database cannot go away under a running server.
        return;
    }
    // A cluster of this test's own: stopping the shared one would fail the
    // tests running beside this one.
    let _one_at_a_time = OWN_CLUSTERS.lock().await;
    let cluster = tokio::task::spawn_blocking(firmup_fixtures::database::OwnCluster::start)
        .await
        .unwrap();
    let url = cluster.url();
    let t = TestApp::with_config(|c| {
        c.database_url = Some(url);
        c.database_statement_timeout_secs = 2;
    })
    .await;
    seed_line(&t).await;
    let lines = "/v1/product-lines";
    assert_eq!(t.get("/readyz", None).await.status, StatusCode::OK);
    assert_eq!(t.get(lines, Some(&t.admin)).await.status, StatusCode::OK);

    tokio::task::block_in_place(|| cluster.stop());
    let ready = t.get("/readyz", None).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = t.get(lines, Some(&t.admin)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    assert_eq!(r.error_code(), "unavailable");
    assert!(r.header("retry-after").is_some());
    // A write too.
    let w = t
        .put_json(
            "/v1/admin/product-lines/decoders",
            Some(&t.admin),
            &serde_json::json!({ "name": "Decoders", "kind": "hardware" }),
        )
        .await;
    assert_eq!(w.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", w.body);

    tokio::task::block_in_place(|| cluster.restart());
    let mut recovered = false;
    for _ in 0..50 {
        if t.get("/readyz", None).await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "ready again once the database is back");
    assert_eq!(t.get(lines, Some(&t.admin)).await.status, StatusCode::OK);
    let w = t
        .put_json(
            "/v1/admin/product-lines/decoders",
            Some(&t.admin),
            &serde_json::json!({ "name": "Decoders", "kind": "hardware" }),
        )
        .await;
    assert_eq!(w.status, StatusCode::CREATED, "{:?}", w.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_run_once_across_replicas() {
    let t = TestApp::new().await;
    // A second replica's pool on the same database.
    let other = Db::connect_with(&t.app.config.database_url(), t.app.config.pool_settings())
        .await
        .unwrap();
    let every = Duration::from_secs(3600);
    let now = time::OffsetDateTime::now_utc();
    let claims = |at: time::OffsetDateTime| {
        let dbs = [t.app.db.clone(), other.clone()];
        async move {
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let db = dbs[i % 2].clone();
                    tokio::spawn(async move {
                        db::jobs::claim(&db, "test_job", &format!("replica-{i}"), at, every)
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut won = 0;
            for task in tasks {
                won += usize::from(task.await.unwrap());
            }
            won
        }
    };
    assert_eq!(claims(now).await, 1, "the first run: one replica");
    assert_eq!(
        claims(now + time::Duration::minutes(59)).await,
        0,
        "not due yet"
    );
    assert_eq!(
        claims(now + time::Duration::minutes(61)).await,
        1,
        "the next run: one replica"
    );
}
