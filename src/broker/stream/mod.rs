//! Streams (`x-queue-type: stream`): append-only logs that consumers read by offset, each at its
//! own pace, without taking messages away.
//!
//! A stream is a [`Queue`] whose messages go here instead of its ready list, so the publish
//! path, bindings, permissions and the management API treat it as any queue. Every message is
//! appended to the store (`store::streams`) with the next offset, stamped into its headers
//! (`x-stream-offset`), and confirmed once synced. Consumers are cursors: each reads from its
//! own offset, from a small cache of the newest messages or from disk, with its prefetch as
//! credit; an ack returns credit and removes nothing. Only synced offsets are delivered, so a
//! crash never hands an offset a consumer saw to another message.
//!
//! Memory does not grow with the log: the stream keeps its segment list, the cache of recent
//! messages (a few MiB) and each consumer's read-ahead (a bounded batch).

mod args;
mod consumers;
pub mod errors;
mod log;

pub use args::{
    check_declare, check_typed, consume_spec, parse_age, ConsumeSpec, StartAt, StreamSettings, DEFAULT_SEGMENT_SIZE,
};
pub use consumers::ConsumerLag;
pub use log::Retention;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use bytes::Bytes;

use super::message::Message;
use super::publish::PublishOutcome;
use super::queue::{Enqueued, Queue};
use super::record;
use super::timer::now_ms;
use crate::protocol::{FieldValue, ShortStr};
use crate::store::writer::{Op, StreamCommit};
use crate::store::StoreHandle;
use consumers::StreamConsumer;
use log::LogIndex;

/// Committed messages the cache may keep for consumers at the tail (which read from it without
/// touching the store) beyond those still being written.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// The newest messages, by offset: everything not yet committed, and recent ones after that.
#[derive(Default)]
struct TailCache {
    start: u64,
    messages: VecDeque<Arc<Message>>,
    bytes: u64,
}

impl TailCache {
    fn get(&self, offset: u64) -> Option<&Arc<Message>> {
        offset.checked_sub(self.start).and_then(|i| self.messages.get(i as usize))
    }

    fn push(&mut self, offset: u64, msg: Arc<Message>) {
        if offset != self.start + self.messages.len() as u64 {
            self.reset(offset);
        }
        self.bytes += msg.body.len() as u64;
        self.messages.push_back(msg);
    }

    /// Forgets messages below `needed`, and committed ones beyond the budget.
    fn trim(&mut self, needed: u64, committed: u64) {
        while self.start < needed || (self.bytes > CACHE_BYTES && self.start < committed) {
            let Some(m) = self.messages.pop_front() else { break };
            self.bytes -= m.body.len() as u64;
            self.start += 1;
        }
    }

    fn reset(&mut self, start: u64) {
        *self = TailCache { start, ..TailCache::default() };
    }
}

struct StreamState {
    log: LogIndex,
    retention: Retention,
    tail: TailCache,
    consumers: Vec<StreamConsumer>,
    /// Server-side offset tracking: consumer name → the offset it acked last.
    tracked: HashMap<Bytes, u64>,
    /// Appends since start-up (the management API's publish count).
    published: u64,
    delivered: u64,
    /// Deleted: nothing is appended any more.
    closed: bool,
    /// The last batch any consumer read from disk: others reading the same stretch take it
    /// from here instead of reading it again.
    recent: Vec<(u64, Arc<Message>)>,
}

pub struct Stream {
    /// The stream's key prefix in the store (its queue id).
    id: u64,
    handle: Arc<StoreHandle>,
    state: Mutex<StreamState>,
    /// Tells the stream when the writer synced its appends (made on the first append, when
    /// the stream's queue is known).
    notifier: OnceLock<Arc<dyn StreamCommit>>,
}

/// A stream's figures for the management API and Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub first_offset: u64,
    /// The newest offset (`None`: nothing was ever written).
    pub last_offset: Option<u64>,
    pub committed_offset: Option<u64>,
    pub messages: u64,
    pub bytes: u64,
    pub segments: usize,
    pub published: u64,
    pub delivered: u64,
    pub consumers: Vec<ConsumerLag>,
}

/// Hears from the store writer that appends are durable; holds the queue weakly so that a
/// deleted stream is not kept alive by writes in flight.
struct Committed(Weak<Queue>);

impl StreamCommit for Committed {
    fn committed(&self, up_to: u64, result: Result<(), String>) {
        if let Some(queue) = self.0.upgrade() {
            if let Some(stream) = queue.stream() {
                stream.committed(&queue, up_to, result);
            }
        }
    }
}

impl Stream {
    /// A stream over the store's log `id`, picking up what an earlier run left there.
    pub fn open(id: u64, handle: Arc<StoreHandle>, retention: Retention) -> Stream {
        let mut log = LogIndex::default();
        let mut tracked = HashMap::new();
        match handle.store.stream_recovery(id) {
            Ok(r) => {
                log.segments = r.segments.into_iter().collect();
                if let Some(last) = &r.last {
                    log.next = last.offset + 1;
                    log.bytes = last.bytes_before + last.record.len() as u64;
                    log.last_ts = record::timestamp_of(&last.record).unwrap_or(0);
                }
                log.first = r.first.map_or(log.next, |e| e.offset);
                log.next = log.next.max(log.first);
                log.committed = log.next;
                tracked = r.tracked.into_iter().collect();
            }
            Err(e) => tracing::error!(stream = id, error = %e, "could not read the stream's log; it starts empty"),
        }
        let tail = TailCache { start: log.next, ..TailCache::default() };
        let state = StreamState {
            log,
            retention,
            tail,
            consumers: Vec::new(),
            tracked,
            published: 0,
            delivered: 0,
            closed: false,
            recent: Vec::new(),
        };
        Stream { id, handle, state: Mutex::new(state), notifier: OnceLock::new() }
    }

    fn lock(&self) -> MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a message; its confirm (`outcome`) waits for the sync.
    pub fn append(&self, queue: &Arc<Queue>, msg: &Message, outcome: Option<&Arc<PublishOutcome>>) -> Enqueued {
        let notifier = self.notifier.get_or_init(|| Arc::new(Committed(Arc::downgrade(queue)))).clone();
        let mut st = self.lock();
        if st.closed {
            return Enqueued::Deleted;
        }
        let offset = st.log.next;
        let stamped = Arc::new(with_offset(msg, offset));
        let bytes_before = st.log.bytes;
        let value = record::encode_after(&bytes_before.to_be_bytes(), &stamped);
        let segment_size = st.retention.segment_size;
        let (offset, rolled) = st.log.append(value.len() as u64 - 8, msg.timestamp_ms, segment_size);
        let writer = &self.handle.writer;
        for record in [rolled.sealed, rolled.opened].into_iter().flatten() {
            writer.submit(Op::StreamSegment { stream: self.id, record });
        }
        let done = outcome.map(|o| o.completion());
        writer.submit(Op::StreamAppend { stream: self.id, offset, value, done, commit: Some(notifier) });
        st.tail.push(offset, stamped);
        st.published += 1;
        if rolled.opened.is_some() {
            self.apply_retention(&mut st);
        }
        Enqueued::Queued
    }

    /// Cuts what retention no longer keeps, on disk and for consumers reading there.
    fn apply_retention(&self, st: &mut StreamState) {
        let retention = st.retention;
        if let Some(below) = st.log.retain(&retention, now_ms()) {
            self.handle.writer.submit(Op::StreamTruncate { stream: self.id, below });
            tracing::debug!(stream = self.id, first = below, "stream retention removed old segments");
        }
    }

    /// New retention settings (a policy changed); applied at once.
    pub fn set_retention(&self, max_bytes: Option<u64>, max_age_ms: Option<u64>) {
        let mut st = self.lock();
        st.retention.max_bytes = max_bytes;
        st.retention.max_age_ms = max_age_ms;
        self.apply_retention(&mut st);
    }

    /// The writer synced appends up to `up_to`: they may be delivered now.
    fn committed(&self, queue: &Arc<Queue>, up_to: u64, result: Result<(), String>) {
        let args = queue.args();
        let mut st = self.lock();
        if let Err(e) = result {
            // The failed entries are not on disk; later reads must not find them in memory.
            tracing::error!(stream = self.id, error = %e, "stream append failed; its publishes are nacked");
            let next = st.log.next;
            st.tail.reset(next);
        }
        st.log.committed = st.log.committed.max(up_to + 1);
        // Only consumers reading from memory are served on the writer's thread; those behind
        // it read from disk when their own acks ask for more.
        self.deliver(queue, &args, &mut st, false);
        // Committed messages stay cached only while a consumer at the tail still needs them.
        let StreamState { tail, consumers, log, .. } = &mut *st;
        let needed = consumers.iter().map(|c| c.next()).filter(|&n| n >= tail.start).min().unwrap_or(log.committed);
        tail.trim(needed.min(log.committed), log.committed);
    }

    pub fn message_count(&self) -> u64 {
        self.lock().log.message_count()
    }

    pub fn consumer_count(&self) -> usize {
        self.lock().consumers.len()
    }

    pub fn info(&self) -> StreamInfo {
        let st = self.lock();
        let log = &st.log;
        StreamInfo {
            first_offset: log.first,
            last_offset: log.next.checked_sub(1),
            committed_offset: log.committed.checked_sub(1),
            messages: log.message_count(),
            bytes: log.retained_bytes(),
            segments: log.segments.len(),
            published: st.published,
            delivered: st.delivered,
            consumers: st.consumers.iter().map(|c| c.lag(log.committed)).collect(),
        }
    }

    /// Up to `count` committed messages from stream offset `from` on (the management API's
    /// look at a stream; nothing is delivered or counted).
    pub fn read(&self, from: u64, count: usize) -> Vec<Arc<Message>> {
        let (first, committed) = {
            let st = self.lock();
            (st.log.first, st.log.committed)
        };
        let from = from.max(first);
        let count = count.min(committed.saturating_sub(from) as usize);
        match self.handle.store.stream_read(self.id, from, count, usize::MAX) {
            Ok(entries) => entries.iter().filter_map(|e| record::decode(&e.record)).map(Arc::new).collect(),
            Err(e) => {
                tracing::warn!(stream = self.id, error = %e, "stream read for the management API failed");
                Vec::new()
            }
        }
    }

    /// Its consumers, for the management API.
    pub fn consumers(&self) -> Vec<Arc<super::queue::Consumer>> {
        self.lock().consumers.iter().map(|c| c.consumer.clone()).collect()
    }

    /// Bytes the stream takes on disk (RocksDB's estimate).
    pub fn disk_size(&self) -> u64 {
        self.handle.store.stream_disk_size(self.id)
    }

    /// The offset a tracked consumer acked last.
    pub fn tracked_offset(&self, name: &[u8]) -> Option<u64> {
        self.lock().tracked.get(name).copied()
    }

    /// The stream is being deleted: its consumers are told (outside the lock).
    pub fn close(&self) -> Vec<Arc<super::queue::Consumer>> {
        let mut st = self.lock();
        st.closed = true;
        let next = st.log.next;
        st.tail.reset(next);
        std::mem::take(&mut st.consumers).into_iter().map(|c| c.consumer).collect()
    }
}

/// The message as the stream keeps it: its offset in the `x-stream-offset` header (a signed
/// 64-bit integer, as RabbitMQ sends it), added to the headers it has.
fn with_offset(msg: &Message, offset: u64) -> Message {
    let mut stamped = msg.clone();
    let headers = stamped.properties.headers.get_or_insert_with(Default::default);
    headers.insert(ShortStr::from_static("x-stream-offset"), FieldValue::I64(offset as i64));
    stamped
}

/// A message's `x-stream-filter-value`, if it has one.
fn filter_value(msg: &Message) -> Option<&[u8]> {
    msg.headers()?.get("x-stream-filter-value")?.as_bytes()
}
