//! Delayed delivery: messages held by `x-delayed-message` exchanges until they are due, then
//! routed through the exchange as if published at that moment.
//!
//! With a store, held messages live only in RocksDB ([`crate::store::delayed`]): keys sort by
//! due time, so the earliest is the first key and memory does not grow with the number held.
//! One timer thread sleeps until the earliest due time, reads every message due by now (a
//! bounded range scan), routes each through its vhost's normal path (persisting into durable
//! queues like any persistent publish), and deletes it through the group-commit writer. A
//! message due earlier than the one the timer sleeps for wakes it when its write lands.
//! Without a store (unit tests) an in-memory map plays the same part.
//!
//! Durability and ordering, the parts that are easy to get wrong:
//! - A publish to a durable delayed exchange is confirmed once its `PutDelayed` is synced. Its
//!   key is only visible to the timer after that write; so that the timer never reads past a
//!   key still queued in the writer (it would not come back to it), the keys in flight are
//!   kept in a small set and each scan stops below the smallest of them. A new message is
//!   always due after the time the timer scans up to (the clock is read under the same lock
//!   as the set), so nothing can appear behind the scan.
//! - The delete of a routed message goes through the same writer after the `Put`s of the
//!   durable queues it reached: it lands in the same batch or a later one, so a crash never
//!   loses a message (at worst it is routed again after the restart: at least once).
//! - The timer reads the wall clock (due times must survive restarts), made monotonic within a
//!   process. Due times are rounded up to the next millisecond, so a message is never routed
//!   before its delay is over.
//!
//! Messages whose exchange (or vhost) no longer exists when they are due are dropped, with a
//! debug line. A held message routes nowhere at publish time, so a `mandatory` publish is
//! returned at once (`312 NO_ROUTE`) even though it is delivered later: the plugin does the same
//! (its README: "the mandatory flag is not supported by this exchange"). Unlike the plugin,
//! the exchange's alternate exchange does not receive the message at publish time; it applies
//! when the message is routed, if nothing matches then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dashmap::DashMap;

use super::exchange::{delayed as rules, Exchange};
use super::message::Message;
use super::publish::Publish;
use super::record as messages;
use super::VHost;
use crate::protocol::ShortStr;
use crate::store::delayed::{decode_value, encode_value, DelayKey, SEQ_BITS_PER_BOOT};
use crate::store::writer::{Completion, Op};
use crate::store::StoreHandle;

/// Held messages read and routed per round (per column family).
const BATCH: usize = 1024;
/// Longest the timer sleeps without looking at the store (a safety net: a message due earlier
/// wakes it anyway).
const MAX_SLEEP: Duration = Duration::from_secs(10);
/// How soon the timer tries again after the store failed to read.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// The clock due times are on: microseconds since the Unix epoch, never going backwards within
/// the process.
pub fn clock_us() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let last = LAST.fetch_max(wall, Ordering::AcqRel);
    wall.max(last)
}

/// When a message held for `delay_ms` from `now_us` is due: rounded up to the millisecond, so
/// never before the delay is over.
pub fn due_ms(now_us: u64, delay_ms: u64) -> u64 {
    now_us.div_ceil(1000).saturating_add(delay_ms)
}

/// Every delayed exchange's held messages and the timer that routes them.
pub struct Delays {
    backend: Backend,
    timer: Arc<Timer>,
    /// Where due messages go, by vhost name.
    vhosts: DashMap<ShortStr, Weak<VHost>>,
    started: OnceLock<()>,
    /// The timer thread, for [`Delays::stop`] to wait for.
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Backend {
    Store { storage: Arc<StoreHandle>, next_seq: AtomicU64, in_flight: Arc<Mutex<InFlight>> },
    Memory { next_seq: AtomicU64, held: Mutex<BTreeMap<DelayKey, Held>> },
}

/// Keys handed to the writer and not yet written, per column family (durable, transient).
#[derive(Default)]
struct InFlight([BTreeSet<DelayKey>; 2]);

/// A message held in memory (no store).
struct Held {
    vhost: ShortStr,
    exchange: ShortStr,
    extra_keys: Vec<Bytes>,
    message: Message,
}

/// A due message taken from the backend.
struct Due {
    key: DelayKey,
    transient: bool,
    vhost: ShortStr,
    exchange: ShortStr,
    extra_keys: Vec<Bytes>,
    message: Message,
}

struct Timer {
    state: Mutex<TimerState>,
    wake: Condvar,
}

#[derive(Default)]
struct TimerState {
    /// When the timer thread looks next (µs); 0 while it is routing (it looks again after).
    armed_us: u64,
    /// The earliest due time (ms) written since the timer last looked.
    written_due: Option<u64>,
    stop: bool,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message due at `due` can now be read: wake the timer if it sleeps past that.
    fn note_written(&self, due: u64) {
        let mut st = self.lock();
        st.written_due = Some(st.written_due.map_or(due, |d| d.min(due)));
        if due.saturating_mul(1000) < st.armed_us {
            self.wake.notify_one();
        }
    }

    fn stop(&self) {
        self.lock().stop = true;
        self.wake.notify_all();
    }
}

impl Drop for Delays {
    fn drop(&mut self) {
        self.timer.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Delays {
    /// Held messages go to the store's delayed column families when there is a store, else to
    /// memory. The timer starts with [`Delays::start`] (or the first held message).
    pub fn new(storage: Option<Arc<StoreHandle>>) -> Arc<Delays> {
        let backend = match storage {
            Some(storage) => {
                // Sequence numbers start at this run's boot count, so they never collide with
                // those of messages an earlier run left in the store.
                let boot = storage.store.next_delayed_boot().unwrap_or_else(|e| {
                    let fallback = clock_us() >> 20;
                    tracing::error!(error = %e, fallback, "cannot count this start-up in the store; delayed message numbers start from the clock");
                    fallback
                });
                let next_seq = AtomicU64::new(boot << SEQ_BITS_PER_BOOT);
                Backend::Store { storage, next_seq, in_flight: Default::default() }
            }
            None => Backend::Memory { next_seq: AtomicU64::new(0), held: Mutex::default() },
        };
        Arc::new(Delays {
            backend,
            timer: Arc::new(Timer { state: Mutex::default(), wake: Condvar::new() }),
            vhosts: DashMap::new(),
            started: OnceLock::new(),
            thread: Mutex::new(None),
        })
    }

    /// Due messages of `vhost` are routed there.
    pub fn register(&self, vhost: &Arc<VHost>) {
        self.vhosts.insert(vhost.name.clone(), Arc::downgrade(vhost));
    }

    /// Drops everything held for a deleted vhost and stops routing to it: a vhost created later
    /// under the same name must not receive the old one's messages. With a store this reads
    /// every held message (after waiting for queued writes, so none is missed): an
    /// administrative act, never on a message's path. A message the timer is routing at this
    /// moment finds the vhost gone and is dropped.
    pub fn forget_vhost(&self, name: &ShortStr) {
        self.vhosts.remove(name);
        match &self.backend {
            Backend::Memory { held, .. } => lock(held).retain(|_, h| h.vhost != *name),
            Backend::Store { storage, .. } => {
                storage.writer.flush();
                for transient in [false, true] {
                    match storage.store.delayed_of_vhost(transient, name) {
                        Ok(keys) => {
                            for key in keys {
                                storage.writer.submit(Op::DeleteDelayed { key: key.encode(), transient });
                            }
                        }
                        Err(e) => {
                            tracing::error!(vhost = %name, error = %e, "cannot drop the deleted vhost's delayed messages")
                        }
                    }
                }
            }
        }
    }

    /// Starts the timer thread (once): it routes what is overdue at once, then sleeps until the
    /// next message is due. It ends when these `Delays` are dropped.
    pub fn start(self: &Arc<Self>) {
        self.started.get_or_init(|| {
            let (delays, timer) = (Arc::downgrade(self), self.timer.clone());
            match std::thread::Builder::new().name("warren-delayed".into()).spawn(move || run(delays, timer)) {
                Ok(thread) => *lock(&self.thread) = Some(thread),
                Err(e) => tracing::error!(error = %e, "cannot start the delayed-message timer; delayed messages wait"),
            }
        });
    }

    /// Stops routing due messages (shutdown) and waits for the timer thread to finish what it
    /// is routing, so that it holds no handle on the store any more. Held messages stay held.
    pub fn stop(&self) {
        self.timer.stop();
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }

    /// Holds `msg`, which reached delayed exchange `x` in `vhost`, for `delay_ms`. `done` (a
    /// publisher confirm) runs once the message is safely held: synced for a durable exchange.
    pub fn hold(
        self: &Arc<Self>,
        vhost: &ShortStr,
        x: &Exchange,
        msg: &Message,
        extra_keys: &[&[u8]],
        delay_ms: u64,
        done: Option<Completion>,
    ) {
        self.start();
        let mut message = msg.clone();
        rules::mark_delayed(&mut message.properties, delay_ms);
        let transient = !x.durable;
        match &self.backend {
            Backend::Store { storage, next_seq, in_flight } => {
                let record = messages::encode(&message);
                let value = encode_value(vhost, &x.name, extra_keys, &record);
                let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                let key = {
                    // The clock is read under the lock the timer reads it under: see the module.
                    let mut f = lock(in_flight);
                    let key = DelayKey { due: due_ms(clock_us(), delay_ms), seq };
                    f.0[transient as usize].insert(key);
                    key
                };
                tracing::debug!(exchange = %x.name, delay_ms, due = key.due, transient, "message held");
                let (timer, in_flight) = (self.timer.clone(), in_flight.clone());
                let written: Completion = Box::new(move |result| {
                    lock(&in_flight).0[transient as usize].remove(&key);
                    timer.note_written(key.due);
                    if let Some(done) = done {
                        done(result);
                    }
                });
                storage.writer.submit(Op::PutDelayed { key: key.encode(), value, transient, done: Some(written) });
            }
            Backend::Memory { next_seq, held } => {
                let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                let extra_keys = extra_keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
                let entry = Held { vhost: vhost.clone(), exchange: x.name.clone(), extra_keys, message };
                let due = {
                    let mut h = lock(held);
                    let key = DelayKey { due: due_ms(clock_us(), delay_ms), seq };
                    h.insert(key, entry);
                    key.due
                };
                self.timer.note_written(due);
                if let Some(done) = done {
                    done(Ok(()));
                }
            }
        }
    }

    /// Messages held in memory (0 with a store: those are counted by the store).
    pub fn held_in_memory(&self) -> usize {
        match &self.backend {
            Backend::Memory { held, .. } => lock(held).len(),
            Backend::Store { .. } => 0,
        }
    }

    /// Takes up to a batch of messages due by now. `floors` are where the previous scans of the
    /// two column families ended. Returns the messages in due order, whether more may be due,
    /// and whether due messages were left behind a key still in the writer's queue (its
    /// completion wakes the timer).
    fn take_due(&self, floors: &mut [DelayKey; 2]) -> (Vec<Due>, bool, bool) {
        match &self.backend {
            Backend::Memory { held, .. } => {
                let mut h = lock(held);
                let now_ms = clock_us() / 1000;
                let mut out = Vec::new();
                while out.len() < BATCH {
                    let Some(entry) = h.first_entry() else { break };
                    if entry.key().due > now_ms {
                        break;
                    }
                    let (key, held) = entry.remove_entry();
                    out.push(Due {
                        key,
                        transient: true,
                        vhost: held.vhost,
                        exchange: held.exchange,
                        extra_keys: held.extra_keys,
                        message: held.message,
                    });
                }
                let more = out.len() == BATCH;
                (out, more, false)
            }
            Backend::Store { storage, in_flight, .. } => {
                // Up to now, and below every key still in the writer's queue.
                let (now_ms, limits) = {
                    let f = lock(in_flight);
                    (clock_us() / 1000, [f.0[0].first().copied(), f.0[1].first().copied()])
                };
                let mut entries: Vec<(DelayKey, bool, Bytes)> = Vec::new();
                let mut cutoff: Option<DelayKey> = None;
                let (mut more, mut blocked) = (false, false);
                for transient in [false, true] {
                    let t = transient as usize;
                    let got = match storage.store.due_delayed(transient, floors[t], now_ms, BATCH) {
                        Ok(got) => got,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read delayed messages from the store");
                            continue;
                        }
                    };
                    if got.len() == BATCH {
                        // Only what sorts before the end of this full read is known complete.
                        more = true;
                        let last = got[BATCH - 1].0;
                        cutoff = Some(cutoff.map_or(last, |c| c.min(last)));
                    }
                    let limit = limits[t];
                    let before = entries.len() + got.len();
                    entries.extend(
                        got.into_iter().filter(|(k, _)| limit.is_none_or(|l| *k < l)).map(|(k, v)| (k, transient, v)),
                    );
                    blocked |= entries.len() < before;
                }
                entries.sort_by_key(|(k, t, _)| (*k, *t));
                if let Some(c) = cutoff {
                    entries.retain(|(k, _, _)| *k <= c);
                }
                let mut out = Vec::with_capacity(entries.len());
                for (key, transient, value) in entries {
                    let floor = &mut floors[transient as usize];
                    *floor = (*floor).max(key.successor());
                    match decode_value(&value).and_then(|r| Some((messages::decode(&r.record)?, r))) {
                        Some((message, r)) => out.push(Due {
                            key,
                            transient,
                            vhost: r.vhost,
                            exchange: r.exchange,
                            extra_keys: r.extra_keys,
                            message,
                        }),
                        None => {
                            tracing::error!(
                                due = key.due,
                                seq = key.seq,
                                transient,
                                "unreadable delayed message dropped"
                            );
                            storage.writer.submit(Op::DeleteDelayed { key: key.encode(), transient });
                        }
                    }
                }
                (out, more, blocked)
            }
        }
    }

    /// The earliest due time (ms) at or after `floors`.
    fn next_due(&self, floors: &[DelayKey; 2]) -> Result<Option<u64>, crate::store::StoreError> {
        match &self.backend {
            Backend::Memory { held, .. } => Ok(lock(held).keys().next().map(|k| k.due)),
            Backend::Store { storage, .. } => {
                let durable_first = storage.store.first_delayed(false, floors[0])?;
                let transient_first = storage.store.first_delayed(true, floors[1])?;
                Ok(durable_first.into_iter().chain(transient_first).map(|k| k.due).min())
            }
        }
    }

    /// Routes a due message through its exchange, then forgets it.
    fn deliver(&self, due: Due) {
        let vhost = self.vhosts.get(&due.vhost).and_then(|v| v.upgrade());
        match vhost.as_ref().map(|v| (v, v.exchange(&due.exchange))) {
            Some((vhost, Ok(x))) => {
                let keys: Vec<&[u8]> = due.extra_keys.iter().map(|k| &k[..]).collect();
                // Published, as far as queues are concerned, now: their TTLs count from here.
                let mut message = due.message;
                message.timestamp_ms = crate::broker::timer::now_ms();
                let p = Publish { extra_keys: &keys, ..Publish::new(Arc::new(message)) };
                if vhost.publish(&x, &p).queues == 0 {
                    tracing::debug!(exchange = %due.exchange, "delayed message routed to no queue");
                }
            }
            _ => tracing::debug!(
                vhost = %due.vhost,
                exchange = %due.exchange,
                "delayed message dropped: its exchange no longer exists"
            ),
        }
        if let Backend::Store { storage, .. } = &self.backend {
            storage.writer.submit(Op::DeleteDelayed { key: due.key.encode(), transient: due.transient });
        }
    }

    /// Routes everything due; returns when the next message is due (ms), if any.
    fn fire_due(&self, floors: &mut [DelayKey; 2]) -> Result<Option<u64>, crate::store::StoreError> {
        loop {
            let (batch, more, blocked) = self.take_due(floors);
            let routed = batch.len();
            for due in batch {
                self.deliver(due);
            }
            if routed > 0 {
                tracing::debug!(routed, "delayed messages due");
            }
            if self.timer.lock().stop {
                return Ok(None);
            }
            if blocked && !more {
                // What is due now waits for a write still queued: its completion wakes the timer
                // (no spinning on it meanwhile); later messages are waited for as usual.
                let now_ms = clock_us() / 1000;
                return Ok(self.next_due(floors)?.filter(|due| *due > now_ms));
            }
            if !more {
                break;
            }
        }
        self.next_due(floors)
    }
}

/// The timer thread: route what is due, sleep until the next due time or until an earlier
/// message is written, again.
fn run(delays: Weak<Delays>, timer: Arc<Timer>) {
    let mut floors = [DelayKey::FIRST; 2];
    loop {
        {
            let mut st = timer.lock();
            if st.stop {
                return;
            }
            st.armed_us = 0;
            st.written_due = None;
        }
        let Some(d) = delays.upgrade() else { return };
        let next = match d.fire_due(&mut floors) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "cannot read delayed messages from the store; trying again");
                Some((clock_us() + RETRY_AFTER_ERROR.as_micros() as u64) / 1000)
            }
        };
        drop(d);
        let mut st = timer.lock();
        loop {
            if st.stop {
                return;
            }
            let armed =
                next.into_iter().chain(st.written_due).map(|ms| ms.saturating_mul(1000)).min().unwrap_or(u64::MAX);
            st.armed_us = armed;
            let now = clock_us();
            if armed <= now {
                break;
            }
            let wait = Duration::from_micros(armed - now).min(MAX_SLEEP);
            let (guard, timeout) = timer.wake.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner());
            st = guard;
            if timeout.timed_out() && wait == MAX_SLEEP {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests;
