//! The AMQP listener: accepts sockets and runs each connection on its own task, so one bad
//! client never stalls another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::broker::{Broker, Limits};
use crate::config::Config;
use crate::mgmt::MgmtListener;
use crate::server::connection::serve_connection;

pub struct Listener {
    inner: TcpListener,
    broker: Arc<Broker>,
}

impl Listener {
    pub async fn bind(config: &Config) -> std::io::Result<Listener> {
        let limits = Limits {
            max_message_size: config.max_message_size,
            queue_memory_window: config.queue_memory_window,
            transient_memory_limit: config.transient_memory_limit,
            disk_free_limit: config.disk_free_limit,
            consumer_timeout_ms: config.consumer_timeout,
            ..Limits::default()
        };
        // The store first: a second Warren on the same data directory stops here, before it
        // takes a port.
        let broker = Broker::open(limits, &config.data_dir).map_err(std::io::Error::other)?;
        let inner = TcpListener::bind((config.bind.as_str(), config.port)).await?;
        let broker = Arc::new(broker);
        broker.start_resource_monitor();
        Ok(Listener { inner, broker })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        loop {
            let (socket, peer) = match self.inner.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: log, back off briefly, keep serving.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve_connection(self.broker.clone(), socket, peer));
        }
    }
}

/// How long connections get to close on shutdown before the store is flushed anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Binds and serves until SIGTERM or SIGINT, then shuts down gracefully: no new connections,
/// every client told 320 CONNECTION_FORCED, everything written to the store synced.
pub async fn serve(config: Config) -> std::io::Result<()> {
    let listener = Listener::bind(&config).await?;
    let amqp = listener.local_addr()?;
    info!(addr = %amqp, data_dir = %config.data_dir.display(), "warren listening for AMQP 0-9-1");
    let broker = listener.broker().clone();
    if !config.load_definitions.is_empty() {
        crate::mgmt::load_definitions(&broker, std::path::Path::new(&config.load_definitions))
            .map_err(std::io::Error::other)?;
    }
    let mgmt = MgmtListener::bind(broker.clone(), &config.mgmt_bind, config.mgmt_port, amqp).await?;
    info!(addr = %mgmt.local_addr()?, "management HTTP API listening");
    tokio::select! {
        result = listener.run() => result?,
        result = mgmt.run() => result?,
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
