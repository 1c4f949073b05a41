//! The one way a message enters the broker's queues, whoever publishes it: a channel's
//! `basic.publish` (and a transaction's commit), a dead letter, a delayed message that is due,
//! and next the management API's "publish message".
//!
//! [`VHost::publish`] routes the message (side-effect free, [`VHost::route`]), hands it to the
//! delayed exchanges that hold it, delivers a direct reply-to, and enqueues it in each queue it
//! reached. Each queue decides whether the message is persisted there (a persistent message
//! in a durable queue) and submits the write itself; the record is encoded once for all of
//! them. Whoever waits for the publish to be safe — a publisher confirm, a transaction's
//! commit-ok — passes a [`PublishOutcome`], which every write it needs takes a completion from.
//! The channel keeps only what is the channel's: confirm sequence numbers, `mandatory`
//! returns and transactions.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::exchange::Exchange;
use super::message::Message;
use super::queue::{Derived, Enqueued, Queue};
use super::reply_to::REPLY_TO_PREFIX;
use super::vhost::VHost;
use crate::store::writer::Completion;

/// A message on its way in.
pub struct Publish<'a> {
    pub message: Arc<Message>,
    /// Further routing keys (sender-selected distribution's `CC`/`BCC`).
    pub extra_keys: &'a [&'a [u8]],
    /// Who waits for the message's writes (a publisher confirm, a transaction); `None`: nobody.
    pub outcome: Option<&'a Arc<PublishOutcome>>,
    /// Queues that must not take it although routing leads there (a dead letter that would
    /// go round a cycle).
    pub refuse: Option<&'a dyn Fn(&Queue) -> bool>,
}

impl<'a> Publish<'a> {
    /// A message published with no further keys, nobody waiting, no queue refused.
    pub fn new(message: Arc<Message>) -> Publish<'a> {
        Publish { message, extra_keys: &[], outcome: None, refuse: None }
    }
}

/// What became of a publish.
#[derive(Clone, Default)]
pub struct Published {
    /// Queues it was routed to (whether or not each took it: a full queue may refuse it).
    pub queues: usize,
    /// Delayed exchanges that hold it, to route when it is due.
    pub held: usize,
    /// Delivered to a direct reply-to consumer.
    pub replied: bool,
    /// A queue it went to whose consumers cannot keep up: the publisher should wait for it
    /// (see `queue::flow`).
    pub flow: Option<Arc<Queue>>,
}

impl Published {
    /// Nothing took it now: a `mandatory` publish is returned (`312 NO_ROUTE`). A message held
    /// by a delayed exchange counts, as with RabbitMQ's plugin.
    pub fn unroutable(&self) -> bool {
        self.queues == 0 && !self.replied
    }
}

impl VHost {
    /// Routes `p.message` from `exchange` and puts it wherever it goes (see the module doc).
    /// Borrowed, so a caller that needs the message afterwards (a `mandatory` return) keeps its
    /// handle without another reference count per publish.
    pub fn publish(&self, exchange: &Arc<Exchange>, p: &Publish<'_>) -> Published {
        let route = self.route(exchange, &p.message, p.extra_keys);
        for (x, delay) in &route.delayed {
            self.env.delays.hold(&self.name, x, &p.message, p.extra_keys, *delay, p.outcome.map(|o| o.completion()));
        }
        let replied = exchange.name.is_empty()
            && p.message.routing_key.as_bytes().starts_with(REPLY_TO_PREFIX.as_bytes())
            && self.env.replies.deliver(&p.message.routing_key, &p.message);
        // Encoded (and copied, if it waits) once, however many queues it goes to.
        let mut derived = Derived::default();
        let mut flow = None;
        for q in &route.queues {
            if p.refuse.is_some_and(|refuse| refuse(q)) {
                continue;
            }
            if q.publish(p.message.clone(), p.outcome, &mut derived) == Enqueued::Rejected {
                // A full queue refused it (x-overflow reject-publish): the publisher is nacked,
                // though other queues may have taken it.
                if let Some(o) = p.outcome {
                    o.fail();
                }
            }
            if flow.is_none() && q.flow.is_on() {
                flow = Some(q.clone());
            }
        }
        Published { queues: route.queues.len(), held: route.delayed.len(), replied, flow }
    }
}

/// Called once with (every write succeeded, called from the store writer's thread).
type OnDone = Box<dyn FnOnce(bool, bool) + Send>;

/// Counts the outstanding durable writes of a publish (or of a transaction's publishes) and
/// runs `on_done(all_ok, from_writer)` when the last one finishes. Starts with one hold for its
/// creator, released by [`PublishOutcome::release`] once every write has been handed out, so it
/// cannot fire early.
pub struct PublishOutcome {
    remaining: AtomicUsize,
    failed: AtomicBool,
    /// Taken once by whoever finishes last, and run after this lock is released.
    on_done: Mutex<Option<OnDone>>,
}

impl PublishOutcome {
    pub fn new(on_done: impl FnOnce(bool, bool) + Send + 'static) -> Arc<PublishOutcome> {
        Arc::new(PublishOutcome {
            remaining: AtomicUsize::new(1),
            failed: AtomicBool::new(false),
            on_done: Mutex::new(Some(Box::new(on_done))),
        })
    }

    /// A completion for one more write.
    pub fn completion(self: &Arc<Self>) -> Completion {
        self.remaining.fetch_add(1, Ordering::AcqRel);
        let me = self.clone();
        Box::new(move |result| {
            if result.is_err() {
                me.failed.store(true, Ordering::Release);
            }
            me.finish_one(true);
        })
    }

    /// The publish failed somewhere without a write (a full queue refused it): it ends nacked.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// The creator's hold: call once after handing out every completion.
    pub fn release(&self) {
        self.finish_one(false);
    }

    fn finish_one(&self, from_writer: bool) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let done = self.on_done.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(done) = done {
                done(!self.failed.load(Ordering::Acquire), from_writer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_fires_once_after_the_creator_releases() {
        let fired = Arc::new(Mutex::new(Vec::new()));
        let f = fired.clone();
        let c = PublishOutcome::new(move |ok, from_writer| f.lock().unwrap().push((ok, from_writer)));
        let (w1, w2) = (c.completion(), c.completion());
        w1(Ok(()));
        c.release();
        assert!(fired.lock().unwrap().is_empty());
        w2(Err("disk full".into()));
        assert_eq!(*fired.lock().unwrap(), vec![(false, true)]);
        let f = fired.clone();
        let quick = PublishOutcome::new(move |ok, from_writer| f.lock().unwrap().push((ok, from_writer)));
        quick.release();
        assert_eq!(fired.lock().unwrap()[1], (true, false), "no writes: done at release");
        let f = fired.clone();
        let refused = PublishOutcome::new(move |ok, from_writer| f.lock().unwrap().push((ok, from_writer)));
        refused.fail();
        refused.release();
        assert_eq!(fired.lock().unwrap()[2], (false, false), "a refusal without a write nacks");
    }
}
