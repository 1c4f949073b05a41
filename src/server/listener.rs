//! The AMQP listeners: plain AMQP (`bind`:`port`, 5672) and AMQPS (`tls_bind`:`tls_port`, 5671,
//! when a certificate and key are configured). Each accepts sockets and runs each connection on
//! its own task, so one bad client never stalls another; a TLS connection first completes its
//! TLS handshake on that task. A failed accept (out of file descriptors) pauses the
//! listener and is logged once per run of failures ([`crate::server::accept`]).

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing::info;

use crate::broker::{Bootstrap, Broker, Limits};
use crate::config::Config;
use crate::server::accept::AcceptErrors;
use crate::server::connection::serve_connection;
use crate::server::tls::TlsSettings;

pub struct Listener {
    plain: Option<TcpListener>,
    tls: Option<(TcpListener, TlsSettings)>,
    broker: Arc<Broker>,
}

impl Listener {
    pub async fn bind(config: &Config) -> std::io::Result<Listener> {
        crate::store::writer::set_completion_scope(
            super::read_batch::begin_completions,
            super::read_batch::end_completions,
        );
        // The TLS files first: a bad certificate or key stops start-up with its name.
        let tls = TlsSettings::from_config(config)?;
        if !config.plain_listener && tls.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "plain_listener is off and no TLS listener is configured (tls_cert, tls_key): nothing to listen on",
            ));
        }
        let memory_high_watermark = config.memory_watermark().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("memory_high_watermark: {e}"))
        })?;
        let limits = Limits {
            memory_high_watermark,
            max_message_size: config.max_message_size,
            queue_memory_window: config.queue_memory_window,
            transient_memory_limit: config.transient_memory_limit,
            disk_free_limit: config.disk_free_limit,
            consumer_timeout_ms: config.consumer_timeout,
            ..Limits::default()
        };
        // The store first: a second Warren on the same data directory stops here, before it
        // takes a port.
        let vhost =
            crate::protocol::ShortStr::try_from(config.default_vhost.as_str()).map_err(std::io::Error::other)?;
        let boot = Bootstrap {
            default_user: config.default_user.clone(),
            default_pass: config.default_pass.clone(),
            default_vhost: vhost,
            loopback_users: config.loopback_user_list(),
        };
        let broker = Broker::open_with(limits, &boot, &config.data_dir).map_err(std::io::Error::other)?;
        let plain = match config.plain_listener {
            true => Some(TcpListener::bind((config.bind.as_str(), config.port)).await?),
            false => None,
        };
        let tls = match tls {
            Some(settings) => {
                let bind = if config.tls_bind.is_empty() { config.bind.as_str() } else { config.tls_bind.as_str() };
                Some((TcpListener::bind((bind, config.tls_port)).await?, settings))
            }
            None => None,
        };
        let broker = Arc::new(broker);
        broker.start_resource_monitor();
        Ok(Listener { plain, tls, broker })
    }

    /// The plain AMQP listener's address; with that listener off, the AMQPS one's.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match (&self.plain, &self.tls) {
            (Some(plain), _) => plain.local_addr(),
            (None, Some((tls, _))) => tls.local_addr(),
            (None, None) => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// The plain AMQP listener's address, if it runs.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The AMQPS listener's address, if it runs.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The TLS settings of the AMQPS listener, if it runs.
    pub fn tls_settings(&self) -> Option<&TlsSettings> {
        self.tls.as_ref().map(|(_, s)| s)
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Accepts connections until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        let Listener { plain, tls, broker } = self;
        let plain = async {
            match plain {
                Some(l) => accept_loop(l, broker.clone(), None).await,
                None => std::future::pending().await,
            }
        };
        let tls = async {
            match tls {
                Some((l, settings)) => accept_loop(l, broker.clone(), Some(settings)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = plain => r,
            r = tls => r,
        }
    }
}

async fn accept_loop(listener: TcpListener, broker: Arc<Broker>, tls: Option<TlsSettings>) -> std::io::Result<()> {
    let mut errors = AcceptErrors::new(if tls.is_some() { "amqps" } else { "amqp" });
    loop {
        let (socket, peer) = errors.accept(&listener).await;
        let _ = socket.set_nodelay(true);
        match &tls {
            None => {
                tokio::spawn(serve_connection(broker.clone(), socket, peer));
            }
            Some(tls) => {
                let (tls, broker) = (tls.clone(), broker.clone());
                tokio::spawn(async move {
                    match tls.accept(socket).await {
                        Ok(conn) => serve_connection(broker, conn, peer).await,
                        Err(e) => info!(%peer, error = %e, "TLS handshake failed; connection closed"),
                    }
                });
            }
        }
    }
}
