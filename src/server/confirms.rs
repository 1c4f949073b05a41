//! Publisher confirms: the channel's sequence numbers and the acks and nacks owed for them.
//! (What waits for a publish's writes is the broker's `PublishOutcome`; its completion settles
//! a sequence number here.)
//!
//! A publish is confirmed when every durable queue it reached has its write synced; transient
//! ones are ready at once. Confirms go out in order: `basic.ack` with `multiple` covers the
//! longest run of settled publishes at the front, a failed write gets its own `basic.nack`, and
//! nothing behind a publish still waiting for the disk is confirmed before it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::protocol::methods::{BasicAck, BasicNack};
use crate::protocol::Method;
use crate::server::outbound::Outbound;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Waiting,
    Written,
    Failed,
}

/// Sequence numbers of a channel in confirm mode, from 1.
pub struct ConfirmTracker {
    next_seq: u64,
    pending: VecDeque<(u64, Outcome)>,
}

impl Default for ConfirmTracker {
    fn default() -> Self {
        ConfirmTracker { next_seq: 1, pending: VecDeque::new() }
    }
}

impl ConfirmTracker {
    pub fn register(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, Outcome::Waiting));
        seq
    }

    pub fn settle(&mut self, seq: u64, ok: bool) {
        let Some(&(front, _)) = self.pending.front() else { return };
        if let Some(slot) = seq.checked_sub(front).and_then(|i| self.pending.get_mut(i as usize)) {
            slot.1 = if ok { Outcome::Written } else { Outcome::Failed };
        }
    }

    /// The confirms that can go out now, in order.
    pub fn take_ready(&mut self) -> Vec<Method> {
        let mut out = Vec::new();
        let mut run: Option<(u64, u64)> = None; // (last acked seq, how many)
        while let Some(&(seq, outcome)) = self.pending.front() {
            match outcome {
                Outcome::Waiting => break,
                Outcome::Written => run = Some((seq, run.map_or(1, |(_, n)| n + 1))),
                Outcome::Failed => {
                    if let Some((last, n)) = run.take() {
                        out.push(Method::BasicAck(BasicAck { delivery_tag: last, multiple: n > 1 }));
                    }
                    out.push(Method::BasicNack(BasicNack { delivery_tag: seq, multiple: false, requeue: false }));
                }
            }
            self.pending.pop_front();
        }
        if let Some((last, n)) = run {
            out.push(Method::BasicAck(BasicAck { delivery_tag: last, multiple: n > 1 }));
        }
        out
    }
}

/// The confirm side of a channel, shared with the store writer's completions.
pub struct Confirms {
    pub channel: u16,
    pub outbound: Arc<Outbound>,
    tracker: Mutex<Option<ConfirmTracker>>,
}

impl Confirms {
    pub fn new(channel: u16, outbound: Arc<Outbound>) -> Confirms {
        Confirms { channel, outbound, tracker: Mutex::new(None) }
    }

    pub fn enable(&self) {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(ConfirmTracker::default);
    }

    pub fn is_enabled(&self) -> bool {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    pub fn register(&self) -> Option<u64> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner()).as_mut().map(ConfirmTracker::register)
    }

    pub fn settle(&self, seq: u64, ok: bool) {
        if let Some(t) = self.tracker.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            t.settle(seq, ok);
        }
    }

    /// Sends what is ready; the lock is held while encoding so confirms leave in order.
    /// Returns whether publishes are still waiting for their confirms (for the disk).
    pub fn flush(&self) -> bool {
        self.flush_with(false)
    }

    /// [`Confirms::flush`] from a store write's completion (see [`Outbound::write_completing`]).
    pub fn flush_completing(&self) {
        self.flush_with(true);
    }

    fn flush_with(&self, completing: bool) -> bool {
        let mut tracker = self.tracker.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = tracker.as_mut() else { return false };
        let ready = t.take_ready();
        let waiting = !t.pending.is_empty();
        if ready.is_empty() {
            return waiting;
        }
        let encode = |buf: &mut bytes::BytesMut| {
            for m in &ready {
                crate::protocol::encode_method(buf, self.channel, m);
            }
        };
        if completing {
            self.outbound.write_completing(encode);
        } else {
            self.outbound.write(encode);
        }
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(ms: Vec<Method>) -> Vec<(char, u64, bool)> {
        ms.into_iter()
            .map(|m| match m {
                Method::BasicAck(a) => ('a', a.delivery_tag, a.multiple),
                Method::BasicNack(n) => ('n', n.delivery_tag, n.multiple),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn acks_cover_the_settled_prefix_only() {
        let mut t = ConfirmTracker::default();
        let (a, b, c, d) = (t.register(), t.register(), t.register(), t.register());
        t.settle(a, true);
        t.settle(c, true);
        assert_eq!(tags(t.take_ready()), vec![('a', 1, false)], "2 is still waiting for the disk");
        t.settle(b, true);
        assert_eq!(tags(t.take_ready()), vec![('a', 3, true)]);
        t.settle(d, false);
        let e = t.register();
        t.settle(e, true);
        assert_eq!(tags(t.take_ready()), vec![('n', 4, false), ('a', 5, false)]);
        assert!(t.take_ready().is_empty());
    }
}
