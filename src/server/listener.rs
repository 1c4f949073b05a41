//! The AMQP listener.
//!
//! For now a connection is taken as far as the protocol header: a client speaking another
//! protocol version gets `AMQP 0-9-1`'s header back and the socket is closed (spec 4.2.2), as
//! RabbitMQ does. The connection state machine (`connection.start` onwards) comes with the
//! broker core and is listed as missing in the README.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::protocol::{check_protocol_header, ProtocolHeader, PROTOCOL_HEADER};

/// How long a client may take to send its protocol header (RabbitMQ's handshake timeout).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Listener {
    inner: TcpListener,
}

impl Listener {
    pub async fn bind(config: &Config) -> std::io::Result<Listener> {
        let inner = TcpListener::bind((config.bind.as_str(), config.port)).await?;
        Ok(Listener { inner })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Accepts connections until the task is dropped; each runs on its own task, so one bad
    /// client never stalls another.
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
            tokio::spawn(async move {
                if let Err(e) = handle(socket, peer).await {
                    debug!(%peer, error = %e, "connection ended with an I/O error");
                }
            });
        }
    }
}

async fn handle(mut socket: TcpStream, peer: SocketAddr) -> std::io::Result<()> {
    let mut buf = [0u8; 8];
    let mut have = 0;
    let verdict = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        loop {
            match check_protocol_header(&buf[..have]) {
                ProtocolHeader::Incomplete => {}
                verdict => return Ok(verdict),
            }
            let n = socket.read(&mut buf[have..]).await?;
            if n == 0 {
                return Ok(ProtocolHeader::Incomplete);
            }
            have += n;
        }
    })
    .await;
    match verdict {
        Err(_) => {
            info!(%peer, "closing connection: no protocol header within {HANDSHAKE_TIMEOUT:?}");
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(ProtocolHeader::Incomplete)) => debug!(%peer, "client closed before sending a protocol header"),
        Ok(Ok(ProtocolHeader::Refused)) => {
            info!(%peer, header = ?&buf[..have], "unsupported protocol header; answering with AMQP 0-9-1's");
            socket.write_all(PROTOCOL_HEADER).await?;
        }
        Ok(Ok(ProtocolHeader::Accepted)) => {
            warn!(%peer, "AMQP 0-9-1 client connected, but connection handling is not implemented yet");
        }
    }
    socket.shutdown().await
}

/// Binds and serves until the process is stopped.
pub async fn serve(config: Config) -> std::io::Result<()> {
    let listener = Listener::bind(&config).await?;
    info!(addr = %listener.local_addr()?, data_dir = %config.data_dir.display(), "warren listening for AMQP 0-9-1");
    listener.run().await
}
