//! `firmup-device update`: one full update cycle.

use std::path::Path;

use anyhow::Result;
use firmup_client::CycleOutcome;

use crate::agent::{
    Bar, Parts, finish_interrupted, print_security_support, reboot_and_finish, report_finish,
};

/// Runs one full update cycle: finish an interrupted update if any, check,
/// verify, download (resuming what an earlier run left), install into the
/// inactive slot, reboot (simulated), health check (fails if the flag file
/// `unhealthy` exists in the state directory), then commit or roll back,
/// reporting each stage to the server.
///
/// Security releases (kind `security` or `mixed` in the signed manifest)
/// install without asking while automatic security updates are on (the
/// default). When the owner turned them off or postponed them
/// (`firmup-device security-updates`), the release is not installed, and
/// the server is told once per release (`opted_out`, or `postponed` with
/// the date). Feature releases install as before.
///
/// `--version V` asks the server for that release by name instead of
/// checking what is on offer, yanked or not (a withdrawn security fix stays
/// available for years): it is verified like any update (signatures,
/// hardware, channel, expiry, no downgrade, anti-rollback) and installed,
/// whatever the security updates choice, since the owner asked for it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Install this version (semver) of the device's channel, fetched by
    /// name, instead of what the check offers.
    #[arg(long, value_name = "VERSION")]
    version: Option<semver::Version>,
}

/// Runs `update`.
pub fn run(dir: &Path, origins: &[String], a: Args) -> Result<()> {
    let mut parts = Parts::open(dir, origins)?;
    let device = parts.device.clone();
    let mut session = parts.session();
    match a.version {
        Some(v) => fetch_and_install(&mut session, &device, &v),
        None => cycle(&mut session, &device).map(|_| ()),
    }
}

/// `update --version V`: fetch, verify, install, reboot, finish.
fn fetch_and_install(
    session: &mut firmup_client::UpdateSession<'_>,
    device: &crate::agent::Device,
    version: &semver::Version,
) -> Result<()> {
    finish_interrupted(session, device)?;
    if let Some(p) = session.state()?.pending() {
        anyhow::bail!(
            "update to {} in slot {} is still pending; reboot and finish it first",
            p.version,
            p.slot
        );
    }
    let fetched = session.fetch(version)?;
    let notice = session.notice(&fetched.offer);
    println!(
        "fetched {} ({} release{})",
        fetched.offer.version(),
        notice.kind.as_str(),
        if fetched.yanked {
            ", withdrawn from offers"
        } else {
            ""
        }
    );
    if let Some(a) = &notice.advisory {
        println!("advisory: {}", a.summary);
    }
    let mut bar = Bar::new();
    let res = session.download_and_install(&fetched.offer, |p| bar.update(p));
    bar.finish();
    let p = res?;
    println!("wrote {} to slot {}; rebooting", p.version, p.slot);
    report_finish(&reboot_and_finish(session, device)?)
}

/// One cycle; returns the server's poll interval.
pub fn cycle(
    session: &mut firmup_client::UpdateSession<'_>,
    device: &crate::agent::Device,
) -> Result<u64> {
    finish_interrupted(session, device)?;
    // Read before every cycle: the owner may change it while `run` loops.
    session.set_security_updates(device.security_updates()?);
    let mut bar = Bar::new();
    let res = session.update(|p| bar.update(p));
    bar.finish();
    let cycle = res?;
    device.remember_security_support(cycle.security_support.as_ref());
    if let Some(s) = &cycle.security_support {
        print_security_support(s);
    }
    match cycle.outcome {
        CycleOutcome::UpToDate => println!("up to date"),
        CycleOutcome::NotEntitled(e) => println!("not entitled ({}): {}", e.code, e.summary),
        CycleOutcome::Declined(o) => println!("update to {} declined", o.version()),
        CycleOutcome::OptedOut(o) => println!(
            "security update {} not installed: automatic security updates are off",
            o.version()
        ),
        CycleOutcome::Postponed { offer, until } => println!(
            "security update {} postponed until {}",
            offer.version(),
            firmup_client::format_time(until)
        ),
        CycleOutcome::Installed(p) => {
            println!("wrote {} to slot {}; rebooting", p.version, p.slot);
            report_finish(&reboot_and_finish(session, device)?)?;
        }
    }
    Ok(cycle.poll_after_secs)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read as _, Write as _};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::{Arc, Mutex};

    use firmup_client::{DeviceConfig, Slot, StateStore as _, TrustedRoot, TrustedState};
    use firmup_fixtures::{ReleaseBuilder, RootBuilder};
    use serde_json::{Value, json};

    use super::cycle;
    use crate::agent::{AgentConfig, Device, EXIT_RETRY, Parts, classify};

    /// One request as a test server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        authorization: Option<String>,
        range: Option<String>,
        body: Vec<u8>,
    }

    /// An HTTP/1.1 server on 127.0.0.1, one request per connection,
    /// answering with `respond(request, number of earlier requests)`.
    fn serve(
        respond: impl Fn(&Seen, usize) -> (String, Vec<(String, String)>, Vec<u8>) + Send + 'static,
    ) -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut words = line.split_whitespace();
                let method = words.next().unwrap_or("").to_owned();
                let target = words.next().unwrap_or("").to_owned();
                let (mut authorization, mut range, mut length) = (None, None, 0usize);
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        let v = v.trim().to_owned();
                        match k.trim().to_ascii_lowercase().as_str() {
                            "authorization" => authorization = Some(v),
                            "range" => range = Some(v),
                            "content-length" => length = v.parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let req = Seen {
                    method,
                    target,
                    authorization,
                    range,
                    body,
                };
                let n = {
                    let mut log = log.lock().unwrap();
                    log.push(req.clone());
                    log.len() - 1
                };
                let (status, headers, body) = respond(&req, n);
                let mut out = format!(
                    "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let _ = conn.write_all(out.as_bytes());
                let _ = conn.write_all(&body);
            }
        });
        (addr, seen)
    }

    /// The server redirects image downloads to presigned URLs on an object
    /// store listed in config.json; the first presigned URL has expired by
    /// the time the device asks. The cycle fails as "try again later"
    /// without a failure report; the next cycle's check hands out a fresh
    /// grant, the server a fresh presigned URL, and the update installs.
    /// The device token goes to the server's check and reports only: no
    /// image request, to the server or the store, carries it.
    #[test]
    fn a_refused_presigned_url_falls_back_to_a_fresh_check() {
        let release = ReleaseBuilder::standard().build();
        let spec = release.manifest.images[0].clone();
        let sha = spec.sha256.to_hex();

        let image = release.image.clone();
        let (store_addr, store_seen) = serve(move |req, _| {
            if req.target.ends_with("X-Amz-Signature=expired") {
                let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
                return ("403 Forbidden".into(), vec![], xml.to_vec());
            }
            let from: usize = req
                .range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.strip_suffix('-'))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let range = format!("bytes {from}-{}/{}", image.len() - 1, image.len());
            (
                "206 Partial Content".into(),
                vec![("content-range".into(), range)],
                image[from..].to_vec(),
            )
        });
        let store_origin = format!("http://127.0.0.1:{}", store_addr.port());

        let manifest: Value = serde_json::from_slice(&release.envelope).unwrap();
        let checks = Arc::new(Mutex::new(0u32));
        let (presigned, version) = (store_origin.clone(), release.manifest.version.to_string());
        let (server_addr, server_seen) = serve(move |req, _| {
            let target = req.target.trim_start_matches('/');
            if req.method == "POST" && target == firmup_client::protocol::CHECK_PATH {
                let mut n = checks.lock().unwrap();
                *n += 1;
                let url = format!("/v1/images/{sha}?sub=SN-0001&exp=1&sig=grant{n}");
                let answer = json!({
                    "status": "update_available",
                    "poll_after_secs": 3600,
                    "root_chain": [],
                    "update": {
                        "version": version,
                        "channel": "stable",
                        "manifest": manifest,
                        "images": [{ "name": spec.name, "target": spec.target,
                                     "length": spec.length, "sha256": sha, "url": url }],
                        "entitlement": { "code": "in_production", "summary": "Free upgrade." }
                    }
                });
                return (
                    "200 OK".into(),
                    vec![],
                    serde_json::to_vec(&answer).unwrap(),
                );
            }
            if req.method == "POST" {
                return ("201 Created".into(), vec![], br#"{"id":1}"#.to_vec());
            }
            // The grant checked: off to the store, with a presigned URL
            // that has expired for the first grant.
            let sig = if req.target.ends_with("sig=grant1") {
                "expired"
            } else {
                "fresh"
            };
            let location = format!("{presigned}/bucket/images/{sha}?X-Amz-Signature={sig}");
            (
                "302 Found".into(),
                vec![("location".into(), location)],
                vec![],
            )
        });

        let dir = tempfile::tempdir().unwrap();
        let device = Device::new(dir.path());
        let root = TrustedRoot::from_pinned(&RootBuilder::standard().build()).unwrap();
        device
            .store()
            .unwrap()
            .save(&TrustedState::new(&root, "2.0.0".parse().unwrap(), 3))
            .unwrap();
        let flasher = device.flasher().unwrap();
        std::fs::write(flasher.slot_path(Slot::A), b"factory").unwrap();
        drop(flasher);
        device
            .save_config(&AgentConfig {
                device: DeviceConfig {
                    server: format!("http://{server_addr}"),
                    serial: "SN-0001".into(),
                    hw_id: "enc-4k-r2".into(),
                    product_line: "encoders".into(),
                    channel: "stable".into(),
                    token: "device-token".into(),
                },
                allowed_download_origins: vec![store_origin.clone()],
            })
            .unwrap();

        let mut parts = Parts::open(dir.path(), &[]).unwrap();
        let mut session = parts.session();

        // Cycle 1: the store refuses the expired presigned URL.
        let err = cycle(&mut session, &device).unwrap_err();
        let lib = err
            .chain()
            .find_map(|c| c.downcast_ref::<firmup_client::Error>())
            .unwrap();
        assert_eq!(lib.code(), "presigned_url_refused", "{err:#}");
        assert_eq!(classify(lib), EXIT_RETRY);
        assert!(
            format!("{err:#}").contains(&format!("refused by {store_origin}")),
            "{err:#}"
        );
        let stages = |seen: &[Seen]| -> Vec<String> {
            seen.iter()
                .filter(|r| r.target.contains("reports"))
                .map(|r| {
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    v["stage"].as_str().unwrap().to_owned()
                })
                .collect()
        };
        assert_eq!(stages(&server_seen.lock().unwrap()), ["downloading"]);
        assert_eq!(store_seen.lock().unwrap().len(), 1);

        // Cycle 2: a fresh check, a fresh grant, a fresh presigned URL.
        cycle(&mut session, &device).unwrap();
        drop(session);
        let state = device.store().unwrap().load().unwrap().unwrap();
        assert_eq!(state.installed_version(), &release.manifest.version);

        let at_server = server_seen.lock().unwrap().clone();
        let at_store = store_seen.lock().unwrap().clone();
        let checks: Vec<_> = at_server
            .iter()
            .filter(|r| r.target.contains("check"))
            .collect();
        assert_eq!(checks.len(), 2);
        assert!(
            stages(&at_server).contains(&"installed".to_owned()),
            "{:?}",
            stages(&at_server)
        );
        for r in at_server.iter().filter(|r| r.method == "POST") {
            assert_eq!(r.authorization.as_deref(), Some("Bearer device-token"));
        }
        let image_gets: Vec<_> = at_server.iter().filter(|r| r.method == "GET").collect();
        assert_eq!(image_gets.len(), 2);
        for r in image_gets.iter().copied().chain(&at_store) {
            assert_eq!(r.authorization, None, "{r:?}");
            assert!(r.range.is_some(), "{r:?}");
        }
        assert!(
            at_store
                .last()
                .unwrap()
                .target
                .ends_with("X-Amz-Signature=fresh")
        );
    }

    /// A provisioned device at 2.0.0 whose server offers `release` with a
    /// security support end; returns the device and what the server saw.
    fn device_offered(
        release: &firmup_fixtures::SignedRelease,
    ) -> (tempfile::TempDir, Device, Arc<Mutex<Vec<Seen>>>) {
        let spec = release.manifest.images[0].clone();
        let sha = spec.sha256.to_hex();
        let manifest: Value = serde_json::from_slice(&release.envelope).unwrap();
        let (version, image) = (release.manifest.version.to_string(), release.image.clone());
        let (addr, seen) = serve(move |req, _| {
            let target = req.target.trim_start_matches('/');
            if req.method == "POST" && target == firmup_client::protocol::CHECK_PATH {
                let answer = json!({
                    "status": "update_available",
                    "poll_after_secs": 3600,
                    "root_chain": [],
                    "update": {
                        "version": version,
                        "channel": "stable",
                        "manifest": manifest,
                        "images": [{ "name": spec.name, "target": spec.target,
                                     "length": spec.length, "sha256": sha,
                                     "url": format!("/v1/images/{sha}") }],
                        "entitlement": { "code": "in_production", "summary": "Free." }
                    },
                    "security_support": { "ends": "2031-06-30",
                                          "warning": "Security support ends on 2031-06-30." }
                });
                return (
                    "200 OK".into(),
                    vec![],
                    serde_json::to_vec(&answer).unwrap(),
                );
            }
            if req.method == "POST" {
                return ("201 Created".into(), vec![], br#"{"id":1}"#.to_vec());
            }
            ("200 OK".into(), vec![], image.clone())
        });
        let dir = tempfile::tempdir().unwrap();
        let device = Device::new(dir.path());
        let root = TrustedRoot::from_pinned(&RootBuilder::standard().build()).unwrap();
        device
            .store()
            .unwrap()
            .save(&TrustedState::new(&root, "2.0.0".parse().unwrap(), 3))
            .unwrap();
        let flasher = device.flasher().unwrap();
        std::fs::write(flasher.slot_path(Slot::A), b"factory").unwrap();
        drop(flasher);
        device
            .save_config(&AgentConfig {
                device: DeviceConfig {
                    server: format!("http://{addr}"),
                    serial: "SN-0001".into(),
                    hw_id: "enc-4k-r2".into(),
                    product_line: "encoders".into(),
                    channel: "stable".into(),
                    token: "device-token".into(),
                },
                allowed_download_origins: vec![],
            })
            .unwrap();
        (dir, device, seen)
    }

    fn stages(seen: &Mutex<Vec<Seen>>) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|r| r.target.contains("reports"))
            .map(|r| {
                let v: Value = serde_json::from_slice(&r.body).unwrap();
                v["stage"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    /// The owner's choice in the state directory holds a security release
    /// back, is reported once however often the agent polls, and a changed
    /// choice reaches the same session (a running poll loop) at its next
    /// cycle.
    #[test]
    fn the_stored_choice_holds_a_security_release_back_until_the_owner_turns_it_on() {
        let release = ReleaseBuilder::standard()
            .security(&["CVE-2026-1001"])
            .build();
        let (dir, device, seen) = device_offered(&release);
        device
            .save_security_updates(firmup_client::SecurityUpdates::OptedOut)
            .unwrap();
        let mut parts = Parts::open(dir.path(), &[]).unwrap();
        let mut session = parts.session();
        for _ in 0..3 {
            assert_eq!(cycle(&mut session, &device).unwrap(), 3600);
        }
        assert_eq!(stages(&seen), ["opted_out"]);
        let support = device.security_support().unwrap();
        assert_eq!(support.ends, "2031-06-30");

        device
            .save_security_updates(firmup_client::SecurityUpdates::Automatic)
            .unwrap();
        cycle(&mut session, &device).unwrap();
        drop(session);
        assert_eq!(
            stages(&seen),
            [
                "opted_out",
                "downloading",
                "verifying",
                "installing",
                "installed"
            ]
        );
        let state = device.store().unwrap().load().unwrap().unwrap();
        assert_eq!(state.installed_version(), &release.manifest.version);
    }

    /// A policy file that cannot be read stops the cycle before the check:
    /// reading it as "automatic" would override an owner's opt-out.
    #[test]
    fn an_unreadable_choice_is_an_error_not_automatic() {
        let release = ReleaseBuilder::standard()
            .security(&["CVE-2026-1001"])
            .build();
        let (dir, device, seen) = device_offered(&release);
        std::fs::write(
            dir.path().join(crate::agent::SECURITY_UPDATES_FILE),
            b"{\"mode\":\"sometimes\"}",
        )
        .unwrap();
        let mut parts = Parts::open(dir.path(), &[]).unwrap();
        let mut session = parts.session();
        let err = cycle(&mut session, &device).unwrap_err();
        assert!(format!("{err:#}").contains("security-updates"), "{err:#}");
        drop(session);
        assert!(seen.lock().unwrap().is_empty());
    }
}
