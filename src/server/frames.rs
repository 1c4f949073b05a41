//! Whole frames off a connection's read half, and the ways reading a connection can fail.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;

use crate::broker::connections::ConnectionStats;
use crate::protocol::{decode_frame, AmqpError, Frame};
use crate::server::buffers::BufferSize;
use crate::server::coalesce::{self, ReadCoalescing};
use crate::server::transport::BoxRead;

/// Reads whole frames off the socket.
pub(super) struct FrameReader {
    socket: BoxRead,
    pub(super) buf: BytesMut,
    pub(super) frame_max: u32,
    pub(super) last_read: Instant,
    /// How much room a read gets: small until the client sends more (see `buffers.rs`).
    size: BufferSize,
    /// Whether reads wait for a few frames (see `coalesce.rs`).
    coalescing: ReadCoalescing,
    /// Counts the bytes read (once per read).
    stats: Arc<ConnectionStats>,
}

pub(super) enum Read {
    Frame(Frame),
    Eof,
}

impl FrameReader {
    /// `fd`: the TCP socket under `socket`, if it is one.
    pub(super) fn new(socket: BoxRead, fd: Option<RawFd>, frame_max: u32, stats: Arc<ConnectionStats>) -> FrameReader {
        FrameReader {
            socket,
            buf: BytesMut::new(),
            frame_max,
            last_read: Instant::now(),
            size: BufferSize::default(),
            coalescing: ReadCoalescing::new(fd),
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
        let n = if self.coalescing.is_raised() {
            match tokio::time::timeout(coalesce::MAX_WAIT, self.socket.read_buf(&mut self.buf)).await {
                Ok(read) => read,
                Err(_) => {
                    self.coalescing.timed_out();
                    self.socket.read_buf(&mut self.buf).await
                }
            }
        } else {
            self.socket.read_buf(&mut self.buf).await
        }
        .map_err(ConnError::Io)?;
        self.coalescing.record(n);
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

    /// The frames last read made the broker send something to the client (see `coalesce.rs`).
    pub(super) fn answered(&mut self) {
        self.coalescing.answered();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_read_waiting_for_the_raised_mark_still_gets_what_is_below_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let fd = server.as_raw_fd();
        let mut reader = FrameReader::new(Box::new(server), Some(fd), 0, Arc::default());
        // Nothing to read yet: the reader learns so (a fresh socket is tried once at first).
        assert!(tokio::time::timeout(Duration::from_millis(20), reader.fill()).await.is_err());
        // A fast run of small reads raises the socket's low-water mark...
        for _ in 0..64 {
            reader.coalescing.record(40);
        }
        assert!(reader.coalescing.is_raised());
        // ...and then the client sends one heartbeat frame (8 bytes, far below it) and stops.
        client.write_all(&[8, 0, 0, 0, 0, 0, 0, 0xce]).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), reader.fill()).await;
        assert!(matches!(read, Ok(Ok(true))), "the frame below the mark was never read");
        assert_eq!(reader.buf.len(), 8);
        assert!(!reader.coalescing.is_raised(), "lowered after waiting");
    }
}
