//! Staged rollouts, device groups and maintenance windows through the HTTP
//! API, in-process, on whichever database the run uses: membership by hash
//! (and devices provisioned mid-rollout joining), the pause on failure
//! reports past the minimum sample, soak advances on the job's clock,
//! group-limited rollouts, windows deferring offers, and bad input.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, TestResponse};
use common::{assert_error, assert_status};
use firmup_fixtures::ReleaseBuilder;
use firmup_server::domain::rollout::bucket;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

/// The `encoders` line with model E4K (hw `enc-4k-r2`) and `count`
/// devices `D-0000`...
async fn fleet(count: usize) -> TestApp {
    let t = TestApp::new().await;
    t.encoders_e4k().await;
    provision(&t, 0, count).await;
    t
}

fn serial(i: usize) -> String {
    format!("D-{i:04}")
}

async fn provision(t: &TestApp, from: usize, to: usize) {
    let devices: Vec<Value> = (from..to)
        .map(|i| json!({ "serial": serial(i), "model_id": "E4K", "hw_id": "enc-4k-r2" }))
        .collect();
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.admin),
            &json!({ "devices": devices, "issue_tokens": false }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
}

fn release(version: &str, manifest_version: u64) -> ReleaseBuilder {
    let mut b = ReleaseBuilder::standard().version(version);
    b.manifest.manifest_version = manifest_version;
    b.manifest.requires = None;
    b.image_seed = format!("rollout-{version}");
    b
}

/// Uploads and publishes; `query` is the publish's query string.
async fn publish(t: &TestApp, b: ReleaseBuilder, query: &str) -> TestResponse {
    t.publish_encoders(&b.build(), query).await
}

async fn offered(t: &TestApp, token: &str, serial: &str) -> Option<String> {
    let r = check(t, token, serial).await;
    r["update"]["version"].as_str().map(str::to_owned)
}

async fn check(t: &TestApp, token: &str, serial: &str) -> Value {
    let r = t
        .post_json(
            "/v1/device/check",
            Some(token),
            &json!({ "serial": serial, "hw_id": "enc-4k-r2", "current_version": "2.0.0",
                     "security_counter": 3, "root_version": 1 }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    r.json()
}

async fn report(t: &TestApp, token: &str, serial: &str, version: &str, stage: &str) {
    let mut body = json!({ "serial": serial, "version": version, "stage": stage });
    if stage != "installed" {
        body["reason_code"] = json!("boot_timeout");
    }
    let r = t.post_json("/v1/device/reports", Some(token), &body).await;
    assert_status(&r, StatusCode::CREATED);
}

async fn rollout(t: &TestApp, id: &str) -> Value {
    let r = t
        .get(&format!("/v1/rollouts/{id}"), Some(&t.technician))
        .await;
    assert_status(&r, StatusCode::OK);
    r.json()
}

async fn act(t: &TestApp, id: &str, action: &str, body: Option<Value>) -> TestResponse {
    let uri = format!("/v1/rollouts/{id}/{action}");
    match body {
        Some(b) => t.post_json(&uri, Some(&t.release_engineer), &b).await,
        None => {
            t.send(
                Method::POST,
                &uri,
                Some(&t.release_engineer),
                &[],
                Vec::new(),
            )
            .await
        }
    }
}

async fn audit_actions(t: &TestApp) -> Vec<String> {
    let r = t.get("/v1/admin/audit?limit=1000", Some(&t.admin)).await;
    assert_status(&r, StatusCode::OK);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect()
}

async fn tokens(t: &TestApp, from: usize, to: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in from..to {
        let s = serial(i);
        out.push((t.device_token(&s).await, s));
    }
    out
}

#[tokio::test]
async fn a_phase_offers_exactly_its_share_and_later_devices_join_by_the_same_rule() {
    let t = fleet(300).await;
    let r = publish(&t, release("2.1.0", 7), "").await;
    assert_status(&r, StatusCode::CREATED);
    let r = publish(&t, release("2.2.0", 8), "?rollout=10,50,100").await;
    assert_status(&r, StatusCode::CREATED);
    let started = r.json()["rollout"].clone();
    assert_eq!(started["state"], "running", "{started}");
    assert_eq!(started["percent"], 10);
    let id = started["id"].as_str().unwrap().to_owned();

    // Exactly the devices whose bucket is below 10% get 2.2.0; the others
    // get 2.1.0, the newest release they are admitted to.
    let devices = tokens(&t, 0, 300).await;
    let mut first = Vec::new();
    for (token, s) in &devices {
        let got = offered(&t, token, s).await.unwrap();
        let member = bucket(&id, s) < 1000;
        assert_eq!(got, if member { "2.2.0" } else { "2.1.0" }, "{s}");
        if member {
            first.push(s.clone());
        }
    }
    // 10% of 300 is 30; a binomial sample has sd 5.2.
    assert!((10..=55).contains(&first.len()), "{}", first.len());
    // Asking again changes nothing.
    for (token, s) in devices.iter().take(50) {
        let again = offered(&t, token, s).await.unwrap();
        assert_eq!(again == "2.2.0", first.contains(s), "{s}");
    }

    // The technician's view says why a device is not offered it yet.
    let outside = devices
        .iter()
        .find(|(_, s)| bucket(&id, s) >= 1000)
        .unwrap();
    let view = t
        .get(
            &format!("/v1/devices/{}/entitlement", outside.1),
            Some(&t.technician),
        )
        .await
        .json();
    let held = &view["releases"][0];
    assert_eq!(held["version"], "2.2.0", "{view}");
    assert_eq!(held["rollout"]["admitted"], false, "{view}");
    let why = held["rollout"]["explanation"].as_str().unwrap();
    assert!(
        why.contains("phase 1 of 3 (10%)") && why.contains("joins at phase"),
        "{why}"
    );
    assert_eq!(view["version"], "2.1.0", "{view}");

    // Devices provisioned mid-rollout join it by their bucket.
    provision(&t, 300, 400).await;
    let late = tokens(&t, 300, 400).await;
    for (token, s) in &late {
        let expected = if bucket(&id, s) < 1000 {
            "2.2.0"
        } else {
            "2.1.0"
        };
        assert_eq!(offered(&t, token, s).await.unwrap(), expected, "{s}");
    }

    // Advancing to 50% keeps everyone of the first phase in.
    let r = act(&t, &id, "advance", None).await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["percent"], 50);
    for (token, s) in devices.iter().chain(&late) {
        let got = offered(&t, token, s).await.unwrap();
        assert_eq!(got == "2.2.0", bucket(&id, s) < 5000, "{s}");
        if first.contains(s) {
            assert_eq!(got, "2.2.0", "{s} dropped out");
        }
    }

    // The status counts offers by the phase each device joined in (from
    // last-seen state, once flushed).
    t.app.last_seen.flush().await.unwrap();
    let v = rollout(&t, &id).await;
    let phases = v["status"]["phases"].as_array().unwrap();
    let in_first = devices
        .iter()
        .chain(&late)
        .filter(|(_, s)| bucket(&id, s) < 1000)
        .count();
    assert_eq!(phases[0]["offered"], in_first, "{v}");
    let kinds: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["started", "advanced"]);

    // Finishing offers the release to everyone.
    assert_status(&act(&t, &id, "finish", None).await, StatusCode::OK);
    for (token, s) in devices.iter().take(40) {
        assert_eq!(offered(&t, token, s).await.unwrap(), "2.2.0", "{s}");
    }
    let actions = audit_actions(&t).await;
    for a in ["rollout.start", "rollout.advance", "rollout.finish"] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
}

#[tokio::test]
async fn failures_pause_the_rollout_once_the_minimum_sample_is_reached() {
    let t = fleet(120).await;
    assert_status(
        &publish(&t, release("2.1.0", 7), "").await,
        StatusCode::CREATED,
    );
    let r = publish(
        &t,
        release("2.2.0", 8),
        "?rollout=50,100&failure_threshold_percent=25&min_sample=4",
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let id = r.json()["rollout"]["id"].as_str().unwrap().to_owned();
    let devices = tokens(&t, 0, 120).await;
    let members: Vec<&(String, String)> = devices
        .iter()
        .filter(|(_, s)| bucket(&id, s) < 5000)
        .collect();
    let others: Vec<&(String, String)> = devices
        .iter()
        .filter(|(_, s)| bucket(&id, s) >= 5000)
        .collect();
    assert!(members.len() >= 10 && others.len() >= 10);

    // One install and two failures: 3 attempts, under the sample of 4.
    report(&t, &members[0].0, &members[0].1, "2.2.0", "installed").await;
    report(&t, &members[1].0, &members[1].1, "2.2.0", "failed").await;
    report(&t, &members[2].0, &members[2].1, "2.2.0", "rolled_back").await;
    assert_eq!(rollout(&t, &id).await["state"], "running");
    assert_eq!(
        offered(&t, &members[5].0, &members[5].1).await.as_deref(),
        Some("2.2.0")
    );

    // The fourth attempt fails: 3 of 4 is 75%, over 25%: paused.
    report(&t, &members[3].0, &members[3].1, "2.2.0", "failed").await;
    let v = rollout(&t, &id).await;
    assert_eq!(v["state"], "paused", "{v}");
    let why = v["paused_reason"].as_str().unwrap();
    assert!(why.contains("75.0%") && why.contains("3 of 4"), "{why}");
    assert_eq!(v["status"]["phases"][0]["failed"], 2, "{v}");
    assert_eq!(v["status"]["phases"][0]["rolled_back"], 1, "{v}");
    assert_eq!(v["status"]["phases"][0]["installed"], 1, "{v}");
    assert_eq!(v["status"]["failure_reasons"][0]["reason"], "boot_timeout");
    assert_eq!(v["status"]["failure_reasons"][0]["count"], 3);
    assert_eq!(
        v["events"].as_array().unwrap().last().unwrap()["kind"],
        "auto_paused"
    );
    assert!(
        audit_actions(&t)
            .await
            .iter()
            .any(|a| a == "rollout.auto_pause")
    );

    // Paused: members not yet updated are offered the older release now.
    assert_eq!(
        offered(&t, &members[5].0, &members[5].1).await.as_deref(),
        Some("2.1.0")
    );
    // A paused rollout does not advance; it resumes.
    assert_error(
        &act(&t, &id, "advance", None).await,
        StatusCode::CONFLICT,
        "rollout_paused",
    );
    let r = act(&t, &id, "resume", None).await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["state"], "running");
    // The resume starts the phase's count again: one more failure alone
    // is under the minimum sample and does not pause it.
    report(&t, &members[4].0, &members[4].1, "2.2.0", "failed").await;
    let v = rollout(&t, &id).await;
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["status"]["current_phase_attempted"], 1, "{v}");
    assert_eq!(v["status"]["phases"][0]["failed"], 3, "{v}");
    assert_error(
        &act(&t, &id, "resume", None).await,
        StatusCode::CONFLICT,
        "rollout_not_paused",
    );

    // Abort: no new offers; a device that installed keeps its version and
    // is up to date.
    let r = act(
        &t,
        &id,
        "abort",
        Some(json!({ "reason": "boot loop in the field" })),
    )
    .await;
    assert_status(&r, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["state"], "aborted");
    assert_eq!(
        v["paused_reason"],
        "aborted by test-release_engineer: boot loop in the field"
    );
    assert_eq!(
        offered(&t, &members[6].0, &members[6].1).await.as_deref(),
        Some("2.1.0")
    );
    let installed = t
        .post_json(
            "/v1/device/check",
            Some(&members[0].0),
            &json!({ "serial": members[0].1, "hw_id": "enc-4k-r2", "current_version": "2.2.0",
                     "security_counter": 3, "root_version": 1 }),
        )
        .await;
    assert_eq!(installed.json()["status"], "up_to_date");
    for a in ["advance", "resume", "finish"] {
        assert_error(
            &act(&t, &id, a, None).await,
            StatusCode::CONFLICT,
            "rollout_finished",
        );
    }
    assert_error(
        &act(&t, &id, "pause", Some(json!({}))).await,
        StatusCode::CONFLICT,
        "rollout_finished",
    );
    // After an abort a new rollout of the release may start.
    let r = t
        .post_json(
            "/v1/rollouts",
            Some(&t.release_engineer),
            &json!({ "product_line": "encoders", "version": "2.2.0", "phases": [1, 100] }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
}

#[tokio::test]
async fn a_soaked_phase_advances_on_the_jobs_clock_unless_it_fails() {
    let t = fleet(40).await;
    assert_status(
        &publish(
            &t,
            release("2.2.0", 8),
            "?rollout=20,60,100&soak_secs=1&min_sample=2&failure_threshold_percent=10",
        )
        .await,
        StatusCode::CREATED,
    );
    let list = t
        .get("/v1/rollouts?state=active", Some(&t.technician))
        .await;
    assert_status(&list, StatusCode::OK);
    let v = list.json()["rollouts"][0].clone();
    let id = v["id"].as_str().unwrap().to_owned();
    let started = OffsetDateTime::parse(
        v["phase_started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(v["next_advance_at"].is_string(), "{v}");

    let db = &t.app.db;
    // Before the soak time has passed: nothing.
    let n = firmup_server::rollouts::tick(db, started + Duration::milliseconds(900))
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(rollout(&t, &id).await["phase"], 0);
    // After it: the next phase, by the system. (The job's clock is the
    // real one here, so that the reports below fall into the new phase.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let n = firmup_server::rollouts::tick(db, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(n, 1);
    let v = rollout(&t, &id).await;
    assert_eq!(
        (v["phase"].as_u64(), v["state"].as_str()),
        (Some(1), Some("running"))
    );
    let last = v["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["kind"].as_str(), last["actor"].as_str()),
        (Some("auto_advanced"), Some("system"))
    );

    // Failures in the new phase: the next tick pauses instead of advancing.
    let devices = tokens(&t, 0, 40).await;
    let members: Vec<&(String, String)> = devices
        .iter()
        .filter(|(_, s)| bucket(&id, s) < 6000)
        .collect();
    report(&t, &members[0].0, &members[0].1, "2.2.0", "installed").await;
    report(&t, &members[1].0, &members[1].1, "2.2.0", "installed").await;
    report(&t, &members[2].0, &members[2].1, "2.2.0", "failed").await;
    // 1 of 3 (33%) is over 10%, and the report itself paused it.
    let v = rollout(&t, &id).await;
    assert_eq!(v["state"], "paused", "{v}");
    let far = OffsetDateTime::now_utc() + Duration::days(30);
    assert_eq!(firmup_server::rollouts::tick(db, far).await.unwrap(), 0);
    assert_eq!(rollout(&t, &id).await["phase"], 1);
}

#[tokio::test]
async fn groups_limit_rollouts_and_windows_defer_offers() {
    let t = fleet(6).await;
    assert_status(
        &publish(&t, release("2.2.0", 8), "").await,
        StatusCode::CREATED,
    );
    let devices = tokens(&t, 0, 6).await;

    // A dynamic group on a tag.
    let r = t
        .put_json(
            "/v1/admin/devices/D-0001/tags",
            Some(&t.admin),
            &json!({ "tags": ["studio", "rack-3"] }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["tags"], json!(["rack-3", "studio"]));
    let r = t
        .post_json(
            "/v1/groups",
            Some(&t.release_engineer),
            &json!({ "name": "studio", "filter": "tag = studio and version < 2.2.0" }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    assert_eq!(r.json()["kind"], "dynamic");
    // A static group.
    let r = t
        .post_json(
            "/v1/groups",
            Some(&t.release_engineer),
            &json!({ "name": "bench", "serials": ["D-0002", "D-0003"] }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    assert_eq!(r.json()["members"], 2);

    // A rollout limited to the dynamic group at 100%: only D-0001.
    let r = t
        .post_json(
            "/v1/rollouts",
            Some(&t.release_engineer),
            &json!({ "product_line": "encoders", "version": "2.2.0", "phases": [100], "group": "studio" }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        offered(&t, &devices[1].0, &devices[1].1).await.as_deref(),
        Some("2.2.0")
    );
    assert_eq!(offered(&t, &devices[0].0, &devices[0].1).await, None);
    // The group cannot go while the rollout uses it.
    assert_error(
        &t.send(
            Method::DELETE,
            "/v1/groups/studio",
            Some(&t.release_engineer),
            &[],
            Vec::new(),
        )
        .await,
        StatusCode::CONFLICT,
        "group_in_use",
    );
    assert_status(&act(&t, &id, "finish", None).await, StatusCode::OK);
    // Once the rollout is over the group may go; the rollout keeps its name.
    let r = t
        .send(
            Method::DELETE,
            "/v1/groups/studio",
            Some(&t.release_engineer),
            &[],
            Vec::new(),
        )
        .await;
    assert_status(&r, StatusCode::NO_CONTENT);
    assert_eq!(rollout(&t, &id).await["group"], "studio");
    assert_eq!(
        offered(&t, &devices[0].0, &devices[0].1).await.as_deref(),
        Some("2.2.0")
    );

    // A window that opens in two hours (every day, one hour long): the
    // bench's devices wait, told when to come back.
    let now = OffsetDateTime::now_utc();
    let opens = now + Duration::hours(2);
    let start = format!("{:02}:00", opens.hour());
    let all_days = json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]);
    let r = t
        .put_json(
            "/v1/groups/bench/window",
            Some(&t.release_engineer),
            &json!({ "timezone": "UTC", "slots": [{ "days": all_days, "start": start, "hours": 1 }] }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let waiting = check(&t, &devices[2].0, &devices[2].1).await;
    assert_eq!(waiting["status"], "up_to_date", "{waiting}");
    assert!(waiting.get("update").is_none(), "{waiting}");
    let until = OffsetDateTime::parse(
        waiting["deferred_until"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expected = opens
        .replace_minute(0)
        .unwrap()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    assert_eq!(until, expected, "{waiting}");
    // The technician's view says so too.
    let view = t
        .get("/v1/devices/D-0002/entitlement", Some(&t.technician))
        .await
        .json();
    assert_eq!(view["status"], "update_available", "{view}");
    assert_eq!(view["deferred_until"], waiting["deferred_until"], "{view}");
    let wait = waiting["poll_after_secs"].as_u64().unwrap();
    let to_open = u64::try_from((until - now).whole_seconds()).unwrap();
    assert!(wait + 5 >= to_open && wait <= 86_400, "{wait} vs {to_open}");
    // Outside any group: offered at once.
    assert_eq!(
        offered(&t, &devices[4].0, &devices[4].1).await.as_deref(),
        Some("2.2.0")
    );

    // A window open now: offered.
    let start = format!("{:02}:00", now.hour());
    let r = t
        .put_json(
            "/v1/groups/bench/window",
            Some(&t.release_engineer),
            &json!({ "timezone": "UTC", "slots": [{ "days": all_days, "start": start, "hours": 2 }] }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let open = check(&t, &devices[2].0, &devices[2].1).await;
    assert_eq!(open["update"]["version"], "2.2.0", "{open}");
    assert!(open.get("deferred_until").is_none(), "{open}");

    // Members leave the group: its window no longer applies to them.
    let r = t
        .put_json(
            "/v1/groups/bench/window",
            Some(&t.release_engineer),
            &json!({ "timezone": "UTC", "slots": [{ "days": all_days, "start": format!("{:02}:00", opens.hour()), "hours": 1 }] }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert!(check(&t, &devices[3].0, &devices[3].1).await["deferred_until"].is_string());
    let r = t
        .post_json(
            "/v1/groups/bench/members",
            Some(&t.release_engineer),
            &json!({ "remove": ["D-0003"] }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["members"], 1);
    assert_eq!(
        offered(&t, &devices[3].0, &devices[3].1).await.as_deref(),
        Some("2.2.0")
    );
    let actions = audit_actions(&t).await;
    for a in [
        "group.create",
        "group.window",
        "group.members",
        "device.tags",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}: {actions:?}");
    }
}

#[tokio::test]
async fn bad_rollouts_and_groups_get_stable_codes_and_change_nothing() {
    let t = fleet(3).await;
    assert_status(
        &publish(&t, release("2.2.0", 8), "").await,
        StatusCode::CREATED,
    );
    let start = |body: Value| {
        let t = &t;
        async move {
            t.post_json("/v1/rollouts", Some(&t.release_engineer), &body)
                .await
        }
    };
    let base = json!({ "product_line": "encoders", "version": "2.2.0", "phases": [1, 10, 100] });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    for (body, status, code) in [
        (
            with("phases", json!([10, 5, 100])),
            StatusCode::BAD_REQUEST,
            "invalid_phases",
        ),
        (
            with("phases", json!([0, 100])),
            StatusCode::BAD_REQUEST,
            "invalid_phases",
        ),
        (
            with("phases", json!([])),
            StatusCode::BAD_REQUEST,
            "invalid_phases",
        ),
        (
            with("failure_threshold_percent", json!(101)),
            StatusCode::BAD_REQUEST,
            "invalid_threshold",
        ),
        (
            with("failure_threshold_percent", json!(-1)),
            StatusCode::BAD_REQUEST,
            "invalid_threshold",
        ),
        (
            with("min_sample", json!(0)),
            StatusCode::BAD_REQUEST,
            "invalid_min_sample",
        ),
        (
            with("soak_secs", json!(0)),
            StatusCode::BAD_REQUEST,
            "invalid_soak",
        ),
        (
            with("group", json!("nope")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_group",
        ),
        (
            with("version", json!("9.9.9")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_release",
        ),
    ] {
        assert_error(&start(body.clone()).await, status, code);
    }
    let none = t.get("/v1/rollouts", Some(&t.admin)).await;
    assert_eq!(none.json()["rollouts"], json!([]));
    // A technician may look, not start.
    let r = t
        .post_json("/v1/rollouts", Some(&t.technician), &base)
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");

    // Two active rollouts of one release: the second is refused.
    assert_status(&start(base.clone()).await, StatusCode::CREATED);
    assert_error(
        &start(base.clone()).await,
        StatusCode::CONFLICT,
        "rollout_exists",
    );
    // Publishing with bad rollout options stores nothing.
    let r = publish(&t, release("2.3.0", 9), "?rollout=50,10").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_phases");
    let r = publish(
        &t,
        release("2.3.0", 9),
        "?rollout=10,100&rollout_group=nope",
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_group");
    let listed = t
        .get("/v1/product-lines/encoders/releases", Some(&t.admin))
        .await;
    assert_eq!(
        listed.json().as_array().unwrap().len(),
        1,
        "2.3.0 was not stored"
    );
    assert_error(
        &t.get(
            "/v1/rollouts/ro_00000000000000000000000000000000",
            Some(&t.admin),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_rollout",
    );
    assert_error(
        &t.get("/v1/rollouts?state=sleeping", Some(&t.admin)).await,
        StatusCode::BAD_REQUEST,
        "invalid_state",
    );

    // Groups.
    let group = |body: Value| {
        let t = &t;
        async move {
            t.post_json("/v1/groups", Some(&t.release_engineer), &body)
                .await
        }
    };
    for (body, status, code) in [
        (
            json!({ "name": "a b" }),
            StatusCode::BAD_REQUEST,
            "invalid_group_name",
        ),
        (
            json!({ "name": "g", "filter": "model = E4K or region = EU" }),
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        ),
        (
            json!({ "name": "g", "filter": "colour = red" }),
            StatusCode::BAD_REQUEST,
            "invalid_filter",
        ),
        (
            json!({ "name": "g", "filter": "model = E4K", "serials": ["D-0000"] }),
            StatusCode::CONFLICT,
            "group_is_dynamic",
        ),
        (
            json!({ "name": "g", "serials": ["D-0000", "D-0000"] }),
            StatusCode::BAD_REQUEST,
            "duplicate_serial",
        ),
        (
            json!({ "name": "g", "serials": ["D-0000", "NOPE-1"] }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_serial",
        ),
    ] {
        assert_error(&group(body).await, status, code);
    }
    assert_eq!(
        t.get("/v1/groups", Some(&t.admin)).await.json()["groups"],
        json!([])
    );
    assert_status(
        &group(json!({ "name": "g", "serials": ["D-0000"] })).await,
        StatusCode::CREATED,
    );
    assert_error(
        &group(json!({ "name": "g" })).await,
        StatusCode::CONFLICT,
        "group_exists",
    );
    let window = |body: Value| {
        let t = &t;
        async move {
            t.put_json("/v1/groups/g/window", Some(&t.release_engineer), &body)
                .await
        }
    };
    for (body, code) in [
        (
            json!({ "timezone": "Mars/Olympus", "slots": [{ "days": ["mon"], "start": "02:00", "hours": 1 }] }),
            "invalid_timezone",
        ),
        (
            json!({ "timezone": "UTC", "slots": [{ "days": ["monday"], "start": "02:00", "hours": 1 }] }),
            "invalid_window",
        ),
        (
            json!({ "timezone": "UTC", "slots": [{ "days": ["mon"], "start": "25:00", "hours": 1 }] }),
            "invalid_window",
        ),
        (json!({ "timezone": "UTC", "slots": [] }), "invalid_window"),
    ] {
        assert_error(&window(body).await, StatusCode::BAD_REQUEST, code);
    }
    let g = t.get("/v1/groups/g", Some(&t.admin)).await.json();
    assert_eq!(g["window"], Value::Null, "{g}");
    assert_eq!(g["serials"], json!(["D-0000"]));
    assert_error(
        &t.get("/v1/groups/nope", Some(&t.admin)).await,
        StatusCode::NOT_FOUND,
        "unknown_group",
    );
    let r = t
        .put_json(
            "/v1/admin/devices/D-0000/tags",
            Some(&t.admin),
            &json!({ "tags": ["has space"] }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_tag");
    let r = t
        .put_json(
            "/v1/admin/devices/NOPE-1/tags",
            Some(&t.admin),
            &json!({ "tags": ["x"] }),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_serial");
}
