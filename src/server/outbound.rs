//! A connection's outbound side: one buffer that channels and queues encode frames into, and a
//! writer task that drains it with one `write_all` per batch, never one syscall per frame.
//!
//! Back-pressure: when a client stops reading, what the connection holds for it — the buffer
//! plus the chunk the writer is still writing — passes [`HIGH_WATER`]; queues then treat that
//! connection's consumers as busy (and register to be woken), and the connection's own read loop
//! stops reading until the writer has drained below [`LOW_WATER`]. Memory per slow client is
//! therefore bounded by roughly one high-water mark plus one message. (The chunk in the writer's
//! hands counts: without it a stuck write of one high-water mark let the buffer fill another.)

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tracing::debug;

use crate::broker::connections::ConnectionStats;
use crate::broker::queue::Queue;
use crate::protocol::{encode_heartbeat, encode_method, Method};
use crate::server::buffers::BufferSize;
use crate::server::read_batch;
use crate::server::transport::BoxWrite;

pub const HIGH_WATER: usize = 1024 * 1024;
pub const LOW_WATER: usize = 256 * 1024;

/// A writer woken [`BUSY_WAKES`] times in a row, each within this of its previous write, is
/// busy: it yields once to gather more before writing.
const BUSY_GAP: Duration = Duration::from_micros(500);
const BUSY_WAKES: u32 = 3;
/// A writer whose last write was at least this large yields once before writing, whenever.
const GATHER_AFTER: usize = 2048;

pub struct Outbound {
    buf: Mutex<Buffer>,
    /// Bytes in `buf`, readable without the lock for the congestion check.
    pending: AtomicUsize,
    /// Bytes of the chunk the writer took out of `buf` and is still writing.
    in_flight: AtomicUsize,
    wake_writer: Notify,
    drained: Notify,
    closed: AtomicBool,
    /// Queues that found this connection congested and want a `dispatch` once it drains.
    waiting_queues: Mutex<Vec<Weak<Queue>>>,
    /// The store writer's thread sent and drained the buffer: the writer task runs the
    /// queues' dispatch (never the store writer's thread, see [`Outbound::send_from_store`]).
    drain_pending: AtomicBool,
    /// Negotiated heartbeat interval in milliseconds; 0 until tune-ok, and when turned off.
    heartbeat_ms: AtomicU64,
    /// A plain TCP socket the read loop may send on itself at the end of a batch (see
    /// [`Outbound::begin_batch`]), and where those bytes are counted.
    direct: OnceLock<(RawFd, Arc<ConnectionStats>)>,
}

/// The bytes waiting for the writer, and how large a buffer the connection's traffic needs.
#[derive(Default)]
struct Buffer {
    bytes: BytesMut,
    size: BufferSize,
    /// Bytes ever queued: whether anything was sent between two looks.
    total: u64,
    /// The socket is about to close: nobody but the writer sends any more (see
    /// [`Outbound::detach_direct`]).
    detached: bool,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            // No allocation until the first frame (see `buffers.rs`).
            buf: Mutex::default(),
            pending: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            closed: AtomicBool::new(false),
            waiting_queues: Mutex::new(Vec::new()),
            drain_pending: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            direct: OnceLock::new(),
        }
    }
}

impl Outbound {
    /// Encodes into the buffer with `f` and wakes the writer (or, during a read, leaves the
    /// frames for its end: see `read_batch.rs`).
    pub fn write<R>(self: &Arc<Self>, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        let r = self.encode(f);
        if !read_batch::defer(self) {
            self.wake();
        }
        r
    }

    /// [`Outbound::write`] from the store writer's thread (confirms): while it runs a batch's
    /// completions, the frames wait for the end of the batch, then go out with one `send` from
    /// that thread (or one wake-up of the writer), instead of a wake-up of the writer task, on
    /// a tokio thread, per batch and connection.
    pub fn write_completing<R>(self: &Arc<Self>, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        let r = self.encode(f);
        if !read_batch::defer_completing(self) && !read_batch::defer(self) {
            self.wake();
        }
        r
    }

    fn encode<R>(&self, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        {
            let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
            let Buffer { bytes, size, total, .. } = &mut *buf;
            // Only when there is no room at all (new, released, or split off full): the frames
            // that follow then fill one allocation of the traffic's size instead of growing
            // one from a few bytes.
            if bytes.capacity() == bytes.len() {
                bytes.reserve(size.want());
            }
            let before = bytes.len();
            let r = f(bytes);
            *total += bytes.len().saturating_sub(before) as u64;
            self.pending.store(bytes.len(), Ordering::Release);
            r
        }
    }

    /// Wakes the writer task (it sends whatever is buffered).
    pub(super) fn wake(&self) {
        self.wake_writer.notify_one();
    }

    /// Whether a wake-up is stored for the writer (consumed by this look).
    #[cfg(test)]
    pub(super) fn is_woken(&self) -> bool {
        let woken = self.wake_writer.notified();
        tokio::pin!(woken);
        woken.as_mut().enable()
    }

    pub(super) fn address(&self) -> usize {
        self as *const Outbound as usize
    }

    /// Lets the connection's read loop send on `fd` itself (plain TCP only; the read loop
    /// keeps the socket open for as long as it may).
    pub fn send_directly_on(&self, fd: RawFd, stats: Arc<ConnectionStats>) {
        let _ = self.direct.set((fd, stats));
    }

    /// The read loop starts handling what it read (see `read_batch.rs`). Until the guard
    /// drops, frames written from this thread wait; then each connection written for, and
    /// this one last (confirms, replies, deliveries its acks made room for), sends them with
    /// one `send` from the read loop if its writer is not busy, or wakes its writer.
    pub fn begin_batch(&self) -> Batch<'_> {
        read_batch::begin(self.address());
        Batch(self)
    }

    /// Returns the bytes ever queued (see [`Outbound::total_queued`]), read under the same lock.
    fn end_batch(&self) -> u64 {
        read_batch::end(|other| {
            other.send_or_wake(true);
        });
        self.send_or_wake(true)
    }

    /// [`Outbound::send_or_wake`] at the end of a store batch's completions, on the store
    /// writer's thread. A drain it makes does not run the waiting queues' dispatch there: that
    /// may page bodies in and wait for the store writer (itself), or take a queue's lock a
    /// thread waiting for the writer holds. The writer task does it.
    pub(super) fn send_from_store(&self) {
        self.send_or_wake(false);
    }

    /// The socket will be closed: from now on only the writer task sends. Called by the
    /// connection before it drops its socket, so that a `send` from another thread (the store
    /// writer's, see [`Outbound::write_completing`], or another connection's read loop, see
    /// `read_batch.rs`) never reaches a closed descriptor, or one the number was given to since.
    pub fn detach_direct(&self) {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).detached = true;
    }

    /// Sends what is buffered with one non-blocking `send` on the socket, unless the writer is
    /// writing (it comes back for the rest after its write, in order); wakes the writer for
    /// whatever is left. After a send that drained it, runs the waiting queues' dispatch if
    /// `dispatch`, or has the writer task run it. Returns the bytes ever queued, read under
    /// the same lock.
    fn send_or_wake(&self, dispatch: bool) -> u64 {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let total = buf.total;
        if buf.bytes.is_empty() || self.in_flight.load(Ordering::Acquire) > 0 {
            return total;
        }
        let mut sent = 0;
        if let Some((fd, stats)) = self.direct.get().filter(|_| !self.is_closed() && !buf.detached) {
            // SAFETY: a valid buffer; `fd` stays open until `detach_direct`, which waits for the
            // lock we hold.
            let n = unsafe {
                libc::send(*fd, buf.bytes.as_ptr().cast(), buf.bytes.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if n > 0 {
                sent = n as usize;
                buf.bytes.advance(sent);
                self.pending.store(buf.bytes.len(), Ordering::Release);
                stats.sent(sent);
            }
            // An error (a full socket, a reset) is the writer's to meet on its own write.
        }
        let mut wake = !buf.bytes.is_empty();
        drop(buf);
        if sent > 0 {
            self.batch_written(sent);
            wake |= self.after_drain(dispatch);
        }
        if wake {
            self.wake();
        }
        total
    }

    /// Bytes queued for the client since the connection began (grows with every frame).
    pub fn total_queued(&self) -> u64 {
        self.buf.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    pub fn send_method(self: &Arc<Self>, channel: u16, method: &Method) {
        self.write(|buf| encode_method(buf, channel, method));
    }

    /// Starts heartbeats once the interval is negotiated (the writer already runs by then: it
    /// sends `connection.start`).
    pub fn set_heartbeat(&self, interval: Duration) {
        self.heartbeat_ms.store(interval.as_millis() as u64, Ordering::Release);
        self.wake();
    }

    pub fn is_congested(&self) -> bool {
        self.held() > HIGH_WATER
    }

    /// Bytes the connection holds for its client: buffered, or being written.
    fn held(&self) -> usize {
        self.pending.load(Ordering::Acquire) + self.in_flight.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Asks the writer to flush what is buffered and stop.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
        self.drained.notify_waiters();
    }

    pub fn wake_when_drained(&self, queue: &Arc<Queue>) {
        let mut w = self.waiting_queues.lock().unwrap_or_else(|e| e.into_inner());
        if !w.iter().any(|q| q.as_ptr() == Arc::as_ptr(queue)) {
            w.push(Arc::downgrade(queue));
        }
    }

    /// Waits until the buffer is below the low-water mark (or the connection is closing).
    pub async fn wait_drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.held() <= LOW_WATER || self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// The writer task: drains the buffer to the socket; sends a heartbeat when it has not been
    /// woken for half the heartbeat interval (frames the read loop sent itself do not wake it,
    /// so a connection whose traffic is all replies gets a heartbeat now and then, which the
    /// protocol allows). Counts the bytes written in `stats`, once per batch.
    pub async fn run_writer(self: Arc<Self>, mut socket: BoxWrite, stats: Arc<ConnectionStats>) {
        let mut last_write = Instant::now();
        // Wake-ups in a row that came soon after the previous write.
        let mut busy = 0u32;
        let mut last_len = 0;
        loop {
            if self.drain_pending.swap(false, Ordering::AcqRel) {
                self.after_drain(true);
            }
            let chunk = {
                let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
                let chunk = buf.bytes.split();
                self.in_flight.store(chunk.len(), Ordering::Release);
                self.pending.store(0, Ordering::Release);
                chunk
            };
            if !chunk.is_empty() {
                let written = socket.write_all(&chunk).await;
                let len = chunk.len();
                drop(chunk);
                self.in_flight.store(0, Ordering::Release);
                if let Err(e) = written {
                    debug!(error = %e, "write failed; closing the connection's writer");
                    break;
                }
                stats.sent(len);
                self.batch_written(len);
                self.after_drain(true);
                last_write = Instant::now();
                last_len = len;
                continue;
            }
            if self.is_closed() {
                break;
            }
            let heartbeat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Acquire));
            if heartbeat.is_zero() {
                self.wake_writer.notified().await;
            } else if tokio::time::timeout(heartbeat / 2, self.wake_writer.notified()).await.is_err() {
                self.write(encode_heartbeat);
            }
            // Once woken in heavy traffic, let the tasks already ready (the publisher's read
            // loop that woke us, others' reads) run before taking the buffer: what they deliver
            // meanwhile goes out in the same write. With publishers that write one frame per
            // syscall, reads are small and frequent, and writing after each of them cost a send
            // (and a wake-up of the consumer) per read. The delay is one turn of the scheduler.
            // Not after a small write long past (a low steady rate, request and reply): there is
            // nothing to gather then, and the yield has a price of its own (tokio runs the
            // yielded task as a "searching" worker, which wakes the idle worker thread: a futex
            // round trip per message).
            busy = if last_write.elapsed() < BUSY_GAP { busy.saturating_add(1) } else { 0 };
            if busy >= BUSY_WAKES || last_len >= GATHER_AFTER {
                tokio::task::yield_now().await;
            }
        }
        self.closed.store(true, Ordering::Release);
        self.drained.notify_waiters();
        let _ = socket.shutdown().await;
    }

    /// Sizes the buffer to the batches written: nothing new in it and more room than the
    /// traffic needs, it is given back (an idle connection holds no outbound buffer once its
    /// last small batch is out).
    fn batch_written(&self, len: usize) {
        let mut buf = self.buf.lock().unwrap_or_else(|e| e.into_inner());
        let Buffer { bytes, size, .. } = &mut *buf;
        size.record(len, size.want());
        if len <= size.want() / 4 {
            // A small batch: whatever room is left is more than the traffic needs.
            if bytes.is_empty() {
                *bytes = BytesMut::new();
            }
        } else {
            size.release_if_oversized(bytes);
        }
    }

    /// Below the low-water mark: wakes the read loop if it waits, and runs the dispatch of the
    /// queues waiting for this connection, on this thread if `here`. Otherwise leaves that to
    /// the writer task and returns true: the writer must be woken.
    fn after_drain(&self, here: bool) -> bool {
        if self.held() > LOW_WATER {
            return false;
        }
        self.drained.notify_waiters();
        let mut waiting = self.waiting_queues.lock().unwrap_or_else(|e| e.into_inner());
        if waiting.is_empty() {
            return false;
        }
        if !here {
            self.drain_pending.store(true, Ordering::Release);
            return true;
        }
        let queues = std::mem::take(&mut *waiting);
        drop(waiting);
        for q in queues.iter().filter_map(Weak::upgrade) {
            q.dispatch_after_drain();
        }
        false
    }
}

/// The read loop's batch (see [`Outbound::begin_batch`]): ends with [`Batch::end`], or when
/// dropped on any other path.
pub struct Batch<'a>(&'a Outbound);

impl Batch<'_> {
    /// Ends the batch; returns the bytes ever queued for the client, which tell the read loop
    /// whether this read was answered.
    pub fn end(self) -> u64 {
        let total = self.0.end_batch();
        std::mem::forget(self);
        total
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The handling panicked: release the held writers, but send nothing and run no
            // queue from here (state may be half-changed; a second panic would abort).
            read_batch::end(|other| other.wake());
            self.0.wake();
            return;
        }
        self.0.end_batch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chunk_stuck_in_the_writer_counts_towards_congestion() {
        // A client that reads nothing: the pipe takes 64 KiB, then the writer's write blocks.
        let (_client, server) = tokio::io::duplex(64 * 1024);
        let out = Arc::new(Outbound::default());
        tokio::spawn(out.clone().run_writer(Box::new(server), Arc::default()));
        out.write(|buf| buf.extend_from_slice(&vec![0u8; HIGH_WATER + 1]));
        // Wait until the writer has taken it all out of the buffer (a condition, not a time).
        while out.pending.load(Ordering::Acquire) > 0 {
            tokio::task::yield_now().await;
        }
        assert!(out.is_congested(), "the stuck chunk is still the client's, memory held for it");
        out.close();
    }

    /// A socket pair: the server side's fd for `send_directly_on`, the client side to read.
    fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        (server, client)
    }

    #[test]
    fn a_batch_sends_its_own_frames_itself_when_it_ends() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (server, mut client) = tcp_pair();
        // No writer task at all: only the batch's own send can deliver these bytes.
        let out = Arc::new(Outbound::default());
        let stats = Arc::new(ConnectionStats::default());
        out.send_directly_on(server.as_raw_fd(), stats.clone());
        let batch = out.begin_batch();
        out.write(|buf| buf.extend_from_slice(b"confirm "));
        out.write(|buf| buf.extend_from_slice(b"reply"));
        assert_eq!(out.pending.load(Ordering::Acquire), 13, "held until the batch ends");
        assert_eq!(batch.end(), 13, "the bytes ever queued, to tell whether the read was answered");
        let mut got = [0u8; 13];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"confirm reply");
        assert_eq!(out.pending.load(Ordering::Acquire), 0);
        assert_eq!(stats.snapshot().send_oct, 13, "counted as sent");
    }

    #[test]
    fn a_batch_sends_what_it_wrote_for_other_connections_when_it_ends() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (server, mut client) = tcp_pair();
        // A consumer's connection with no writer task: only the reading connection's batch
        // can deliver these bytes.
        let consumer = Arc::new(Outbound::default());
        consumer.send_directly_on(server.as_raw_fd(), Arc::default());
        let publisher = Arc::new(Outbound::default());
        let batch = publisher.begin_batch();
        consumer.write(|buf| buf.extend_from_slice(b"deliver 1 "));
        consumer.write(|buf| buf.extend_from_slice(b"deliver 2"));
        assert_eq!(consumer.pending.load(Ordering::Acquire), 19, "held until the read ends");
        batch.end();
        let mut got = [0u8; 19];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"deliver 1 deliver 2");
        assert!(!consumer.is_woken(), "its writer was not woken for them");
    }

    #[test]
    fn a_batch_leaves_its_frames_to_a_writer_that_is_writing() {
        use std::os::fd::AsRawFd;
        let (server, _client) = tcp_pair();
        let out = Arc::new(Outbound::default());
        out.send_directly_on(server.as_raw_fd(), Arc::default());
        // The writer holds an earlier chunk: sending now would put these bytes before it.
        out.in_flight.store(100, Ordering::Release);
        {
            let _batch = out.begin_batch();
            out.write(|buf| buf.extend_from_slice(b"later"));
        }
        assert_eq!(out.pending.load(Ordering::Acquire), 5, "still the writer's to send, in order");
    }

    #[test]
    fn a_store_batchs_confirms_leave_together_from_its_thread_until_the_socket_is_detached() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (server, mut client) = tcp_pair();
        // No writer task: only the send at the end of the completions can deliver the bytes.
        let out = Arc::new(Outbound::default());
        out.send_directly_on(server.as_raw_fd(), Arc::default());
        read_batch::begin_completions();
        out.write_completing(|buf| buf.extend_from_slice(b"ack 1 "));
        out.write_completing(|buf| buf.extend_from_slice(b"ack 2"));
        assert_eq!(out.pending.load(Ordering::Acquire), 11, "held until the completions end");
        read_batch::end_completions();
        let mut got = [0u8; 11];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ack 1 ack 2");
        // Outside a store batch, and once the connection detached its socket, the writer task
        // sends.
        out.detach_direct();
        read_batch::begin_completions();
        out.write_completing(|buf| buf.extend_from_slice(b"ack 3"));
        read_batch::end_completions();
        assert_eq!(out.pending.load(Ordering::Acquire), 5, "left to the writer task");
        assert!(out.is_woken(), "which was woken");
    }

    #[test]
    fn a_drain_from_the_store_writers_thread_leaves_the_queues_dispatch_to_the_writer_task() {
        use std::os::fd::AsRawFd;
        let (server, _client) = tcp_pair();
        let out = Arc::new(Outbound::default());
        out.send_directly_on(server.as_raw_fd(), Arc::default());
        out.waiting_queues.lock().unwrap().push(Weak::new());
        read_batch::begin_completions();
        out.write_completing(|buf| buf.extend_from_slice(b"ack"));
        read_batch::end_completions();
        assert_eq!(out.pending.load(Ordering::Acquire), 0, "sent");
        assert_eq!(out.waiting_queues.lock().unwrap().len(), 1, "no queue run on this thread");
        assert!(out.drain_pending.load(Ordering::Acquire));
        assert!(out.is_woken(), "the writer task is woken to run them");
    }
}
