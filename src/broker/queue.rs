//! Queues: ordered messages, consumers with credit, and the unacked count.
//!
//! The publishing connection appends under the queue's own short lock and, in the same critical
//! section, hands messages to consumers that have credit (their channel encodes the delivery
//! straight into its connection's outbound buffer). No task hop per message. See LOCKS.md for
//! what may be locked while this lock is held.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::message::Message;
use crate::protocol::{FieldTable, ShortStr};
use crate::store::writer::{Completion, Op};
use crate::store::Durable;

/// A message in a queue; `seq` is its place, kept when it is requeued.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub seq: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// Written to the store (persistent message in a durable queue): its ack deletes it there.
    pub persisted: bool,
}

/// A queue's link to the store: its id (key prefix) and the writer. Durable queues persist
/// their persistent messages through it; every queue pages backlogs out through it.
pub struct QueueStore {
    pub id: u64,
    pub durable: Arc<Durable>,
}

/// Bodies read back from the store at a time when the head of a queue reaches paged messages.
const PAGE_IN_BATCH: usize = 256;

/// One entry of the ready list: a message in memory, or only its place, its body being in the
/// store until the head of the queue comes near (memory stays bounded under a backlog).
#[derive(Debug)]
enum Ready {
    Resident(QueuedMessage),
    Paged { seq: u64, redelivered: bool, persisted: bool },
}

impl Ready {
    fn seq(&self) -> u64 {
        match self {
            Ready::Resident(m) => m.seq,
            Ready::Paged { seq, .. } => *seq,
        }
    }
}

/// What a consumer's channel said to one offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Sent; the channel now tracks it (or it was no-ack).
    Taken,
    /// No credit (prefetch reached, or the client is not reading); try other consumers.
    Busy,
}

/// The channel side of a consumer: implemented by the server's channel.
pub trait ConsumerSink: Send + Sync {
    fn offer(&self, consumer: &Consumer, queue: &Arc<Queue>, message: &QueuedMessage) -> Offer;
    /// The queue went away (deleted): tell the client with `basic.cancel` if it can take it.
    fn cancelled_by_server(&self, consumer: &Consumer);
    /// Direct reply-to: deliver a reply to the consumer of `amq.rabbitmq.reply-to` (no queue,
    /// no ack). False if that channel is gone.
    fn deliver_reply(&self, consumer: &Consumer, message: &Arc<Message>) -> bool;
}

pub struct Consumer {
    pub tag: ShortStr,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i32,
    pub arguments: FieldTable,
    pub sink: Arc<dyn ConsumerSink>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("tag", &self.tag).field("priority", &self.priority).finish()
    }
}

pub struct Queue {
    pub name: ShortStr,
    pub vhost: ShortStr,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    deleted: AtomicBool,
    state: Mutex<QueueState>,
    store: Option<QueueStore>,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Ready>,
    /// How many entries of `ready` hold their body.
    resident: usize,
    next_seq: u64,
    /// Sorted by priority, highest first; equal priorities keep arrival order.
    consumers: Vec<Arc<Consumer>>,
    round_robin: usize,
    ever_consumed: bool,
}

/// Why adding a consumer was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeRefused {
    ExclusiveInUse,
    Deleted,
}

impl Queue {
    pub fn new(
        name: ShortStr,
        vhost: ShortStr,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Queue {
        Queue {
            name,
            vhost,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            deleted: AtomicBool::new(false),
            state: Mutex::new(QueueState::default()),
            store: None,
        }
    }

    /// Makes persistent messages published to this queue durable in `store`.
    pub fn with_store(mut self, store: QueueStore) -> Queue {
        self.store = Some(store);
        self
    }

    pub fn store_id(&self) -> Option<u64> {
        self.store.as_ref().map(|s| s.id)
    }

    /// Whether a message published now would be written to disk.
    pub fn persists(&self, msg: &Message) -> bool {
        self.store.is_some()
            && self.durable
            && self.exclusive_owner.is_none()
            && msg.properties.delivery_mode == Some(2)
    }

    /// Puts back messages recovered from the store, in order: with their body, or (beyond the
    /// memory window) as a place whose body stays on disk.
    pub fn recover(&self, messages: impl IntoIterator<Item = (u64, Option<Message>, bool)>) {
        let mut st = self.lock();
        for (seq, msg, delivered) in messages {
            st.next_seq = st.next_seq.max(seq + 1);
            match msg {
                Some(msg) => {
                    st.resident += 1;
                    let m = QueuedMessage { seq, msg: Arc::new(msg), redelivered: delivered, persisted: true };
                    st.ready.push_back(Ready::Resident(m));
                }
                None => st.ready.push_back(Ready::Paged { seq, redelivered: delivered, persisted: true }),
            }
        }
    }

    fn memory_window(&self) -> usize {
        self.store.as_ref().map_or(usize::MAX, |s| s.durable.memory_window)
    }

    /// Messages whose bodies are in memory (the rest are in the store).
    pub fn resident_count(&self) -> usize {
        self.lock().resident
    }

    fn forget_paged(&self, seq: u64, persisted: bool) {
        if let Some(s) = &self.store {
            let op = if persisted { Op::Delete { queue: s.id, seq } } else { Op::DeleteTransient { queue: s.id, seq } };
            s.durable.writer.submit(op);
        }
    }

    /// Reads the bodies of the paged messages nearest the head back from the store, so the head
    /// is resident. A body not found is first waited for (its write may still be queued in the
    /// writer); one still missing after that is dropped, loudly.
    fn page_in(&self, st: &mut QueueState) {
        let Some(store) = &self.store else { return };
        let positions: Vec<usize> = st
            .ready
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Ready::Paged { .. }))
            .map(|(i, _)| i)
            .take(PAGE_IN_BATCH)
            .collect();
        if positions.is_empty() {
            return;
        }
        // Persistent and transient bodies live in different column families: one read each.
        let read = |st: &QueueState| -> Vec<Option<Bytes>> {
            let mut out = vec![None; positions.len()];
            for transient in [false, true] {
                let (slots, seqs): (Vec<usize>, Vec<u64>) = positions
                    .iter()
                    .enumerate()
                    .filter_map(|(slot, &i)| match st.ready[i] {
                        Ready::Paged { seq, persisted, .. } if persisted != transient => Some((slot, seq)),
                        _ => None,
                    })
                    .unzip();
                if seqs.is_empty() {
                    continue;
                }
                match store.durable.store.read_messages(store.id, &seqs, transient) {
                    Ok(records) => slots.into_iter().zip(records).for_each(|(slot, r)| out[slot] = r),
                    Err(e) => tracing::error!(queue = %self.name, error = %e, "reading paged messages failed"),
                }
            }
            out
        };
        let mut records = read(st);
        if records.iter().any(Option::is_none) {
            // The writes may still be queued in the writer: wait for them once.
            store.durable.writer.flush();
            records = read(st);
        }
        let mut lost = Vec::new();
        for (&i, record) in positions.iter().zip(records) {
            let Ready::Paged { seq, redelivered, persisted } = st.ready[i] else { continue };
            match record.as_ref().and_then(crate::store::messages::decode) {
                Some(msg) => {
                    if !persisted {
                        // Back in memory: the paged copy is not needed any more.
                        store.durable.writer.submit(Op::DeleteTransient { queue: store.id, seq });
                    }
                    st.ready[i] = Ready::Resident(QueuedMessage { seq, msg: Arc::new(msg), redelivered, persisted });
                    st.resident += 1;
                }
                None => lost.push(i),
            }
        }
        for i in lost.into_iter().rev() {
            tracing::error!(queue = %self.name, seq = st.ready[i].seq(), "a paged message is missing from the store");
            st.ready.remove(i);
        }
    }

    /// Makes the head resident; false when the queue is empty.
    fn head_resident(&self, st: &mut QueueState) -> bool {
        if matches!(st.ready.front(), Some(Ready::Paged { .. })) {
            self.page_in(st);
        }
        !st.ready.is_empty()
    }

    fn pop_head(st: &mut QueueState) -> Option<QueuedMessage> {
        match st.ready.pop_front()? {
            Ready::Resident(m) => {
                st.resident -= 1;
                Some(m)
            }
            Ready::Paged { .. } => None,
        }
    }

    /// The message is gone for good (acked, rejected, delivered without ack, purged).
    pub fn forget(&self, m: &QueuedMessage) {
        if let (Some(s), true) = (&self.store, m.persisted) {
            s.durable.writer.submit(Op::Delete { queue: s.id, seq: m.seq });
        }
    }

    /// The message went to a consumer that will ack it: if the broker dies first, it comes
    /// back redelivered.
    pub fn delivered(&self, m: &QueuedMessage) {
        if let (Some(s), true, false) = (&self.store, m.persisted, m.redelivered) {
            s.durable.writer.submit(Op::Delivered { queue: s.id, seq: m.seq });
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock would be a bug elsewhere; keep serving with the state
        // as it is rather than poisoning every later publish.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Appends and delivers what it can. False if the queue was deleted meanwhile.
    ///
    /// `persist` carries the stored record and the completion (publisher confirm) of a
    /// persistent message; it is handed to the writer here, under the queue lock and before any
    /// consumer can see the message, so its write always precedes the delete of its ack.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>, persist: Option<(Bytes, Completion)>) -> bool {
        let mut st = self.lock();
        if self.is_deleted() {
            drop(st);
            if let Some((_, done)) = persist {
                done(Ok(())); // routed, then the queue went: nothing left to make durable
            }
            return false;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let window = self.memory_window();
        let persisted = match (persist, &self.store) {
            (Some((record, done)), Some(s)) => {
                s.durable.writer.submit(Op::Put { queue: s.id, seq, record, done: Some(done) });
                true
            }
            (Some((_, done)), None) => {
                done(Ok(()));
                false
            }
            (None, _) => false,
        };
        // A backlog beyond the window keeps only places in memory: the body is in the store
        // (persistent messages are there already; transient ones are paged out now).
        if st.resident >= window && !st.ready.is_empty() && self.store.is_some() {
            if let (false, Some(s)) = (persisted, &self.store) {
                let record = crate::store::messages::encode(&msg);
                s.durable.writer.submit(Op::PutTransient { queue: s.id, seq, record });
            }
            st.ready.push_back(Ready::Paged { seq, redelivered: false, persisted });
        } else {
            st.resident += 1;
            st.ready.push_back(Ready::Resident(QueuedMessage { seq, msg, redelivered: false, persisted }));
        }
        self.dispatch_locked(&mut st);
        true
    }

    /// Offers ready messages to consumers until messages or credit run out.
    pub fn dispatch(self: &Arc<Self>) {
        let mut st = self.lock();
        self.dispatch_locked(&mut st);
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut QueueState) {
        while !st.consumers.is_empty() && self.head_resident(st) {
            let Some(Ready::Resident(front)) = st.ready.front() else { break };
            let Some(skipped) = offer_by_priority(self, st, front) else { break };
            // The next message starts with the consumer after the one that took this one.
            st.round_robin = st.round_robin.wrapping_add(skipped + 1);
            Self::pop_head(st);
        }
    }

    /// `basic.get`: the head of the queue and how many stay behind it.
    pub fn get(&self) -> Option<(QueuedMessage, u32)> {
        let mut st = self.lock();
        if !self.head_resident(&mut st) {
            return None;
        }
        let m = Self::pop_head(&mut st)?;
        Some((m, st.ready.len() as u32))
    }

    /// Puts messages back in their original places, marked redelivered, and delivers again.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        let mut st = self.lock();
        if self.is_deleted() {
            return;
        }
        for mut m in messages {
            m.redelivered = true;
            // Requeued messages are usually older than everything ready: search from the front.
            let at = st.ready.partition_point(|r| r.seq() < m.seq);
            st.ready.insert(at, Ready::Resident(m));
            st.resident += 1;
        }
        self.dispatch_locked(&mut st);
    }

    /// Adds a consumer. `on_added` runs once it is in, before any delivery to it (the channel
    /// sends `consume-ok` there, which must precede the first `basic.deliver`).
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeRefused> {
        let mut st = self.lock();
        if self.is_deleted() {
            return Err(ConsumeRefused::Deleted);
        }
        if st.consumers.iter().any(|c| c.exclusive) || (consumer.exclusive && !st.consumers.is_empty()) {
            return Err(ConsumeRefused::ExclusiveInUse);
        }
        let at = st.consumers.partition_point(|c| c.priority >= consumer.priority);
        st.consumers.insert(at, consumer);
        st.ever_consumed = true;
        on_added();
        self.dispatch_locked(&mut st);
        Ok(())
    }

    /// Removes a consumer; true when this leaves an auto-delete queue to be deleted.
    pub fn remove_consumer(&self, tag: &ShortStr, sink: &Arc<dyn ConsumerSink>) -> bool {
        let mut st = self.lock();
        st.consumers.retain(|c| !(c.tag == *tag && Arc::ptr_eq(&c.sink, sink)));
        self.auto_delete && st.ever_consumed && st.consumers.is_empty() && !self.is_deleted()
    }

    /// Drops ready messages (not unacked ones); returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.lock();
        let n = st.ready.len() as u32;
        st.resident = 0;
        for r in std::mem::take(&mut st.ready) {
            match r {
                Ready::Resident(m) => self.forget(&m),
                Ready::Paged { seq, persisted, .. } => self.forget_paged(seq, persisted),
            }
        }
        n
    }

    pub fn message_count(&self) -> u32 {
        self.lock().ready.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.lock().consumers.len() as u32
    }

    /// Marks the queue deleted, drops its messages and cancels its consumers. Returns the number
    /// of ready messages it held. The vhost removes it from its map and bindings.
    pub fn delete(&self) -> u32 {
        let (count, consumers) = {
            let mut st = self.lock();
            self.deleted.store(true, Ordering::Release);
            let count = st.ready.len() as u32;
            st.ready.clear();
            st.resident = 0;
            if let Some(s) = &self.store {
                s.durable.writer.submit(Op::DeleteQueue { queue: s.id });
            }
            (count, std::mem::take(&mut st.consumers))
        };
        for c in consumers {
            c.sink.cancelled_by_server(&c);
        }
        count
    }
}

/// Offers `message` to the highest-priority consumers first, round-robin within a priority;
/// lower priorities only get it when every higher one is busy. Returns how many consumers of
/// the taker's priority were skipped before it took the message.
fn offer_by_priority(queue: &Arc<Queue>, st: &QueueState, message: &QueuedMessage) -> Option<usize> {
    let consumers = &st.consumers;
    let mut start = 0;
    while start < consumers.len() {
        let priority = consumers[start].priority;
        let end = start + consumers[start..].iter().take_while(|c| c.priority == priority).count();
        let len = end - start;
        for k in 0..len {
            let idx = start + (st.round_robin + k) % len;
            let c = &consumers[idx];
            if c.sink.offer(c, queue, message) == Offer::Taken {
                return Some(k);
            }
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    /// A sink that takes up to `credit` messages and records what it got.
    struct Recorder {
        credit: StdMutex<usize>,
        got: StdMutex<Vec<(String, u64, bool)>>,
    }

    impl ConsumerSink for Recorder {
        fn offer(&self, c: &Consumer, _q: &Arc<Queue>, m: &QueuedMessage) -> Offer {
            let mut credit = self.credit.lock().unwrap();
            if *credit == 0 {
                return Offer::Busy;
            }
            *credit -= 1;
            self.got.lock().unwrap().push((c.tag.to_string(), m.seq, m.redelivered));
            Offer::Taken
        }
        fn cancelled_by_server(&self, _c: &Consumer) {}
        fn deliver_reply(&self, _c: &Consumer, _m: &Arc<Message>) -> bool {
            false
        }
    }

    fn recorder(credit: usize) -> Arc<Recorder> {
        Arc::new(Recorder { credit: StdMutex::new(credit), got: StdMutex::new(Vec::new()) })
    }

    fn consumer(tag: &'static str, priority: i32, sink: Arc<Recorder>) -> Arc<Consumer> {
        Arc::new(Consumer {
            tag: ShortStr::from_static(tag),
            no_ack: false,
            exclusive: false,
            priority,
            arguments: FieldTable::new(),
            sink,
        })
    }

    fn queue() -> Arc<Queue> {
        Arc::new(Queue::new(
            ShortStr::from_static("q"),
            ShortStr::from_static("/"),
            false,
            None,
            false,
            FieldTable::new(),
        ))
    }

    fn msg() -> Arc<Message> {
        Arc::new(Message {
            exchange: ShortStr::EMPTY,
            routing_key: ShortStr::from_static("q"),
            properties: Default::default(),
            body: Bytes::from_static(b"x"),
        })
    }

    #[test]
    fn round_robin_with_credit_and_priority() {
        let q = queue();
        let (a, b, hi) = (recorder(10), recorder(10), recorder(2));
        q.add_consumer(consumer("a", 0, a.clone()), || {}).unwrap();
        q.add_consumer(consumer("b", 0, b.clone()), || {}).unwrap();
        q.add_consumer(consumer("hi", 5, hi.clone()), || {}).unwrap();
        for _ in 0..6 {
            q.publish(msg(), None);
        }
        assert_eq!(hi.got.lock().unwrap().len(), 2, "high priority first, until its credit runs out");
        let (na, nb) = (a.got.lock().unwrap().len(), b.got.lock().unwrap().len());
        assert_eq!((na, nb), (2, 2), "then round robin among the rest");
    }

    #[test]
    fn messages_wait_for_credit_and_requeue_keeps_order() {
        let q = queue();
        for _ in 0..3 {
            q.publish(msg(), None);
        }
        let (first, left) = q.get().unwrap();
        assert_eq!((first.seq, left), (0, 2));
        q.requeue([first]);
        let r = recorder(1);
        q.add_consumer(consumer("c", 0, r.clone()), || {}).unwrap();
        assert_eq!(*r.got.lock().unwrap(), vec![("c".to_string(), 0, true)]);
        assert_eq!(q.message_count(), 2);
        *r.credit.lock().unwrap() = 5;
        q.dispatch();
        assert_eq!(q.message_count(), 0);
    }

    #[test]
    fn exclusive_consumers_and_auto_delete() {
        let q = Arc::new(Queue::new(
            ShortStr::from_static("q"),
            ShortStr::from_static("/"),
            false,
            None,
            true,
            FieldTable::new(),
        ));
        let r = recorder(0);
        let mut c = consumer("x", 0, r.clone());
        Arc::get_mut(&mut c).unwrap().exclusive = true;
        q.add_consumer(c, || {}).unwrap();
        assert_eq!(q.add_consumer(consumer("y", 0, r.clone()), || {}), Err(ConsumeRefused::ExclusiveInUse));
        let sink: Arc<dyn ConsumerSink> = r;
        assert!(q.remove_consumer(&ShortStr::from_static("x"), &sink), "last consumer of an auto-delete queue");
        assert_eq!(q.delete(), 0);
        assert!(!q.publish(msg(), None));
    }
}
