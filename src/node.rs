//! A Warren node: the broker with its listeners — AMQP (`server`), the management HTTP API
//! (`mgmt`) and Prometheus metrics (`metrics`) — started together and shut down gracefully. The one place that knows both, so
//! neither listener depends on the other (server → broker, mgmt → broker).

use std::time::Duration;

use tracing::info;

use crate::config::Config;
use crate::metrics::PrometheusListener;
use crate::mgmt::{ListenerInfo, MgmtListener};
use crate::server::Listener;

/// How long connections get to close on shutdown before the store is flushed anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binds and serves until SIGTERM or SIGINT, then shuts down gracefully: no new connections,
/// every client told 320 CONNECTION_FORCED, everything written to the store synced.
pub async fn serve(config: Config) -> std::io::Result<()> {
    let listener = Listener::bind(&config).await?;
    let mut listeners = Vec::new();
    if let Some(addr) = listener.plain_addr() {
        info!(%addr, data_dir = %config.data_dir.display(), "warren listening for AMQP 0-9-1");
        listeners.push(ListenerInfo { protocol: "amqp", addr });
    }
    if let Some(addr) = listener.tls_addr() {
        info!(%addr, data_dir = %config.data_dir.display(), "warren listening for AMQP 0-9-1 over TLS");
        listeners.push(ListenerInfo { protocol: "amqp/ssl", addr });
    }
    let broker = listener.broker().clone();
    if !config.load_definitions.is_empty() {
        crate::mgmt::load_definitions(&broker, std::path::Path::new(&config.load_definitions))
            .map_err(std::io::Error::other)?;
    }
    let https = crate::server::tls::https_config(&config)?.map(|tls| (config.mgmt_tls_port, tls));
    let mgmt = MgmtListener::bind_for(broker.clone(), &config.mgmt_bind, config.mgmt_port, listeners, https).await?;
    info!(addr = %mgmt.local_addr()?, "management HTTP API listening");
    if let Some(addr) = mgmt.https_addr() {
        info!(%addr, "management HTTP API listening over TLS");
    }
    let prometheus = PrometheusListener::bind(broker.clone(), &config.prometheus_bind, config.prometheus_port).await?;
    info!(addr = %prometheus.local_addr()?, "Prometheus metrics listening");
    tokio::select! {
        result = listener.run() => result?,
        result = mgmt.run() => result?,
        result = prometheus.run() => result?,
        signal = stop_signal() => info!("{signal}: shutting down"),
    }
    broker.begin_shutdown();
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    while broker.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let broker_for_flush = broker.clone();
    tokio::task::spawn_blocking(move || broker_for_flush.flush_store()).await.map_err(std::io::Error::other)?;
    info!(open_connections = broker.connection_count(), "store flushed; stopped");
    Ok(())
}

async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            // Without signal handlers, run until killed.
            std::future::pending::<()>().await;
            "never"
        }
    }
}
