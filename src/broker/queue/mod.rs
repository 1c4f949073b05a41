//! Queues: ordered messages, consumers with credit, and the unacked count.
//!
//! The publishing connection appends under the queue's own short lock and, in the same critical
//! section, hands messages to consumers that have credit (their channel encodes the delivery
//! straight into its connection's outbound buffer). No task hop per message. See LOCKS.md for
//! what may be locked while this lock is held.
//!
//! A queue's arguments ([`QueueArgs`]) add the message lifecycle: TTLs expire messages at the
//! head (a timer wakes the queue when its head is due), length limits drop the oldest or refuse
//! new ones, priorities keep one FIFO per level, and whatever dies is dead-lettered — after the
//! queue lock is released, since dead-lettering publishes into other queues.

mod args;
mod consumers;
mod derived;
pub mod flow;
mod info;
mod lifecycle;
mod paging;
mod ready;
mod run;
mod stored;
#[cfg(test)]
mod tests;

pub use args::{consumer_priority, Overflow, QueueArgs};
pub use consumers::{ConsumeRefused, Consumer, ConsumerSink, Offer};
pub use derived::Derived;
pub use flow::Flow;
pub use info::{Counters, QueueGauges, QueueInfo};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use ready::{Ready, ReadyList};

use super::dead_letter::{DeadLetter, DeathReason};
use super::dedup::{identity, HeldIdentities};
use super::memory::{cost_of, Paging, MIN_RESIDENT};
use super::message::Message;
use super::policy::PolicyView;
use super::publish::PublishOutcome;
use super::record;
use super::stats::BrokerStats;
use super::stream::Stream;
use super::timer::{now_ms, Timers};
use super::vhost::VHost;
use crate::protocol::{FieldTable, ShortStr};
use crate::store::writer::Op;
use crate::store::StoreHandle;

/// A message in a queue; `seq` is its place, kept when it is requeued.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub seq: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// Written to the store (persistent message in a durable queue): its ack deletes it there.
    pub persisted: bool,
    /// When it expires (ms since the UNIX epoch): the lower of the queue's and its own TTL.
    pub expires_at: Option<u64>,
    /// How often it was handed out (for `x-delivery-limit` and `x-delivery-count`).
    pub deliveries: u32,
}

/// A queue's link to the store: its id (key prefix) and the writer. Durable queues persist
/// their persistent messages through it; every queue pages backlogs out through it.
pub struct QueueStore {
    pub id: u64,
    pub handle: Arc<StoreHandle>,
}

/// What a queue needs from the broker around it: where dead letters go, the timer, and how
/// much of a backlog it may keep in memory.
#[derive(Clone)]
pub struct QueueEnv {
    pub vhost: Weak<VHost>,
    pub timers: Arc<Timers>,
    pub paging: Arc<Paging>,
    pub stats: Arc<BrokerStats>,
}

/// What became of a message offered to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    /// The queue was deleted meanwhile.
    Deleted,
    /// Refused by a full queue (`x-overflow` = `reject-publish(-dlx)`): the publisher is nacked.
    Rejected,
}

pub struct Queue {
    pub name: ShortStr,
    pub vhost: ShortStr,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// What `arguments` ask for, before any policy.
    declared: QueueArgs,
    deleted: AtomicBool,
    /// Deliveries awaiting an ack (they live in channels; counted here for the management
    /// API): up in [`delivered`](Self::delivered), down in [`settled`](Self::settled).
    unacked: AtomicU64,
    /// Deliveries acked (outside the queue lock: acks come from channels).
    acked: AtomicU64,
    state: Mutex<QueueState>,
    store: Option<QueueStore>,
    env: Option<QueueEnv>,
    /// Identities of the messages held, for `x-message-deduplication` (a leaf lock: taken
    /// under the queue's, never the other way round).
    held: Option<Mutex<HeldIdentities>>,
    /// Whether publishers must wait for its consumers (see [`flow`]).
    pub flow: Flow,
    /// A stream's log (`x-queue-type: stream`): its messages and consumers live there, not in
    /// the ready list.
    stream: Option<Stream>,
}

struct QueueState {
    /// The behaviour its arguments ask for: as declared, or as a policy makes them
    /// ([`Queue::reapply_args`]); read under this lock, so a change applies between two
    /// operations, never within one.
    args: Arc<QueueArgs>,
    /// The policies that made `args` what they are, for display.
    policy: Arc<PolicyView>,
    ready: ReadyList,
    next_seq: u64,
    /// Sorted by priority, highest first; equal priorities keep arrival order.
    consumers: Vec<Arc<Consumer>>,
    round_robin: usize,
    ever_consumed: bool,
    /// When the timer is due to wake this queue for expiries.
    wakeup_at: Option<u64>,
    /// Last time the queue was used (declared, consumed from, got from) for `x-expires`.
    last_used: u64,
    /// `x-single-active-consumer`: the one consumer that gets messages.
    active: Option<Arc<Consumer>>,
    /// What went through the queue (management API rates); counted under this lock, where
    /// each event happens anyway.
    counters: info::Counters,
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
        // Declares check arguments before they get here; a queue restored from the store had
        // them checked when first declared.
        let args = QueueArgs::parse(&arguments, &name.to_string_lossy(), &vhost.to_string_lossy()).unwrap_or_default();
        let args_dedup = args.deduplicate;
        let state = QueueState {
            ready: ReadyList::new(args.max_priority),
            args: Arc::new(args.clone()),
            policy: Arc::default(),
            next_seq: 0,
            consumers: Vec::new(),
            round_robin: 0,
            ever_consumed: false,
            wakeup_at: None,
            last_used: now_ms(),
            active: None,
            counters: info::Counters::default(),
        };
        Queue {
            name,
            vhost,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            declared: args,
            deleted: AtomicBool::new(false),
            unacked: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            state: Mutex::new(state),
            store: None,
            env: None,
            held: args_dedup.then(Mutex::default),
            flow: Flow::default(),
            stream: None,
        }
    }

    /// Makes persistent messages published to this queue durable in `store`, and lets it page
    /// backlogs out there (call after [`with_env`](Self::with_env), which says how much of a
    /// backlog stays in memory).
    pub fn with_store(mut self, store: QueueStore) -> Queue {
        if let Some(env) = &self.env {
            self.lock().ready.set_budget(env.paging.budget.clone());
        }
        if self.declared.stream {
            let retention = self.lock().args.retention();
            self.stream = Some(Stream::open(store.id, store.handle.clone(), retention));
        }
        self.store = Some(store);
        self
    }

    /// The log of a stream (`None` for other queues).
    pub fn stream(&self) -> Option<&Stream> {
        self.stream.as_ref()
    }

    /// Declared `x-queue-type: stream` (with or without a store to keep its log).
    pub fn is_stream(&self) -> bool {
        self.declared.stream
    }

    /// Connects the queue to its vhost (dead letters) and the broker's timer.
    pub fn with_env(mut self, env: QueueEnv) -> Queue {
        self.env = Some(env);
        self
    }

    /// The queue's arguments as they apply now.
    pub fn args(&self) -> Arc<QueueArgs> {
        self.lock().args.clone()
    }

    /// What the queue's own arguments ask for (policies aside).
    pub fn declared_args(&self) -> &QueueArgs {
        &self.declared
    }

    /// Whether it was declared `x-queue-type: quorum` (policies may apply to classic queues
    /// only).
    pub fn is_quorum(&self) -> bool {
        self.declared.quorum
    }

    /// The policies applied to the queue and their merged definition.
    pub fn policy_view(&self) -> Arc<PolicyView> {
        self.lock().policy.clone()
    }

    /// A new queue, before anyone can see it, under the policies that apply to it: `args` are
    /// its arguments as those make them.
    pub fn with_policy(self, args: QueueArgs, view: Arc<PolicyView>) -> Queue {
        {
            let mut st = self.lock();
            st.args = Arc::new(args.reapplied_to(&st.args));
            st.policy = view;
        }
        self
    }

    /// [`reapply_args`](Self::reapply_args) for a policy change: `view` says which policies
    /// made `args`.
    pub fn apply_policy(self: &Arc<Self>, args: QueueArgs, view: Arc<PolicyView>) {
        self.reapply(args, Some(view));
    }

    /// Changes how the queue behaves from now on (a policy applied, changed or removed): TTLs,
    /// limits, dead-lettering, the delivery limit, the consumer timeout, `x-expires`. What
    /// shapes its storage stays as declared ([`QueueArgs::reapplied_to`]). The new limits
    /// apply at once: a lower `max-length` drops (or dead-letters) the oldest messages now.
    /// Messages keep the expiry they were given on arrival, as in RabbitMQ: a new message TTL
    /// applies to messages published from now on. An `x-expires` countdown starts over (as
    /// RabbitMQ restarts its expiry timer on every policy change).
    pub fn reapply_args(self: &Arc<Self>, args: QueueArgs) {
        self.reapply(args, None);
    }

    fn reapply(self: &Arc<Self>, args: QueueArgs, view: Option<Arc<PolicyView>>) {
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            st.args = Arc::new(args.reapplied_to(&st.args));
            if let Some(view) = view {
                st.policy = view;
            }
            if let Some(stream) = &self.stream {
                stream.set_retention(st.args.max_length_bytes, st.args.max_age_ms);
                return;
            }
            st.last_used = now_ms();
            st.wakeup_at = None; // the old deadline may be too late now
            self.expire(&mut st, now_ms(), &mut dead);
            self.drop_over_limit(&mut st, &mut dead);
            self.deliver(&mut st);
        }
        self.send_dead_letters(dead);
    }

    /// Whether the queue's definition is stored (durable and not exclusive: an exclusive queue
    /// does not outlive its connection).
    pub fn is_stored(&self) -> bool {
        self.durable && self.exclusive_owner.is_none()
    }

    /// Whether a message published now would be written to disk.
    pub fn persists(&self, msg: &Message) -> bool {
        self.store.is_some() && self.is_stored() && msg.properties.delivery_mode == Some(2)
    }

    /// The identities a deduplicating queue holds (`None` for other queues).
    fn identities(&self) -> Option<MutexGuard<'_, HeldIdentities>> {
        self.held.as_ref().map(|h| h.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn hold_identity(&self, seq: u64, id: Option<Bytes>) {
        if let (Some(mut held), Some(id)) = (self.identities(), id) {
            held.hold(seq, id);
        }
    }

    fn release_identity(&self, seq: u64) {
        if let Some(mut held) = self.identities() {
            held.release(seq);
        }
    }

    fn pop_head(st: &mut QueueState) -> Option<QueuedMessage> {
        match st.ready.pop_front()? {
            Ready::Resident(m) => Some(m),
            Ready::Paged { .. } => None,
        }
    }

    /// The message is gone for good (acked, rejected, delivered without ack, purged).
    pub fn forget(&self, m: &QueuedMessage) {
        self.release_identity(m.seq);
        if let (Some(s), true) = (&self.store, m.persisted) {
            let split = record::is_split(m.msg.body.len());
            s.handle.writer.submit(Op::Delete { queue: s.id, seq: m.seq, split });
        }
    }

    /// The message went to a consumer that will ack it: if the broker dies first, it comes
    /// back redelivered.
    pub fn delivered(&self, m: &QueuedMessage) {
        self.unacked.fetch_add(1, Ordering::Relaxed);
        if let (Some(s), true, false) = (&self.store, m.persisted, m.redelivered) {
            s.handle.writer.submit(Op::Delivered { queue: s.id, seq: m.seq });
        }
    }

    /// `n` deliveries of this queue were acked (counted for the management API's rates).
    pub fn acked(&self, n: usize) {
        self.acked.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` deliveries of this queue were acked, rejected or requeued (whichever; the channel
    /// calls this once per queue per settlement).
    pub fn settled(&self, n: usize) {
        let _ = self.unacked.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(n as u64)));
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock would be a bug elsewhere; keep serving with the state
        // as it is rather than poisoning every later publish.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Appends and delivers what it can.
    ///
    /// The queue decides whether the message is persisted here (a persistent message in a
    /// durable queue): then `record` (its index entry, encoded once for all the queues of a
    /// publish) and the body if stored apart go to the
    /// writer under the queue lock, before any consumer can see the message, so its write always
    /// precedes the delete of its ack; and the write's completion goes to `outcome`, if anyone
    /// waits for it.
    pub fn publish(
        self: &Arc<Self>,
        msg: Arc<Message>,
        outcome: Option<&Arc<PublishOutcome>>,
        derived: &mut Derived,
    ) -> Enqueued {
        if let Some(stream) = &self.stream {
            return stream.append(self, &msg, outcome);
        }
        let mut dead = Vec::new();
        let enqueued = self.publish_locked(msg, outcome, derived, &mut dead);
        self.send_dead_letters(dead);
        enqueued
    }

    fn publish_locked(
        self: &Arc<Self>,
        msg: Arc<Message>,
        outcome: Option<&Arc<PublishOutcome>>,
        derived: &mut Derived,
        dead: &mut Vec<DeadLetter>,
    ) -> Enqueued {
        let mut st = self.lock();
        if self.is_deleted() {
            return Enqueued::Deleted; // routed, then the queue went: nothing to make durable
        }
        // Every publish path stamps the message as it routes it (a transaction's when it was
        // published, which is earlier): reading the clock again here cost 2 % of a publish. An
        // earlier "now" only leaves an expiry to the timer.
        let now = msg.timestamp_ms;
        self.expire(&mut st, now, dead);
        if st.args.overflow != Overflow::DropHead && self.would_overflow(&st, msg.body.len() as u64) {
            let dead_letter = st.args.overflow == Overflow::RejectPublishDlx && st.args.has_dlx();
            drop(st);
            if dead_letter {
                self.count_death(DeathReason::Maxlen, true);
                dead.push(DeadLetter { msg, reason: DeathReason::Maxlen });
            }
            return Enqueued::Rejected;
        }
        let identity = self.held.as_ref().and_then(|_| identity(msg.headers()));
        let duplicate = match (&identity, self.identities()) {
            (Some(id), Some(held)) => held.is_held(id),
            _ => false,
        };
        if duplicate {
            return Enqueued::Queued; // accepted (confirmed) and dropped
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        self.hold_identity(seq, identity);
        let persisted = match (&self.store, self.persists(&msg)) {
            (Some(s), true) => {
                let record = derived.entry(&msg);
                let body = record::is_split(msg.body.len()).then(|| msg.body.clone());
                let done = outcome.map(|o| o.completion());
                s.handle.writer.submit(Op::Put { queue: s.id, seq, record, body, done });
                true
            }
            _ => false,
        };
        let expires_at = st.args.expiry_of(&msg);
        let level = st.ready.level_of(msg.properties.priority);
        // A backlog beyond the window keeps only places in memory: the body is in the store
        // (persistent messages are there already, so their window is short; transient ones
        // are paged out now, once the broker's budget for them is spent).
        let beyond = if persisted {
            st.ready.resident() >= self.memory_window()
        } else {
            !st.ready.has_room_for_transient(cost_of(&msg), MIN_RESIDENT)
        };
        match &self.store {
            Some(s) if beyond && !st.ready.is_empty() => {
                if !persisted {
                    let record = derived.record(&msg);
                    s.handle.writer.submit(Op::PutTransient { queue: s.id, seq, record });
                }
                let size = msg.body.len() as u32;
                st.ready.push_back(level, Ready::Paged { seq, redelivered: false, persisted, expires_at, size });
            }
            _ => {
                let m = QueuedMessage { seq, msg, redelivered: false, persisted, expires_at, deliveries: 0 };
                st.ready.push_back(level, Ready::Resident(m));
            }
        }
        st.counters.published += 1;
        // Offered before expiring: a TTL of 0 means "to a consumer ready now, or never".
        let congested = self.deliver(&mut st);
        // Left to wait, it must not keep its publisher's read buffer alive meanwhile (see
        // `derived`). Held up only by its consumers' full connections, it usually leaves
        // within microseconds and flow control bounds that backlog: a copy would cost S1 a
        // tenth. (A consumer that stopped reading keeps the queue congested without flow: up
        // to FLOW_HIGH messages per queue then stay uncopied.)
        if !congested || st.ready.len() >= flow::FLOW_HIGH {
            if let Some(Ready::Resident(m)) = st.ready.back_mut(level).filter(|r| r.seq() == seq) {
                m.msg = derived.detached(&m.msg);
            }
        }
        self.expire(&mut st, now, dead);
        self.drop_over_limit(&mut st, dead);
        Enqueued::Queued
    }

    /// `basic.get`: the head of the queue and how many stay behind it.
    pub fn get(self: &Arc<Self>) -> Option<(QueuedMessage, u32)> {
        let mut dead = Vec::new();
        let got = {
            let mut st = self.lock();
            self.expire(&mut st, now_ms(), &mut dead);
            let got = if self.head_resident(&mut st) {
                Self::pop_head(&mut st).map(|m| (m, st.ready.len() as u32))
            } else {
                None
            };
            if let Some((m, _)) = &got {
                st.counters.got += 1;
                st.counters.redelivered += u64::from(m.redelivered);
            }
            self.mark_used(&mut st);
            got
        };
        self.send_dead_letters(dead);
        got
    }

    /// Puts messages back in their original places, marked redelivered, and delivers again.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        if let Some(stream) = &self.stream {
            // A stream never redelivers (as RabbitMQ's): the settlement only returned credit.
            return stream.dispatch(self);
        }
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            if self.is_deleted() {
                return;
            }
            for mut m in messages {
                if st.args.delivery_limit.is_some_and(|limit| u64::from(m.deliveries) > limit) {
                    // Delivered too often (a poison message): dead-lettered or dropped.
                    self.kill_message(st.args.has_dlx(), m, DeathReason::DeliveryLimit, &mut dead);
                    continue;
                }
                m.redelivered = true;
                let level = st.ready.level_of(m.msg.properties.priority);
                st.ready.insert_by_seq(level, Ready::Resident(m));
            }
            self.expire(&mut st, now_ms(), &mut dead);
            self.deliver(&mut st);
            self.drop_over_limit(&mut st, &mut dead);
        }
        self.send_dead_letters(dead);
    }

    /// Settles deliveries that were rejected without requeue: gone, and dead-lettered if the
    /// queue has a dead-letter exchange.
    pub fn reject(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        if let Some(stream) = &self.stream {
            return stream.dispatch(self);
        }
        let mut dead = Vec::new();
        let dlx = self.args().has_dlx();
        for m in messages {
            self.kill_message(dlx, m, DeathReason::Rejected, &mut dead);
        }
        self.send_dead_letters(dead);
        self.dispatch();
    }

    /// Drops ready messages (not unacked ones); returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.lock();
        let all = st.ready.take_all();
        let n = all.len() as u32;
        for r in all {
            match r {
                Ready::Resident(m) => self.forget(&m),
                Ready::Paged { seq, persisted, size, .. } => self.forget_paged(seq, persisted, size),
            }
        }
        n
    }

    pub fn message_count(&self) -> u32 {
        if let Some(stream) = &self.stream {
            return stream.message_count().min(u64::from(u32::MAX)) as u32;
        }
        self.lock().ready.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        if let Some(stream) = &self.stream {
            return stream.consumer_count() as u32;
        }
        self.lock().consumers.len() as u32
    }

    /// Marks the queue deleted, drops its messages and cancels its consumers. Returns the number
    /// of ready messages it held. The vhost removes it from its map and bindings.
    pub fn delete(&self) -> u32 {
        // A stream closes first: no append can follow the range delete below.
        let stream = self.stream.as_ref().map(|s| (s.message_count() as u32, s.close()));
        let (count, consumers) = {
            let mut st = self.lock();
            self.deleted.store(true, Ordering::Release);
            let count = st.ready.take_all().len() as u32;
            self.flow.update(0, false, 0);
            if let Some(mut held) = self.identities() {
                held.clear();
            }
            if let Some(s) = &self.store {
                s.handle.writer.submit(Op::DeleteQueue { queue: s.id });
            }
            (count, std::mem::take(&mut st.consumers))
        };
        let (count, consumers) = stream.unwrap_or((count, consumers));
        for c in consumers {
            c.sink.cancelled_by_server(&c);
        }
        count
    }
}
