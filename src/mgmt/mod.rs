//! The management plane over HTTP: RabbitMQ's management API (`/api/...`, the same paths,
//! JSON fields, status codes and error bodies, so `rabbitmqadmin`, rabbit-hole, pyrabbit and
//! deploy scripts work unchanged), on its own listener (`--mgmt-port`, 15672 by default) on the
//! broker's runtime.
//!
//! It is a client of the broker like an AMQP channel is: every change goes through the
//! definitions funnel (`broker::definitions`), every publish through `VHost::publish`. Handlers
//! live in [`api`], one file per endpoint group; what every list shares (pagination, sorting,
//! columns) is in [`listing`], JSON conventions in [`json`], errors in [`error`]. The
//! web UI, a page of ES modules over the same API, is [`ui`].

pub mod api;
pub mod auth;
pub mod authz;
pub mod error;
pub mod json;
pub mod listing;
pub mod rates;
mod time;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::TcpListener;

use crate::broker::Broker;
use crate::server::accept::{AcceptErrors, HttpListener};

/// What the handlers share.
pub struct Mgmt {
    pub broker: Arc<Broker>,
    /// This node's name as RabbitMQ spells them (`rabbit@<host>`): tools and dashboards key on it.
    pub node: String,
    pub started: Instant,
    /// The listeners reported by `/api/overview` and checked by the port-listener health check.
    pub listeners: Vec<ListenerInfo>,
    /// Samples of the queues' counters, for message rates.
    pub rates: rates::Rates,
}

#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// RabbitMQ's protocol names: `amqp`, `amqp/ssl`, `http`.
    pub protocol: &'static str,
    pub addr: SocketAddr,
}

/// The HTTP listener (and the HTTPS one, when asked), bound and ready to serve.
pub struct MgmtListener {
    inner: TcpListener,
    https: Option<HttpsListener>,
    mgmt: Arc<Mgmt>,
}

impl MgmtListener {
    /// Binds `addr` for the broker whose AMQP listener is at `amqp`.
    pub async fn bind(broker: Arc<Broker>, bind: &str, port: u16, amqp: SocketAddr) -> std::io::Result<MgmtListener> {
        MgmtListener::bind_for(broker, bind, port, vec![ListenerInfo { protocol: "amqp", addr: amqp }], None).await
    }

    /// Binds `addr` for the broker whose other listeners (`amqp`, `amqp/ssl`) are `listeners`;
    /// with `https` (a port and its TLS configuration), an HTTPS listener on `bind` too.
    pub async fn bind_for(
        broker: Arc<Broker>,
        bind: &str,
        port: u16,
        mut listeners: Vec<ListenerInfo>,
        https: Option<(u16, Arc<rustls::ServerConfig>)>,
    ) -> std::io::Result<MgmtListener> {
        let inner = TcpListener::bind((bind, port)).await?;
        let http = inner.local_addr()?;
        listeners.push(ListenerInfo { protocol: "http", addr: http });
        let https = match https {
            Some((port, config)) => {
                let l = HttpsListener::new(TcpListener::bind((bind, port)).await?, config)?;
                listeners.push(ListenerInfo { protocol: "https", addr: l.local });
                Some(l)
            }
            None => None,
        };
        let mgmt = Arc::new(Mgmt {
            broker,
            node: node_name(),
            started: Instant::now(),
            listeners,
            rates: rates::Rates::default(),
        });
        Ok(MgmtListener { inner, https, mgmt })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The HTTPS listener's address, if it runs.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https.as_ref().map(|l| l.local)
    }

    /// Serves until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        let sampler = tokio::spawn(rates::run_sampler(Arc::downgrade(&self.mgmt)));
        let app = api::router(self.mgmt);
        let _stop_sampling = AbortOnDrop(sampler);
        // (tap_io: axum gives the peer address of a custom listener's connections only so.)
        let inner = HttpListener::new(self.inner, "http").tap_io(|_| {});
        let http = axum::serve(inner, app.clone().into_make_service_with_connect_info::<SocketAddr>());
        match self.https {
            None => http.await,
            Some(https) => {
                let https = axum::serve(https.tap_io(|_| {}), app.into_make_service_with_connect_info::<SocketAddr>());
                tokio::select! {
                    r = http => r,
                    r = https => r,
                }
            }
        }
    }
}

/// Accepts TCP connections and runs their TLS handshakes each on its own task (a slow client
/// never holds up the others), handing the finished ones to axum.
struct HttpsListener {
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _accepting: AbortOnDrop,
}

impl HttpsListener {
    fn new(inner: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<HttpsListener> {
        let local = inner.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let mut errors = AcceptErrors::new("https");
        let accepting = tokio::spawn(async move {
            loop {
                let (socket, peer) = errors.accept(&inner).await;
                let (tx, acceptor) = (tx.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let timeout = crate::server::tls::TLS_HANDSHAKE_TIMEOUT;
                    match tokio::time::timeout(timeout, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS: TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "HTTPS: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(HttpsListener { ready, local, _accepting: AbortOnDrop(accepting) })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Stops the sampler when the listener's task ends (or is aborted).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Imports a definitions file at start-up (RabbitMQ's `load_definitions`): checked in full,
/// then applied; an error names the file and changes nothing.
pub fn load_definitions(broker: &Broker, path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let set = api::parse_definitions(&doc).map_err(|e| format!("{}: {}", path.display(), e.reason))?;
    let done = broker.import_definitions(&set, None).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::info!(file = %path.display(), ?done, "definitions loaded");
    Ok(())
}

/// `rabbit@<hostname>`, as RabbitMQ names a node by default: monitoring checks ask for
/// `/api/nodes/rabbit@<host>`.
pub fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    format!("rabbit@{host}")
}
