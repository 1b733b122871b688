//! Prometheus metrics: what the service does, for dashboards and alerts.
//!
//! The `metrics` facade records; `metrics-exporter-prometheus` renders the
//! text format at `GET /metrics` (see `controllers::health`). One recorder
//! per process, installed by the first [`App`](crate::app::App) built.
//!
//! Names carry units (`_seconds`, `_bytes`) and counters end in `_total`,
//! as Prometheus' conventions ask. Labels stay few and bounded: routes are
//! the route templates (`/v1/images/{sha256}`), never raw paths; device
//! reason codes are device-chosen, so only the first [`MAX_REASONS`]
//! distinct ones become label values and the rest count as `other`.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Distinct device reason codes kept as label values.
pub const MAX_REASONS: usize = 64;

/// Latency buckets, in seconds: from a cached check to a slow upload.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's recorder handle, installing the recorder on first use. A
/// recorder some other code installed first leaves this one unattached;
/// the handle then renders only what it has (nothing), and says so once.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed elsewhere; /metrics stays empty");
        }
        handle
    })
}

/// One HTTP request answered.
pub fn request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let status = status.to_string();
    counter!(
        "firmup_http_requests_total",
        "route" => route.to_owned(),
        "method" => method.to_owned(),
        "status" => status
    )
    .increment(1);
    histogram!(
        "firmup_http_request_duration_seconds",
        "route" => route.to_owned(),
        "method" => method.to_owned()
    )
    .record(elapsed.as_secs_f64());
}

/// One update check answered, by outcome (`update_available`,
/// `up_to_date`, `not_entitled`, or `deferred`: an offer waiting for a
/// maintenance window).
pub fn check(outcome: &'static str) {
    counter!("firmup_update_checks_total", "outcome" => outcome).increment(1);
}

/// Image bytes sent to a client by the server itself (not by redirect).
pub fn bytes_served(n: u64) {
    counter!("firmup_download_bytes_total").increment(n);
}

/// A download redirected to the object store.
pub fn download_redirected() {
    counter!("firmup_download_redirects_total").increment(1);
}

/// Counts a download as active while it lives.
#[derive(Debug)]
pub struct ActiveDownload(());

impl ActiveDownload {
    /// A download started streaming.
    pub fn start() -> Self {
        gauge!("firmup_downloads_active").increment(1.0);
        ActiveDownload(())
    }
}

impl Drop for ActiveDownload {
    fn drop(&mut self) {
        gauge!("firmup_downloads_active").decrement(1.0);
    }
}

/// One publish attempt, by outcome (`created`, `already_published`, or the
/// error code it was refused with).
pub fn publish(outcome: &str) {
    counter!("firmup_publishes_total", "outcome" => outcome.to_owned()).increment(1);
}

/// One cache lookup (`cache`: `tokens`, `devices`).
pub fn cache(cache: &'static str, hit: bool) {
    counter!(
        "firmup_cache_lookups_total",
        "cache" => cache,
        "result" => if hit { "hit" } else { "miss" }
    )
    .increment(1);
}

/// One device report, by stage and reason code.
pub fn report(stage: &'static str, reason: Option<&str>) {
    let reason = reason.map_or_else(|| "none".to_owned(), bounded_reason);
    counter!("firmup_device_reports_total", "stage" => stage, "reason" => reason).increment(1);
}

fn bounded_reason(reason: &str) -> String {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.contains(reason) {
        return reason.to_owned();
    }
    if seen.len() < MAX_REASONS {
        seen.insert(reason.to_owned());
        return reason.to_owned();
    }
    "other".to_owned()
}

/// The database pool's connections now, set when metrics are scraped.
pub fn pool(size: u32, idle: usize, max: u32) {
    gauge!("firmup_db_pool_connections", "state" => "open").set(f64::from(size));
    gauge!("firmup_db_pool_connections", "state" => "idle").set(idle as f64);
    gauge!("firmup_db_pool_connections_max").set(f64::from(max));
}
