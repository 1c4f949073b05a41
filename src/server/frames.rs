//! Whole frames off a connection's read half, and the ways reading a connection can fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::broker::connections::ConnectionStats;
use crate::protocol::{decode_frame, AmqpError, Frame};
use crate::server::buffers::BufferSize;
use crate::server::transport::BoxRead;

/// Reads whole frames off the socket.
pub(super) struct FrameReader {
    socket: BoxRead,
    pub(super) buf: BytesMut,
    pub(super) frame_max: u32,
    pub(super) last_read: Instant,
    /// How much room a read gets: small until the client sends more (see `buffers.rs`).
    size: BufferSize,
    /// Counts the bytes read (once per read).
    stats: Arc<ConnectionStats>,
}

pub(super) enum Read {
    Frame(Frame),
    Eof,
}

impl FrameReader {
    pub(super) fn new(socket: BoxRead, frame_max: u32, stats: Arc<ConnectionStats>) -> FrameReader {
        FrameReader {
            socket,
            buf: BytesMut::new(),
            frame_max,
            last_read: Instant::now(),
            size: BufferSize::default(),
            stats,
        }
    }

    pub(super) async fn next(&mut self) -> Result<Read, ConnError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, self.frame_max)? {
                return Ok(Read::Frame(frame));
            }
            if !self.fill().await? {
                return Ok(Read::Eof);
            }
        }
    }

    /// Reads more bytes; false at end of stream.
    pub(super) async fn fill(&mut self) -> Result<bool, ConnError> {
        self.size.reserve(&mut self.buf);
        let room = self.buf.capacity() - self.buf.len();
        let n = self.socket.read_buf(&mut self.buf).await.map_err(ConnError::Io)?;
        self.size.record(n, room);
        self.last_read = Instant::now();
        self.stats.received(n);
        Ok(n > 0)
    }

    /// The connection has been quiet for a while (called at its heartbeat check): an empty
    /// read buffer is given back, whatever size the traffic before needed.
    pub(super) fn quiet(&mut self) {
        if self.buf.is_empty() {
            self.size.reset();
            self.size.release_if_oversized(&mut self.buf);
        }
    }

    /// Once our last frame is out and our half of the socket shut (FIN sent): reads and drops
    /// whatever the client still sends, until it closes its side or [`LINGER`] passes. A socket
    /// closed with unread input goes out with RST instead of FIN, and a RST can destroy the
    /// `close-ok` still in flight, so the client reads a reset instead of its answer.
    pub(super) async fn drain(&mut self) {
        let _ = tokio::time::timeout(LINGER, async {
            loop {
                self.buf.clear();
                if !matches!(self.fill().await, Ok(true)) {
                    return;
                }
            }
        })
        .await;
    }
}

/// How long a closed connection keeps reading what its client still sends (see
/// [`FrameReader::drain`]).
pub(super) const LINGER: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) enum ConnError {
    Io(std::io::Error),
    Amqp(AmqpError),
    /// The peer went away or broke the handshake in a way that deserves no reply.
    Gone(&'static str),
}

impl From<AmqpError> for ConnError {
    fn from(e: AmqpError) -> Self {
        ConnError::Amqp(e)
    }
}
