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
mod ready;

pub use args::{consumer_priority, Overflow, QueueArgs};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use ready::{Ready, ReadyList};

use super::dead_letter::{DeadLetter, DeathReason};
use super::dedup::{identity, HeldIdentities};
use super::memory::{cost_of, MIN_RESIDENT};
use super::message::Message;
use super::timer::{now_ms, TimerTarget, Timers};
use super::vhost::VHost;
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
    /// When it expires (ms since the UNIX epoch): the lower of the queue's and its own TTL.
    pub expires_at: Option<u64>,
    /// How often it was handed out (for `x-delivery-limit` and `x-delivery-count`).
    pub deliveries: u32,
}

/// A queue's link to the store: its id (key prefix) and the writer. Durable queues persist
/// their persistent messages through it; every queue pages backlogs out through it.
pub struct QueueStore {
    pub id: u64,
    pub durable: Arc<Durable>,
}

/// What a queue needs from the broker around it: where dead letters go, and the timer.
#[derive(Clone)]
pub struct QueueEnv {
    pub vhost: Weak<VHost>,
    pub timers: Arc<Timers>,
}

/// Bodies read back from the store at a time when the head of a queue reaches paged messages.
const PAGE_IN_BATCH: usize = 256;

/// A message read back from the store at start-up.
pub enum Recovered {
    Resident(Message),
    Paged { size: u32, priority: Option<u8>, expires_at: Option<u64>, identity: Option<Bytes> },
}

/// What a consumer's channel said to one offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Sent; the channel now tracks it (or it was no-ack).
    Taken,
    /// No credit (prefetch reached, or the client is not reading); try other consumers.
    Busy,
}

/// What became of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    Queued,
    /// The queue was deleted meanwhile.
    Deleted,
    /// Refused by a full queue (`x-overflow` = `reject-publish(-dlx)`): the publisher is nacked.
    Rejected,
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
    /// `x-priority`; RabbitMQ takes any integer, 64-bit ones included.
    pub priority: i64,
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
    /// The behaviour its arguments ask for.
    pub args: QueueArgs,
    deleted: AtomicBool,
    state: Mutex<QueueState>,
    store: Option<QueueStore>,
    env: Option<QueueEnv>,
    /// Identities of the messages held, for `x-message-deduplication` (a leaf lock: taken
    /// under the queue's, never the other way round).
    held: Option<Mutex<HeldIdentities>>,
}

struct QueueState {
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
        // Declares check arguments before they get here; a queue restored from the store had
        // them checked when first declared.
        let args = QueueArgs::parse(&arguments, &name.to_string_lossy(), &vhost.to_string_lossy()).unwrap_or_default();
        let args_dedup = args.deduplicate;
        let state = QueueState {
            ready: ReadyList::new(args.max_priority),
            next_seq: 0,
            consumers: Vec::new(),
            round_robin: 0,
            ever_consumed: false,
            wakeup_at: None,
            last_used: now_ms(),
            active: None,
        };
        Queue {
            name,
            vhost,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            args,
            deleted: AtomicBool::new(false),
            state: Mutex::new(state),
            store: None,
            env: None,
            held: args_dedup.then(Mutex::default),
        }
    }

    /// Makes persistent messages published to this queue durable in `store`.
    pub fn with_store(mut self, store: QueueStore) -> Queue {
        self.lock().ready.set_budget(store.durable.transient_budget.clone());
        self.store = Some(store);
        self
    }

    /// Connects the queue to its vhost (dead letters) and the broker's timer.
    pub fn with_env(mut self, env: QueueEnv) -> Queue {
        self.env = Some(env);
        self
    }

    pub fn store_id(&self) -> Option<u64> {
        self.store.as_ref().map(|s| s.id)
    }

    /// Whether deliveries carry `x-delivery-count` (queues with a delivery limit, and quorum
    /// queues as in RabbitMQ).
    pub fn counts_deliveries(&self) -> bool {
        self.args.delivery_limit.is_some() || self.args.quorum
    }

    /// Whether a message published now would be written to disk.
    pub fn persists(&self, msg: &Message) -> bool {
        self.store.is_some()
            && self.durable
            && self.exclusive_owner.is_none()
            && msg.properties.delivery_mode == Some(2)
    }

    /// When a message taken at `msg.timestamp_ms` expires here: the lower of the queue's TTL
    /// and the message's own `expiration`.
    fn expiry_of(&self, msg: &Message) -> Option<u64> {
        let own = msg.expiration_ms().ok().flatten();
        let ttl = match (self.args.message_ttl, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The arrival time is whole milliseconds, rounded down: a positive TTL counts from the
        // next millisecond so that a message never expires before its TTL has fully passed.
        // (TTL 0 stays "now": delivered to a ready consumer in the same instant, or expired.)
        ttl.map(|t| msg.timestamp_ms.saturating_add(t).saturating_add(u64::from(t > 0)))
    }

    /// Puts back one message recovered from the store (called in queue order): with its body,
    /// or (beyond the memory window) as a place whose body stays on disk.
    pub fn recover(&self, seq: u64, message: Recovered, delivered: bool) {
        let mut st = self.lock();
        st.next_seq = st.next_seq.max(seq + 1);
        match message {
            Recovered::Resident(msg) => {
                self.hold_identity(seq, self.held.as_ref().and_then(|_| identity(msg.headers())));
                let level = st.ready.level_of(msg.properties.priority);
                let expires_at = self.expiry_of(&msg);
                let deliveries = u32::from(delivered);
                let m = QueuedMessage {
                    seq,
                    msg: Arc::new(msg),
                    redelivered: delivered,
                    persisted: true,
                    expires_at,
                    deliveries,
                };
                st.ready.push_back(level, Ready::Resident(m));
            }
            Recovered::Paged { size, priority, expires_at, identity } => {
                self.hold_identity(seq, identity);
                let level = st.ready.level_of(priority);
                let paged = Ready::Paged { seq, redelivered: delivered, persisted: true, expires_at, size };
                st.ready.push_back(level, paged);
            }
        }
    }

    /// What recovery keeps of a message beyond the memory window: enough to queue it in the
    /// right place and expire it on time, without its body.
    pub fn recovered_place(&self, msg: &Message) -> Recovered {
        Recovered::Paged {
            size: msg.body.len() as u32,
            priority: msg.properties.priority,
            expires_at: self.expiry_of(msg),
            identity: self.held.as_ref().and_then(|_| identity(msg.headers())),
        }
    }

    fn memory_window(&self) -> usize {
        self.store.as_ref().map_or(usize::MAX, |s| s.durable.memory_window)
    }

    /// Messages whose bodies are in memory (the rest are in the store).
    pub fn resident_count(&self) -> usize {
        self.lock().ready.resident()
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

    fn forget_paged(&self, seq: u64, persisted: bool) {
        self.release_identity(seq);
        if let Some(s) = &self.store {
            let op = if persisted { Op::Delete { queue: s.id, seq } } else { Op::DeleteTransient { queue: s.id, seq } };
            s.durable.writer.submit(op);
        }
    }

    /// Reads the bodies of the paged messages nearest the head of `level` back from the store.
    /// A body not found is first waited for (its write may still be queued in the writer); one
    /// still missing after that is dropped, loudly.
    fn page_in(&self, st: &mut QueueState, level: usize) {
        let Some(store) = &self.store else { return };
        let positions: Vec<usize> = st
            .ready
            .level(level)
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
                    .filter_map(|(slot, &i)| match st.ready.level(level)[i] {
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
            let Ready::Paged { seq, redelivered, persisted, .. } = st.ready.level(level)[i] else { continue };
            match record.as_ref().and_then(crate::store::messages::decode) {
                Some(msg) => {
                    if !persisted {
                        // Back in memory: the paged copy is not needed any more.
                        store.durable.writer.submit(Op::DeleteTransient { queue: store.id, seq });
                    }
                    let expires_at = self.expiry_of(&msg);
                    let deliveries = u32::from(redelivered);
                    let m = QueuedMessage { seq, msg: Arc::new(msg), redelivered, persisted, expires_at, deliveries };
                    st.ready.make_resident(level, i, m);
                }
                None => lost.push(i),
            }
        }
        for i in lost.into_iter().rev() {
            if let Some(r) = st.ready.remove(level, i) {
                tracing::error!(queue = %self.name, seq = r.seq(), "a paged message is missing from the store");
            }
        }
    }

    /// Makes the head resident; false when the queue is empty.
    fn head_resident(&self, st: &mut QueueState) -> bool {
        while let Some(level) = st.ready.head_level() {
            if !matches!(st.ready.level(level).front(), Some(Ready::Paged { .. })) {
                return true;
            }
            self.page_in(st, level);
            if matches!(st.ready.level(level).front(), Some(Ready::Resident(_))) {
                return true;
            }
            // Everything read back was missing (and dropped); look again.
        }
        false
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

    fn has_dlx(&self) -> bool {
        self.args.dead_letter_exchange.is_some()
    }

    /// Removes the expired messages at the head of every priority level (RabbitMQ expires only
    /// at the head: a message behind a live one waits its turn), and arms the timer for the
    /// next deadline.
    fn expire(self: &Arc<Self>, st: &mut QueueState, now: u64, dead: &mut Vec<DeadLetter>) {
        for level in 0..st.ready.levels() {
            while let Some(r) = st.ready.level(level).front() {
                if r.expires_at().is_none_or(|at| at > now) {
                    break;
                }
                if self.has_dlx() && matches!(r, Ready::Paged { .. }) {
                    self.page_in(st, level);
                    continue; // the body is needed for the dead letter
                }
                let Some(r) = st.ready.pop_front_of(level) else { break };
                self.kill(r, DeathReason::Expired, dead);
            }
        }
        self.arm_timer(st, now);
    }

    /// When an unused queue with `x-expires` is due to go (never while it has consumers).
    fn unused_deadline(&self, st: &QueueState) -> Option<u64> {
        let expires = self.args.expires?;
        // +1: `last_used` is rounded down to the millisecond; never delete early.
        st.consumers.is_empty().then(|| st.last_used.saturating_add(expires).saturating_add(1))
    }

    /// Marks the queue used (declare, `basic.get`, consumers coming or going): `x-expires`
    /// counts from here.
    pub fn touch(self: &Arc<Self>) {
        if self.args.expires.is_none() {
            return;
        }
        let mut st = self.lock();
        let now = now_ms();
        st.last_used = now;
        self.arm_timer(&mut st, now);
    }

    /// Arms the timer for what recovery put back (called once every queue of the vhost is
    /// restored, so dead letters of overdue messages find their destinations).
    pub fn arm_recovered(self: &Arc<Self>) {
        let mut st = self.lock();
        self.arm_timer(&mut st, now_ms());
    }

    /// A message leaves for good because it died: forgotten, and dead-lettered if the queue has
    /// a dead-letter exchange. (A paged one without its body is only forgotten: callers page in
    /// first when there is a DLX.)
    fn kill(&self, r: Ready, reason: DeathReason, dead: &mut Vec<DeadLetter>) {
        match r {
            Ready::Resident(m) => self.kill_message(m, reason, dead),
            Ready::Paged { seq, persisted, .. } => self.forget_paged(seq, persisted),
        }
    }

    fn kill_message(&self, m: QueuedMessage, reason: DeathReason, dead: &mut Vec<DeadLetter>) {
        self.forget(&m);
        if self.has_dlx() {
            dead.push(DeadLetter { msg: m.msg, reason });
        }
    }

    /// Asks the timer to wake the queue when the earliest head expires, or when it is due to
    /// be deleted unused.
    fn arm_timer(self: &Arc<Self>, st: &mut QueueState, now: u64) {
        let Some(env) = &self.env else { return };
        let heads = (0..st.ready.levels()).filter_map(|l| st.ready.level(l).front()?.expires_at()).min();
        let next = match (heads, self.unused_deadline(st)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(at) = next else { return };
        if st.wakeup_at.is_some_and(|w| w <= at && w >= now) {
            return; // already due to wake in time
        }
        st.wakeup_at = Some(at);
        env.timers.schedule(at, Arc::downgrade(self) as Weak<dyn TimerTarget>);
    }

    /// Enforces `x-max-length(-bytes)` by dropping from the head (`drop-head`).
    fn drop_over_limit(&self, st: &mut QueueState, dead: &mut Vec<DeadLetter>) {
        let over = |st: &QueueState| {
            self.args.max_length.is_some_and(|max| st.ready.len() as u64 > max)
                || self.args.max_length_bytes.is_some_and(|max| st.ready.bytes() > max)
        };
        while over(st) {
            if self.has_dlx() {
                self.head_resident(st);
            }
            let Some(r) = st.ready.pop_front() else { break };
            self.kill(r, DeathReason::Maxlen, dead);
        }
    }

    /// Whether one more message of `size` bytes would take the queue past its limits.
    fn would_overflow(&self, st: &QueueState, size: u64) -> bool {
        self.args.max_length.is_some_and(|max| st.ready.len() as u64 + 1 > max)
            || self.args.max_length_bytes.is_some_and(|max| st.ready.bytes() + size > max)
    }

    /// Hands what died to the vhost's dead-letter routing (never under the queue lock: that
    /// publishes into other queues).
    fn send_dead_letters(&self, dead: Vec<DeadLetter>) {
        if dead.is_empty() {
            return;
        }
        if let Some(vhost) = self.env.as_ref().and_then(|e| e.vhost.upgrade()) {
            vhost.dead_letter(self, dead);
        }
    }

    /// Appends and delivers what it can.
    ///
    /// `persist` carries the stored record and the completion (publisher confirm) of a
    /// persistent message; it is handed to the writer here, under the queue lock and before any
    /// consumer can see the message, so its write always precedes the delete of its ack.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>, persist: Option<(Bytes, Completion)>) -> Published {
        let mut dead = Vec::new();
        let outcome = self.publish_locked(msg, persist, &mut dead);
        self.send_dead_letters(dead);
        outcome
    }

    /// [`publish`](Self::publish) for a message nobody waits on (a dead letter, a due delayed
    /// message): persisted where the queue persists it, with `record` encoded once for every
    /// queue the message reaches.
    pub fn publish_unawaited(self: &Arc<Self>, msg: Arc<Message>, record: &mut Option<Bytes>) -> Published {
        let persist = self.persists(&msg).then(|| {
            let r = record.get_or_insert_with(|| crate::store::messages::encode(&msg)).clone();
            (r, crate::store::writer::unawaited())
        });
        self.publish(msg, persist)
    }

    fn publish_locked(
        self: &Arc<Self>,
        msg: Arc<Message>,
        persist: Option<(Bytes, Completion)>,
        dead: &mut Vec<DeadLetter>,
    ) -> Published {
        let mut st = self.lock();
        if self.is_deleted() {
            drop(st);
            if let Some((_, done)) = persist {
                done(Ok(())); // routed, then the queue went: nothing left to make durable
            }
            return Published::Deleted;
        }
        // Every publish path stamps the message as it routes it (a transaction's when it was
        // published, which is earlier): reading the clock again here cost 2 % of a publish. An
        // earlier "now" only leaves an expiry to the timer.
        let now = msg.timestamp_ms;
        self.expire(&mut st, now, dead);
        if self.args.overflow != Overflow::DropHead && self.would_overflow(&st, msg.body.len() as u64) {
            drop(st);
            if let Some((_, done)) = persist {
                done(Err("queue full (x-overflow reject-publish)".into()));
            }
            if self.args.overflow == Overflow::RejectPublishDlx && self.has_dlx() {
                dead.push(DeadLetter { msg, reason: DeathReason::Maxlen });
            }
            return Published::Rejected;
        }
        let identity = self.held.as_ref().and_then(|_| identity(msg.headers()));
        let duplicate = match (&identity, self.identities()) {
            (Some(id), Some(held)) => held.is_held(id),
            _ => false,
        };
        if duplicate {
            // Accepted (confirmed) and dropped.
            drop(st);
            if let Some((_, done)) = persist {
                done(Ok(()));
            }
            return Published::Queued;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        self.hold_identity(seq, identity);
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
        let expires_at = self.expiry_of(&msg);
        let level = st.ready.level_of(msg.properties.priority);
        // A backlog beyond the window keeps only places in memory: the body is in the store
        // (persistent messages are there already, so their window is short; transient ones
        // are paged out now, once the broker's budget for them is spent).
        let beyond = if persisted {
            st.ready.resident() >= window
        } else {
            !st.ready.has_room_for_transient(cost_of(&msg), MIN_RESIDENT)
        };
        if beyond && !st.ready.is_empty() && self.store.is_some() {
            if let (false, Some(s)) = (persisted, &self.store) {
                let record = crate::store::messages::encode(&msg);
                s.durable.writer.submit(Op::PutTransient { queue: s.id, seq, record });
            }
            let size = msg.body.len() as u32;
            st.ready.push_back(level, Ready::Paged { seq, redelivered: false, persisted, expires_at, size });
        } else {
            let m = QueuedMessage { seq, msg, redelivered: false, persisted, expires_at, deliveries: 0 };
            st.ready.push_back(level, Ready::Resident(m));
        }
        // Offered before expiring: a TTL of 0 means "to a consumer ready now, or never".
        self.deliver(&mut st);
        self.expire(&mut st, now, dead);
        self.drop_over_limit(&mut st, dead);
        Published::Queued
    }

    /// Offers ready messages to consumers until messages or credit run out.
    pub fn dispatch(self: &Arc<Self>) {
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            self.expire(&mut st, now_ms(), &mut dead);
            self.deliver(&mut st);
        }
        self.send_dead_letters(dead);
    }

    fn deliver(self: &Arc<Self>, st: &mut QueueState) {
        while !st.consumers.is_empty() && self.head_resident(st) {
            let Some(Ready::Resident(front)) = st.ready.front() else { break };
            if let Some(active) = &st.active {
                if active.sink.offer(active, self, front) == Offer::Busy {
                    break;
                }
                Self::pop_head(st);
                continue;
            }
            let Some(skipped) = offer_by_priority(self, st, front) else { break };
            // The next message starts with the consumer after the one that took this one.
            st.round_robin = st.round_robin.wrapping_add(skipped + 1);
            Self::pop_head(st);
        }
    }

    /// `basic.get`: the head of the queue and how many stay behind it.
    pub fn get(self: &Arc<Self>) -> Option<(QueuedMessage, u32)> {
        let mut dead = Vec::new();
        let got = {
            let mut st = self.lock();
            self.expire(&mut st, now_ms(), &mut dead);
            if self.head_resident(&mut st) {
                Self::pop_head(&mut st).map(|m| (m, st.ready.len() as u32))
            } else {
                None
            }
        };
        self.send_dead_letters(dead);
        self.touch();
        got
    }

    /// Puts messages back in their original places, marked redelivered, and delivers again.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            if self.is_deleted() {
                return;
            }
            for mut m in messages {
                if self.args.delivery_limit.is_some_and(|limit| u64::from(m.deliveries) > limit) {
                    // Delivered too often (a poison message): dead-lettered or dropped.
                    self.kill_message(m, DeathReason::DeliveryLimit, &mut dead);
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
        let mut dead = Vec::new();
        for m in messages {
            self.kill_message(m, DeathReason::Rejected, &mut dead);
        }
        self.send_dead_letters(dead);
        self.dispatch();
    }

    /// Adds a consumer. `on_added` runs once it is in, before any delivery to it (the channel
    /// sends `consume-ok` there, which must precede the first `basic.deliver`).
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeRefused> {
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            if self.is_deleted() {
                return Err(ConsumeRefused::Deleted);
            }
            let exclusive_conflict =
                st.consumers.iter().any(|c| c.exclusive) || (consumer.exclusive && !st.consumers.is_empty());
            // A single-active-consumer queue already decides who consumes: RabbitMQ refuses an
            // exclusive consumer there.
            if exclusive_conflict || (consumer.exclusive && self.args.single_active_consumer) {
                return Err(ConsumeRefused::ExclusiveInUse);
            }
            if self.args.single_active_consumer && st.active.is_none() {
                st.active = Some(consumer.clone());
            }
            let at = st.consumers.partition_point(|c| c.priority >= consumer.priority);
            st.consumers.insert(at, consumer);
            st.ever_consumed = true;
            on_added();
            self.expire(&mut st, now_ms(), &mut dead);
            self.deliver(&mut st);
        }
        self.send_dead_letters(dead);
        self.touch();
        Ok(())
    }

    /// Removes a consumer; true when this leaves an auto-delete queue to be deleted.
    pub fn remove_consumer(self: &Arc<Self>, tag: &ShortStr, sink: &Arc<dyn ConsumerSink>) -> bool {
        let last_gone = {
            let mut st = self.lock();
            st.consumers.retain(|c| !(c.tag == *tag && Arc::ptr_eq(&c.sink, sink)));
            let was_active = st.active.as_ref().is_some_and(|a| a.tag == *tag && Arc::ptr_eq(&a.sink, sink));
            if was_active {
                // Failover: the highest-priority waiting consumer, the earliest among equals
                // (the list is sorted that way).
                st.active = st.consumers.first().cloned();
                if let Some(next) = &st.active {
                    tracing::debug!(queue = %self.name, consumer = %next.tag, "single active consumer handed over");
                }
            }
            self.auto_delete && st.ever_consumed && st.consumers.is_empty() && !self.is_deleted()
        };
        if self.args.single_active_consumer {
            self.dispatch();
        }
        self.touch(); // x-expires counts from the last consumer leaving
        last_gone
    }

    /// Drops ready messages (not unacked ones); returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.lock();
        let all = st.ready.take_all();
        let n = all.len() as u32;
        for r in all {
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
            let count = st.ready.take_all().len() as u32;
            if let Some(mut held) = self.identities() {
                held.clear();
            }
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

impl TimerTarget for Queue {
    fn fire(self: Arc<Self>, now_ms: u64) {
        if self.is_deleted() {
            return;
        }
        let mut dead = Vec::new();
        let unused = {
            let mut st = self.lock();
            if st.wakeup_at.is_some_and(|w| w <= now_ms) {
                st.wakeup_at = None;
            }
            let unused = self.unused_deadline(&st).is_some_and(|at| at <= now_ms);
            if !unused {
                self.expire(&mut st, now_ms, &mut dead);
                self.deliver(&mut st);
            }
            unused
        };
        self.send_dead_letters(dead);
        if unused {
            // x-expires: deleted with its messages (they are not dead-lettered).
            if let Some(vhost) = self.env.as_ref().and_then(|e| e.vhost.upgrade()) {
                tracing::info!(queue = %self.name, vhost = %self.vhost, "queue expired unused (x-expires)");
                vhost.remove_queue(&self);
            }
        }
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

    fn consumer(tag: &'static str, priority: i64, sink: Arc<Recorder>) -> Arc<Consumer> {
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
            timestamp_ms: 0,
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
    fn a_positive_ttl_never_ends_before_it_has_fully_passed() {
        let with_ttl = |ttl: i32| {
            let mut args = FieldTable::new();
            args.insert(ShortStr::from_static("x-message-ttl"), crate::protocol::FieldValue::I32(ttl));
            Queue::new(ShortStr::from_static("q"), ShortStr::from_static("/"), false, None, false, args)
        };
        let mut m = (*msg()).clone();
        m.timestamp_ms = 1_000; // taken somewhere in [1000, 1001) ms
        assert_eq!(with_ttl(100).expiry_of(&m), Some(1_101), "not before 1100 + the part of a ms we rounded off");
        assert_eq!(with_ttl(0).expiry_of(&m), Some(1_000), "TTL 0: now or never");
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
        assert_eq!(q.publish(msg(), None), Published::Deleted);
    }
}
