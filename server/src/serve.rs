//! Runs the HTTP server until SIGINT or SIGTERM, then drains in-flight
//! requests (graceful shutdown).

use anyhow::Context as _;

use crate::app::App;
use crate::config::Config;

/// Serves until a shutdown signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let open_files = raise_open_file_limit();
    let limits = config.connection_limits(open_files);
    if limits.max_connections < config.max_connections {
        tracing::warn!(
            max_connections = limits.max_connections,
            configured = config.max_connections,
            "max_connections lowered to fit the open-file limit"
        );
    }
    let app = App::build(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr()?;
    let root_version = app.trust().latest().map_or(0, |r| r.version());
    tracing::info!(
        address = %local,
        trust_root_version = root_version,
        data_dir = %app.config.data_dir.display(),
        max_connections = limits.max_connections,
        "firmup-server listening"
    );
    if root_version == 0 {
        tracing::warn!(
            "no trust root configured: publishing is refused until one is set \
             (--trust-root FILE, or POST /v1/trust/roots as an admin)"
        );
    }
    let router = crate::router::build(app.clone());
    if let Some(addr) = app.config.metrics_listen {
        let metrics_listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding metrics_listen {addr}"))?;
        tracing::info!(address = %addr, "metrics listening");
        let app = app.clone();
        let metrics = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let app = app.clone();
                async move { crate::controllers::health::render(&app) }
            }),
        );
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics_listener, metrics).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    crate::ratelimit::spawn_sweeper(std::sync::Arc::downgrade(&app.rate_limits));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    crate::conn::serve(listener, router, limits, shutdown).await;
    // In-flight checks have drained; write the last-seen records they queued.
    if let Err(e) = app.invalidations.flush().await {
        tracing::warn!(error = format!("{e:#}"), "final invalidation flush failed");
    }
    match app.last_seen.flush().await {
        Ok(devices) => tracing::info!(devices, "last-seen records flushed"),
        Err(e) => tracing::warn!(error = format!("{e:#}"), "final last-seen flush failed"),
    }
    tracing::info!("shut down");
    Ok(())
}

/// Raises the open-file soft limit to the hard limit (each connection is
/// a descriptor) and logs what it got; `None` where there is no such limit.
fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(now) => {
                tracing::info!(
                    open_files = now,
                    before = before.map(|(soft, _)| soft),
                    "open-file limit"
                );
                Some(now)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-file limit");
                before.map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    None
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining requests");
}
