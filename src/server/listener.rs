//! The AMQP listener: accepts sockets and runs each connection on its own task, so one bad
//! client never stalls another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::warn;

use crate::broker::{Bootstrap, Broker, Limits};
use crate::config::Config;
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
        let vhost =
            crate::protocol::ShortStr::try_from(config.default_vhost.as_str()).map_err(std::io::Error::other)?;
        let boot = Bootstrap {
            default_user: config.default_user.clone(),
            default_pass: config.default_pass.clone(),
            default_vhost: vhost,
            loopback_users: config.loopback_user_list(),
        };
        let broker = Broker::open_with(limits, &boot, &config.data_dir).map_err(std::io::Error::other)?;
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
