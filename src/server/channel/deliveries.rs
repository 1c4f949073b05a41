//! The half of a channel that queues deliver through, from any task: delivery tags, unacked
//! deliveries, consumers' credit (prefetch) and ack deadlines (consumer timeouts); and the
//! channel's side of acks, nacks, rejects and recover, which settle deliveries back on their
//! queues.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::tx::TxOp;
use super::{Channel, Settle};
use crate::broker::connections::{ChannelSnapshot, ChannelView};
use crate::broker::errors;
use crate::broker::message::Message;
use crate::broker::queue::{Consumer, ConsumerSink, Offer, Queue, QueueArgs, QueuedMessage};
use crate::broker::NameHasher;
use crate::protocol::methods::*;
use crate::protocol::{encode_content, AmqpError, Method, ShortStr};
use crate::server::confirms::Confirms;
use crate::server::session::Session;

/// A message delivered and not yet acknowledged.
pub(super) struct Unacked {
    pub(super) tag: u64,
    pub(super) queue: Arc<Queue>,
    pub(super) message: QueuedMessage,
    pub(super) consumer_tag: Option<ShortStr>,
    /// When the client must have acked it (ms since the UNIX epoch), and the timeout that gave.
    pub(super) deadline: u64,
    pub(super) timeout: u64,
}

pub(super) struct ConsumerEntry {
    pub(super) queue: Arc<Queue>,
    pub(super) consumer: Arc<Consumer>,
    pub(super) prefetch: u16,
    pub(super) unacked: u32,
}

#[derive(Default)]
pub(super) struct DeliveryState {
    pub(super) open: bool,
    pub(super) next_tag: u64,
    pub(super) unacked: VecDeque<Unacked>,
    /// `basic.qos global=true`: a limit shared by all consumers of the channel.
    pub(super) global_prefetch: u16,
    /// By tag, looked up at every delivery and ack: a cheap hasher for short names.
    pub(super) consumers: HashMap<ShortStr, ConsumerEntry, NameHasher>,
    /// The direct reply-to consumer: its key in reply addresses and its consumer tag.
    pub(super) reply_consumer: Option<(ShortStr, ShortStr)>,
}

/// The half of a channel that queues deliver through (any task may call it).
pub struct ChannelShared {
    pub id: u16,
    pub session: Arc<Session>,
    pub(super) state: Mutex<DeliveryState>,
    /// Publisher confirms; the store writer settles them from its thread.
    pub confirms: Confirms,
    /// The earliest ack deadline of an unacked delivery (`u64::MAX`: none). Read without the
    /// lock by the connection, which wakes up then to enforce consumer timeouts.
    pub(super) ack_deadline: std::sync::atomic::AtomicU64,
    /// `basic.qos global=false`: the limit for consumers started after it. Written by the read
    /// loop; an atomic so that the connection registry can read it.
    pub(super) consumer_prefetch: AtomicU16,
    /// `tx.select` was seen (for the connection registry; the transaction itself is the
    /// channel's).
    pub(super) transactional: AtomicBool,
}

impl ChannelShared {
    pub(super) fn lock(&self) -> MutexGuard<'_, DeliveryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn has_credit(d: &DeliveryState, consumer_tag: &ShortStr) -> bool {
        if d.global_prefetch > 0 && d.unacked.len() >= d.global_prefetch as usize {
            return false;
        }
        match d.consumers.get(consumer_tag) {
            Some(c) => c.prefetch == 0 || c.unacked < c.prefetch as u32,
            None => false,
        }
    }
}

impl ChannelShared {
    /// The ack deadline of a delivery from `queue` made now (its `x-consumer-timeout`, or the
    /// broker's `consumer_timeout`), noted as the channel's earliest if it is.
    pub(super) fn ack_deadline_for(&self, args: &QueueArgs) -> (u64, u64) {
        let timeout = args.consumer_timeout.unwrap_or(self.session.broker.limits.consumer_timeout_ms);
        if timeout == 0 {
            return (u64::MAX, 0);
        }
        let deadline = crate::broker::timer::now_ms().saturating_add(timeout);
        self.ack_deadline.fetch_min(deadline, std::sync::atomic::Ordering::Relaxed);
        (deadline, timeout)
    }

    /// The record of a delivery awaiting its ack: one more delivery of the message, and the
    /// deadline its ack must meet.
    pub(super) fn unacked(
        &self,
        tag: u64,
        queue: Arc<Queue>,
        args: &QueueArgs,
        mut message: QueuedMessage,
        consumer_tag: Option<ShortStr>,
    ) -> Unacked {
        message.deliveries += 1;
        let (deadline, timeout) = self.ack_deadline_for(args);
        Unacked { tag, queue, message, consumer_tag, deadline, timeout }
    }

    /// The earliest ack deadline among unacked deliveries, if any.
    pub fn ack_deadline(&self) -> Option<u64> {
        let d = self.ack_deadline.load(std::sync::atomic::Ordering::Relaxed);
        (d != u64::MAX).then_some(d)
    }

    /// Checks the unacked deliveries against their deadlines: the error to close the channel
    /// with if one has passed (RabbitMQ's consumer timeout), and the earliest deadline kept.
    pub fn check_ack_timeouts(&self, now: u64) -> Option<AmqpError> {
        let d = self.lock();
        let late = d.unacked.iter().find(|u| u.deadline <= now);
        let earliest = d.unacked.iter().map(|u| u.deadline).min().unwrap_or(u64::MAX);
        self.ack_deadline.store(earliest, std::sync::atomic::Ordering::Relaxed);
        late.map(|u| errors::ack_timeout(self.id, u.timeout))
    }
}

impl ChannelView for ChannelShared {
    /// Taken under the delivery lock alone, then the confirm tracker's alone (never both).
    fn snapshot(&self) -> ChannelSnapshot {
        let (global_prefetch_count, consumer_count, messages_unacknowledged, messages_delivered) = {
            let d = self.lock();
            (d.global_prefetch, d.consumers.len(), d.unacked.len(), d.next_tag)
        };
        ChannelSnapshot {
            number: self.id,
            connection: self.session.id,
            prefetch_count: self.consumer_prefetch.load(Ordering::Relaxed),
            global_prefetch_count,
            consumer_count,
            messages_unacknowledged,
            confirm: self.confirms.is_enabled(),
            transactional: self.transactional.load(Ordering::Relaxed),
            messages_delivered,
        }
    }
}

impl ConsumerSink for ChannelShared {
    fn channel_ref(&self) -> Option<(u64, u16)> {
        Some((self.session.id, self.id))
    }

    fn offer(&self, consumer: &Consumer, queue: &Arc<Queue>, args: &QueueArgs, message: &QueuedMessage) -> Offer {
        let out = &self.session.outbound;
        if out.is_congested() {
            // Register before re-checking, so a drain in between cannot be missed.
            out.wake_when_drained(queue);
            if out.is_congested() {
                return Offer::Congested;
            }
        }
        let mut d = self.lock();
        if !d.open || !d.consumers.contains_key(&consumer.tag) {
            return Offer::Busy;
        }
        if !consumer.no_ack && !Self::has_credit(&d, &consumer.tag) {
            return Offer::Busy;
        }
        d.next_tag += 1;
        let tag = d.next_tag;
        let m = &message.msg;
        let deliver = Method::BasicDeliver(BasicDeliver {
            consumer_tag: consumer.tag.clone(),
            delivery_tag: tag,
            redelivered: message.redelivered,
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
        });
        let frame_max = self.session.frame_max;
        // Encoded under the channel lock so delivery tags reach the socket in order.
        let counted = args.delivery_properties(message, false);
        let properties = counted.as_ref().unwrap_or(&m.properties);
        out.write(|buf| encode_content(buf, self.id, &deliver, properties, &m.body, frame_max));
        if consumer.no_ack {
            queue.forget(message);
        } else {
            queue.delivered(message);
            if let Some(c) = d.consumers.get_mut(&consumer.tag) {
                c.unacked += 1;
            }
            let unacked = self.unacked(tag, queue.clone(), args, message.clone(), Some(consumer.tag.clone()));
            d.unacked.push_back(unacked);
        }
        self.session.broker.stats().delivered(false, consumer.no_ack, message.redelivered);
        Offer::Taken
    }

    fn deliver_reply(&self, consumer: &Consumer, m: &Arc<Message>) -> bool {
        let mut d = self.lock();
        if !d.open {
            return false;
        }
        d.next_tag += 1;
        let deliver = Method::BasicDeliver(BasicDeliver {
            consumer_tag: consumer.tag.clone(),
            delivery_tag: d.next_tag,
            redelivered: false,
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
        });
        let frame_max = self.session.frame_max;
        self.session.outbound.write(|buf| encode_content(buf, self.id, &deliver, &m.properties, &m.body, frame_max));
        true
    }

    fn cancelled_by_server(&self, consumer: &Consumer) {
        let removed = self.lock().consumers.remove(&consumer.tag).is_some();
        if removed && self.session.capabilities.consumer_cancel_notify {
            let cancel = Method::BasicCancel(BasicCancel { consumer_tag: consumer.tag.clone(), no_wait: true });
            self.session.outbound.send_method(self.id, &cancel);
        }
    }
}

impl Channel {
    pub(super) fn settle_or_defer(&mut self, op: Settle) -> Result<(), AmqpError> {
        // Validate now (RabbitMQ rejects an unknown tag at once, even in a transaction).
        let all_outstanding = op.multiple && op.tag == 0;
        if !all_outstanding && !self.shared.lock().unacked.iter().any(|u| u.tag == op.tag) {
            return Err(errors::unknown_delivery_tag(op.tag));
        }
        if let Some(ops) = self.tx.as_mut() {
            ops.push(TxOp::Settle(op));
            return Ok(());
        }
        self.apply_settle(op)
    }

    pub(super) fn apply_settle(&mut self, op: Settle) -> Result<(), AmqpError> {
        let taken = self.take_unacked(op.tag, op.multiple)?;
        let stats = self.shared.session.broker.stats();
        let counter = match op.requeue {
            None => &stats.acknowledged,
            Some(true) => &stats.rejected_requeue,
            Some(false) => &stats.rejected_drop,
        };
        counter.add(taken.len() as u64);
        self.settle(taken, op.requeue);
        Ok(())
    }

    /// Removes the acknowledged deliveries (`tag`, or all up to it with `multiple`; tag 0 with
    /// `multiple` means all) and returns their consumers' credit.
    pub(super) fn take_unacked(&self, tag: u64, multiple: bool) -> Result<Vec<Unacked>, AmqpError> {
        let mut d = self.shared.lock();
        let taken: Vec<Unacked> = if multiple {
            if tag != 0 && !d.unacked.iter().any(|u| u.tag == tag) {
                return Err(errors::unknown_delivery_tag(tag));
            }
            let n = if tag == 0 { d.unacked.len() } else { d.unacked.partition_point(|u| u.tag <= tag) };
            d.unacked.drain(..n).collect()
        } else {
            match d.unacked.iter().position(|u| u.tag == tag) {
                Some(at) => d.unacked.remove(at).into_iter().collect(),
                None => return Err(errors::unknown_delivery_tag(tag)),
            }
        };
        for u in &taken {
            if let Some(c) = u.consumer_tag.as_ref().and_then(|t| d.consumers.get_mut(t)) {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        Ok(taken)
    }

    /// Requeues (or drops) settled deliveries and lets their queues deliver again now that
    /// credit is back.
    /// `requeue`: `None` for an ack, `Some(true)` to put them back, `Some(false)` for a
    /// rejection (dead-lettered where the queue says so).
    pub(super) fn settle(&self, taken: Vec<Unacked>, requeue: Option<bool>) {
        if requeue.is_none() {
            track_stream_offsets(&taken);
        }
        let rejected = requeue == Some(false);
        let requeue = requeue == Some(true);
        let mut by_queue: Vec<(Arc<Queue>, Vec<QueuedMessage>)> = Vec::new();
        for u in taken {
            match by_queue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
                Some((_, msgs)) => msgs.push(u.message),
                None => by_queue.push((u.queue, vec![u.message])),
            }
        }
        let shared_credit = self.shared.lock().global_prefetch > 0;
        for (q, msgs) in &mut by_queue {
            q.settled(msgs.len());
            if requeue {
                q.requeue(std::mem::take(msgs));
            } else if rejected {
                q.reject(std::mem::take(msgs));
            } else {
                q.acked(msgs.len());
                msgs.iter().for_each(|m| q.forget(m));
                q.dispatch();
            }
        }
        // A channel-wide limit (`global=true`) frees credit for every consumer of the channel,
        // not only those of the queues the settled messages came from.
        if shared_credit {
            for q in self.consumer_queues() {
                if !by_queue.iter().any(|(done, _)| Arc::ptr_eq(done, &q)) {
                    q.dispatch();
                }
            }
        }
    }

    pub(super) fn recover(&mut self, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let taken = self.take_unacked(0, true)?;
        self.settle(taken, Some(true));
        Ok(())
    }
}

/// Acked stream deliveries: each consumer's highest acked offset goes to its stream, which
/// keeps it for consumers that asked for offset tracking.
fn track_stream_offsets(taken: &[Unacked]) {
    let mut highest: Vec<(&Arc<Queue>, &ShortStr, u64)> = Vec::new();
    for u in taken.iter().filter(|u| u.queue.is_stream()) {
        let Some(tag) = &u.consumer_tag else { continue };
        match highest.iter_mut().find(|(q, t, _)| Arc::ptr_eq(q, &u.queue) && *t == tag) {
            Some((_, _, offset)) => *offset = (*offset).max(u.message.seq),
            None => highest.push((&u.queue, tag, u.message.seq)),
        }
    }
    for (q, tag, offset) in highest {
        if let Some(stream) = q.stream() {
            stream.acked(tag, offset);
        }
    }
}
