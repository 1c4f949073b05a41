//! Consumers of a queue: who is offered the next message (priority first, round-robin within
//! a priority, or only the single active consumer), and consumers coming and going.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::ready::Ready;
use super::{Queue, QueueArgs, QueueState, QueuedMessage};
use crate::broker::message::Message;
use crate::broker::timer::now_ms;
use crate::protocol::{FieldTable, ShortStr};

/// What a consumer's channel said to one offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Sent; the channel now tracks it (or it was no-ack).
    Taken,
    /// No credit (prefetch reached, or the channel is closing); try other consumers.
    Busy,
    /// The consumer's connection takes no more for now: its client reads slower than we
    /// deliver. Try other consumers; a backlog that builds this way holds back publishers
    /// ([`super::flow`]).
    Congested,
}

/// The channel side of a consumer: implemented by the server's channel.
pub trait ConsumerSink: Send + Sync {
    /// `args` are the queue's arguments as they apply now (the queue's lock is held).
    fn offer(&self, consumer: &Consumer, queue: &Arc<Queue>, args: &QueueArgs, message: &QueuedMessage) -> Offer;
    /// The queue went away (deleted): tell the client with `basic.cancel` if it can take it.
    fn cancelled_by_server(&self, consumer: &Consumer);
    /// Direct reply-to: deliver a reply to the consumer of `amq.rabbitmq.reply-to` (no queue,
    /// no ack). False if that channel is gone.
    fn deliver_reply(&self, consumer: &Consumer, message: &Arc<Message>) -> bool;
    /// The connection id and channel number the consumer lives on, for the management API
    /// (joined with the connection registry). `None` for a consumer outside any channel.
    fn channel_ref(&self) -> Option<(u64, u16)> {
        None
    }
}

pub struct Consumer {
    pub tag: ShortStr,
    pub no_ack: bool,
    pub exclusive: bool,
    /// `x-priority`; RabbitMQ takes any integer, 64-bit ones included.
    pub priority: i64,
    pub arguments: FieldTable,
    pub sink: Arc<dyn ConsumerSink>,
    /// Its connection was congested when last offered a message (and will wake the queue once
    /// drained, [`Queue::dispatch_after_drain`]): skipped without being asked until then, so a
    /// queue with a thousand stalled consumers does not ask each of them about every message.
    /// Written under the queue's lock; `false` for a new consumer.
    pub parked: AtomicBool,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("tag", &self.tag).field("priority", &self.priority).finish()
    }
}

/// Why adding a consumer was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ConsumeRefused {
    ExclusiveInUse,
    Deleted,
}

impl Queue {
    /// Offers ready messages to consumers until messages or credit run out.
    pub fn dispatch(self: &Arc<Self>) {
        if let Some(stream) = self.stream() {
            return stream.dispatch(self);
        }
        let mut dead = Vec::new();
        {
            let mut st = self.lock();
            self.expire(&mut st, now_ms(), &mut dead);
            self.deliver(&mut st);
        }
        self.send_dead_letters(dead);
    }

    /// Hands ready messages to consumers with credit; whether it stopped because their
    /// connections were full (the rest leaves as soon as they have written).
    pub(super) fn deliver(self: &Arc<Self>, st: &mut QueueState) -> bool {
        let (mut congested, mut delivered) = (false, 0);
        while !st.consumers.is_empty() && self.head_resident(st) {
            let Some(Ready::Resident(front)) = st.ready.front() else { break };
            if let Some(active) = &st.active {
                if active.parked.load(Ordering::Relaxed) {
                    congested = true;
                    break;
                }
                match active.sink.offer(active, self, &st.args, front) {
                    Offer::Taken => {}
                    Offer::Busy => break,
                    Offer::Congested => {
                        active.parked.store(true, Ordering::Relaxed);
                        congested = true;
                        break;
                    }
                }
                Self::pop_delivered(st);
                delivered += 1;
                continue;
            }
            match offer_by_priority(self, st, front) {
                Ok(skipped) => {
                    // The next message starts with the consumer after the one that took this one.
                    st.round_robin = st.round_robin.wrapping_add(skipped + 1);
                    Self::pop_delivered(st);
                    delivered += 1;
                }
                Err(any_congested) => {
                    congested = any_congested;
                    break;
                }
            }
        }
        self.flow.update(delivered, congested, st.ready.len());
        congested
    }

    /// A connection whose consumers were congested drained: they may take messages again. (All
    /// parked consumers are asked again; those still congested park again, registered anew.)
    pub fn dispatch_after_drain(self: &Arc<Self>) {
        for c in &self.lock().consumers {
            c.parked.store(false, Ordering::Relaxed);
        }
        self.dispatch();
    }

    /// Removes the head a consumer took, and counts the delivery.
    fn pop_delivered(st: &mut QueueState) {
        if let Some(m) = Self::pop_head(st) {
            st.counters.delivered += 1;
            st.counters.redelivered += u64::from(m.redelivered);
        }
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
            if exclusive_conflict || (consumer.exclusive && st.args.single_active_consumer) {
                return Err(ConsumeRefused::ExclusiveInUse);
            }
            if st.args.single_active_consumer && st.active.is_none() {
                st.active = Some(consumer.clone());
            }
            let at = st.consumers.partition_point(|c| c.priority >= consumer.priority);
            st.consumers.insert(at, consumer);
            st.ever_consumed = true;
            on_added();
            self.expire(&mut st, now_ms(), &mut dead);
            self.deliver(&mut st);
            self.mark_used(&mut st);
        }
        self.send_dead_letters(dead);
        Ok(())
    }

    /// Removes a consumer; true when this leaves an auto-delete queue to be deleted.
    pub fn remove_consumer(self: &Arc<Self>, tag: &ShortStr, sink: &Arc<dyn ConsumerSink>) -> bool {
        if let Some(stream) = self.stream() {
            stream.remove_consumer(tag, sink);
            return false; // streams are never auto-delete
        }
        let (last_gone, single_active) = {
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
            let last_gone = self.auto_delete && st.ever_consumed && st.consumers.is_empty() && !self.is_deleted();
            self.mark_used(&mut st); // x-expires counts from the last consumer leaving
            (last_gone, st.args.single_active_consumer)
        };
        if single_active {
            self.dispatch();
        }
        last_gone
    }
}

/// Offers `message` to the highest-priority consumers first, round-robin within a priority;
/// lower priorities only get it when every higher one is busy. Returns how many consumers of
/// the taker's priority were skipped before it took the message; when nobody took it, whether
/// any consumer's connection was congested.
fn offer_by_priority(queue: &Arc<Queue>, st: &QueueState, message: &QueuedMessage) -> Result<usize, bool> {
    let consumers = &st.consumers;
    let mut congested = false;
    let mut start = 0;
    while start < consumers.len() {
        let priority = consumers[start].priority;
        let end = start + consumers[start..].iter().take_while(|c| c.priority == priority).count();
        let len = end - start;
        for k in 0..len {
            let idx = start + (st.round_robin + k) % len;
            let c = &consumers[idx];
            if c.parked.load(Ordering::Relaxed) {
                congested = true;
                continue;
            }
            match c.sink.offer(c, queue, &st.args, message) {
                Offer::Taken => return Ok(k),
                Offer::Congested => {
                    c.parked.store(true, Ordering::Relaxed);
                    congested = true;
                }
                Offer::Busy => {}
            }
        }
        start = end;
    }
    Err(congested)
}
