//! A queue's message lifecycle: TTLs (messages expire at the head; a timer wakes the queue when
//! its head is due), `x-expires` (an unused queue deletes itself), length limits, and whatever
//! dies on the way handed to dead-lettering once the queue lock is released.

use std::sync::{Arc, Weak};

use super::ready::Ready;
use super::{Queue, QueueState, QueuedMessage};
use crate::broker::dead_letter::{DeadLetter, DeathReason};
use crate::broker::timer::{now_ms, TimerTarget};

impl Queue {
    /// Removes the expired messages at the head of every priority level (RabbitMQ expires only
    /// at the head: a message behind a live one waits its turn), and arms the timer for the
    /// next deadline.
    pub(super) fn expire(self: &Arc<Self>, st: &mut QueueState, now: u64, dead: &mut Vec<DeadLetter>) {
        for level in 0..st.ready.levels() {
            while let Some(r) = st.ready.front_of(level) {
                if r.expires_at().is_none_or(|at| at > now) {
                    break;
                }
                if st.args.has_dlx() && matches!(r, Ready::Paged { .. }) {
                    self.page_in(st, level);
                    continue; // the body is needed for the dead letter
                }
                let Some(r) = st.ready.pop_front_of(level) else { break };
                self.kill(st.args.has_dlx(), r, DeathReason::Expired, dead);
            }
        }
        self.arm_timer(st, now);
    }

    /// When an unused queue with `x-expires` is due to go (never while it has consumers).
    pub(super) fn unused_deadline(&self, st: &QueueState) -> Option<u64> {
        let expires = st.args.expires?;
        // +1: `last_used` is rounded down to the millisecond; never delete early.
        st.consumers.is_empty().then(|| st.last_used.saturating_add(expires).saturating_add(1))
    }

    /// Marks the queue used (declare, `basic.get`, consumers coming or going): `x-expires`
    /// counts from here.
    pub fn touch(self: &Arc<Self>) {
        let mut st = self.lock();
        self.mark_used(&mut st);
    }

    /// [`touch`](Self::touch) for an operation that holds the queue lock already (its
    /// arguments are under it since they became replaceable: one lock, not two).
    pub(super) fn mark_used(self: &Arc<Self>, st: &mut QueueState) {
        if st.args.expires.is_none() {
            return;
        }
        let now = now_ms();
        st.last_used = now;
        self.arm_timer(st, now);
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
    pub(super) fn kill(&self, dlx: bool, r: Ready, reason: DeathReason, dead: &mut Vec<DeadLetter>) {
        match r {
            Ready::Resident(m) => self.kill_message(dlx, m, reason, dead),
            Ready::Paged { seq, persisted, size, .. } => {
                self.count_death(reason, false);
                self.forget_paged(seq, persisted, size)
            }
        }
    }

    pub(super) fn kill_message(&self, dlx: bool, m: QueuedMessage, reason: DeathReason, dead: &mut Vec<DeadLetter>) {
        self.forget(&m);
        self.count_death(reason, dlx);
        if dlx {
            dead.push(DeadLetter { msg: m.msg, reason });
        }
    }

    /// Counted in the broker's dead-letter totals, dead-lettered (`dlx`) or dropped.
    pub(super) fn count_death(&self, reason: DeathReason, dlx: bool) {
        if let Some(env) = &self.env {
            env.stats.dead_lettered(reason, dlx);
        }
    }

    /// Asks the timer to wake the queue when the earliest head expires, or when it is due to
    /// be deleted unused.
    pub(super) fn arm_timer(self: &Arc<Self>, st: &mut QueueState, now: u64) {
        let Some(env) = &self.env else { return };
        let heads = (0..st.ready.levels()).filter_map(|l| st.ready.front_of(l)?.expires_at()).min();
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
    pub(super) fn drop_over_limit(&self, st: &mut QueueState, dead: &mut Vec<DeadLetter>) {
        let over = |st: &QueueState| {
            st.args.max_length.is_some_and(|max| st.ready.len() as u64 > max)
                || st.args.max_length_bytes.is_some_and(|max| st.ready.bytes() > max)
        };
        while over(st) {
            let dlx = st.args.has_dlx();
            if dlx {
                self.head_resident(st);
            }
            let Some(r) = st.ready.pop_front() else { break };
            self.kill(dlx, r, DeathReason::Maxlen, dead);
        }
    }

    /// Whether one more message of `size` bytes would take the queue past its limits.
    pub(super) fn would_overflow(&self, st: &QueueState, size: u64) -> bool {
        st.args.max_length.is_some_and(|max| st.ready.len() as u64 + 1 > max)
            || st.args.max_length_bytes.is_some_and(|max| st.ready.bytes() + size > max)
    }

    /// Hands what died to the vhost's dead-letter routing (never under the queue lock: that
    /// publishes into other queues).
    pub(super) fn send_dead_letters(&self, dead: Vec<DeadLetter>) {
        if dead.is_empty() {
            return;
        }
        if let Some(vhost) = self.env.as_ref().and_then(|e| e.vhost.upgrade()) {
            vhost.dead_letter(self, dead);
        }
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
