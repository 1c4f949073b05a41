//! Stream consumers: cursors over the log. Each reads from its own offset — from the cache of
//! recent messages, or in batches from disk — and is offered messages while its channel gives
//! it credit; filters drop what a consumer did not ask for before it is sent.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use super::args::{ConsumeSpec, Filter, StartAt};
use super::{filter_value, Stream, StreamState};
use crate::broker::message::Message;
use crate::broker::queue::{ConsumeRefused, Consumer, ConsumerSink, Offer, Queue, QueueArgs, QueuedMessage};
use crate::broker::record;
use crate::protocol::ShortStr;
use crate::store::writer::Op;

/// Entries read from disk at once for a consumer behind the cache, and their most bytes (at
/// least one entry is read, however large).
const READ_AHEAD: usize = 128;
const READ_AHEAD_BYTES: usize = 1024 * 1024;
/// Messages a filter may pass over for one consumer in one go.
const SCAN_BUDGET: usize = 4096;

pub(super) struct StreamConsumer {
    pub(super) consumer: Arc<Consumer>,
    /// The next offset to offer.
    next: u64,
    filter: Option<Filter>,
    /// Offsets acked are kept under the consumer tag (see [`ConsumeSpec::track`]).
    track: bool,
    /// Messages read from disk, from `next` on.
    read_ahead: VecDeque<(u64, Arc<Message>)>,
}

/// How far a consumer is behind the stream's tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerLag {
    pub tag: ShortStr,
    /// The next offset it will be offered.
    pub next_offset: u64,
    /// Committed messages it has not been offered yet.
    pub lag: u64,
}

impl StreamConsumer {
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    pub(super) fn lag(&self, committed: u64) -> ConsumerLag {
        ConsumerLag { tag: self.consumer.tag.clone(), next_offset: self.next, lag: committed.saturating_sub(self.next) }
    }
}

impl Stream {
    /// Adds a consumer starting where `spec` says (a tracked consumer with a stored offset
    /// resumes after it: `x-stream-offset` then only says where a new one starts, as Kafka's
    /// `auto.offset.reset` does). `on_added` runs before the first delivery.
    pub fn add_consumer(
        &self,
        queue: &Arc<Queue>,
        consumer: Arc<Consumer>,
        spec: ConsumeSpec,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeRefused> {
        let args = queue.args();
        let mut st = self.lock();
        if queue.is_deleted() {
            return Err(ConsumeRefused::Deleted);
        }
        if st.consumers.iter().any(|c| c.consumer.exclusive) || (consumer.exclusive && !st.consumers.is_empty()) {
            return Err(ConsumeRefused::ExclusiveInUse);
        }
        let resumed = spec.track.then(|| st.tracked.get(consumer.tag.as_bytes()).map(|o| o + 1)).flatten();
        let next = match resumed {
            Some(after) => after.clamp(st.log.first, st.log.next),
            None => self.resolve(&st, spec.start.unwrap_or(StartAt::Next)),
        };
        tracing::debug!(stream = self.id, consumer = %consumer.tag, next, "stream consumer attached");
        st.consumers.push(StreamConsumer {
            consumer,
            next,
            filter: spec.filter,
            track: spec.track,
            read_ahead: VecDeque::new(),
        });
        on_added();
        self.deliver(queue, &args, &mut st, true);
        Ok(())
    }

    pub fn remove_consumer(&self, tag: &ShortStr, sink: &Arc<dyn ConsumerSink>) {
        self.lock().consumers.retain(|c| !(c.consumer.tag == *tag && Arc::ptr_eq(&c.consumer.sink, sink)));
    }

    /// Offers messages to every consumer with credit (acks, a raised prefetch, a drained
    /// connection call this).
    pub fn dispatch(&self, queue: &Arc<Queue>) {
        let args = queue.args();
        let mut st = self.lock();
        self.deliver(queue, &args, &mut st, true);
    }

    /// A consumer acked up to `offset`: a tracked one keeps it, in memory and in the store.
    pub fn acked(&self, tag: &ShortStr, offset: u64) {
        let mut st = self.lock();
        if !st.consumers.iter().any(|c| c.track && c.consumer.tag == *tag) {
            return;
        }
        let name = Bytes::copy_from_slice(tag.as_bytes());
        let kept = st.tracked.entry(name.clone()).or_insert(offset);
        *kept = (*kept).max(offset);
        let offset = *kept;
        self.handle.writer.submit(Op::StreamTrack { stream: self.id, name, offset });
    }

    /// The first offset a consumer starting at `start` reads.
    fn resolve(&self, st: &StreamState, start: StartAt) -> u64 {
        let log = &st.log;
        match start {
            StartAt::First => log.first,
            StartAt::Next => log.next,
            StartAt::Last => log.committed.checked_sub(1).filter(|&o| o >= log.first).unwrap_or(log.next),
            StartAt::Offset(n) => u64::try_from(n).unwrap_or(0).clamp(log.first, log.next),
            StartAt::Time(ts) => match log.search_range(ts) {
                None => log.first,
                Some((from, to)) => self.first_at_or_after(st, ts, from, to),
            },
        }
    }

    /// Binary search in `[from, to)` for the first message that arrived at or after `ts`
    /// (arrival times only grow along the log); `to` if none did.
    fn first_at_or_after(&self, st: &StreamState, ts: u64, mut from: u64, mut to: u64) -> u64 {
        while from < to {
            let mid = from + (to - from) / 2;
            let at = match st.tail.get(mid) {
                Some(m) => Some(m.timestamp_ms),
                None => match self.handle.store.stream_entry(self.id, mid) {
                    Ok(e) => e.and_then(|e| record::timestamp_of(&e.record)),
                    Err(e) => {
                        tracing::warn!(stream = self.id, error = %e, "stream read failed while seeking a time");
                        None
                    }
                },
            };
            // A missing entry (cut by retention meanwhile) counts as older.
            if at.is_some_and(|t| t >= ts) {
                to = mid;
            } else {
                from = mid + 1;
            }
        }
        from
    }

    /// Offers each consumer what it has not seen, up to the committed offset, until its
    /// credit runs out. `from_disk`: consumers behind the cache may read the store now.
    pub(super) fn deliver(&self, queue: &Arc<Queue>, args: &QueueArgs, st: &mut StreamState, from_disk: bool) {
        let StreamState { consumers, log, tail, delivered, recent, .. } = st;
        let mut unfinished = false;
        for c in consumers.iter_mut() {
            let mut skipped = 0;
            loop {
                if c.next < log.first {
                    c.next = log.first; // retention removed what it had not read
                }
                if c.next >= log.committed {
                    break;
                }
                let (offset, msg) = match tail.get(c.next) {
                    Some(m) => (c.next, m.clone()),
                    None if !from_disk => break,
                    None => match self.read_from_disk(c, recent, tail.start) {
                        Some(found) => found,
                        None => break,
                    },
                };
                if let Some(f) = &c.filter {
                    if !f.admits(filter_value(&msg)) {
                        c.next = offset + 1;
                        skipped += 1;
                        if skipped == SCAN_BUDGET {
                            unfinished = true; // go on later, without holding up the stream
                            break;
                        }
                        continue;
                    }
                }
                let m = QueuedMessage {
                    seq: offset,
                    msg,
                    redelivered: false,
                    persisted: false,
                    expires_at: None,
                    deliveries: 0,
                };
                match c.consumer.sink.offer(&c.consumer, queue, args, &m) {
                    Offer::Taken => {
                        c.next = offset + 1;
                        *delivered += 1;
                    }
                    // Congested: the channel asked to be woken when its connection drains.
                    Offer::Busy | Offer::Congested => break,
                }
            }
        }
        if unfinished {
            // A selective filter over a long log: the scan goes on in its own turn, so that
            // publishers and other consumers get the stream's lock in between.
            let queue = queue.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => drop(rt.spawn_blocking(move || queue.dispatch())),
                // The store writer's thread: never wait here (this thread holds the lock).
                Err(_) => drop(std::thread::spawn(move || queue.dispatch())),
            }
        }
    }

    /// The message at (or first after) the consumer's position from disk, through its
    /// read-ahead batch. `None` when the store has nothing there before the cache starts.
    fn read_from_disk(
        &self,
        c: &mut StreamConsumer,
        recent: &mut Vec<(u64, Arc<Message>)>,
        cache_start: u64,
    ) -> Option<(u64, Arc<Message>)> {
        while c.read_ahead.front().is_some_and(|(o, _)| *o < c.next) {
            c.read_ahead.pop_front();
        }
        let shared =
            recent.first().is_some_and(|(o, _)| *o <= c.next) && recent.last().is_some_and(|(o, _)| *o >= c.next);
        if c.read_ahead.is_empty() && shared {
            // Consumers reading the same stretch of the log share one read of it.
            let at = recent.partition_point(|(o, _)| *o < c.next);
            c.read_ahead.extend(recent[at..].iter().cloned());
        } else if c.read_ahead.is_empty() {
            let entries = match self.handle.store.stream_read(self.id, c.next, READ_AHEAD, READ_AHEAD_BYTES) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::error!(stream = self.id, error = %e, "stream read failed");
                    return None;
                }
            };
            recent.clear();
            for e in entries.into_iter().take_while(|e| e.offset < cache_start) {
                match record::decode(&e.record) {
                    Some(m) => recent.push((e.offset, Arc::new(m))),
                    None => tracing::error!(stream = self.id, offset = e.offset, "unreadable stream entry skipped"),
                }
            }
            c.read_ahead.extend(recent.iter().cloned());
        }
        // Left in the batch until taken: an offer refused for want of credit is offered again.
        match c.read_ahead.front() {
            Some((offset, msg)) => Some((*offset, msg.clone())),
            None => {
                // A gap up to the cache (entries lost to a failed write): skip it.
                c.next = c.next.max(cache_start);
                None
            }
        }
    }
}
