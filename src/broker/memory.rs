//! The broker-wide budget for transient messages held in memory by queues.
//!
//! A persistent message in a durable queue is on disk anyway: beyond a short per-queue window
//! (`queue_memory_window`) a backlog of them keeps only their places in memory, and dropping a
//! body costs nothing. A transient message has to be *written* to be paged out and read back
//! to be delivered, which costs several times what delivering it from memory does; so
//! transient messages stay in memory until all queues together hold `transient_memory_limit`
//! bytes of them, and only then are new ones paged out. RabbitMQ, likewise, keeps transient
//! messages in memory until a share of its memory watermark and pages after that.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::message::Message;
use super::queue::QueuedMessage;
use crate::protocol::BasicProperties;

/// What holding one message in a queue costs besides its body: the message, its boxed
/// properties, its queue entry and the reference counts (an estimate: property values such as
/// headers add their own heap).
pub const MESSAGE_OVERHEAD: u64 = (std::mem::size_of::<Message>()
    + std::mem::size_of::<BasicProperties>()
    + std::mem::size_of::<QueuedMessage>()
    + 16) as u64;

/// A queue keeps this many transient messages in memory even when the budget is spent, so a
/// small queue does not page every message because a large one filled the budget.
pub const MIN_RESIDENT: usize = 256;

/// How much of a backlog the queues of a broker with a store keep in memory; the rest is paged
/// out to the store (only queues with a store page: without one everything stays in memory).
#[derive(Debug)]
pub struct Paging {
    /// Persistent message bodies a durable queue keeps in memory (`queue_memory_window`).
    pub window: usize,
    /// Transient message bytes all queues together keep in memory (`transient_memory_limit`).
    pub budget: Arc<MemoryBudget>,
}

impl Paging {
    pub fn new(window: usize, transient_limit: u64) -> Paging {
        Paging { window: window.max(1), budget: Arc::new(MemoryBudget::new(transient_limit)) }
    }
}

/// Bytes of transient messages held across all queues, against a limit.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget { limit, used: AtomicU64::new(0) }
    }

    /// Whether `cost` more bytes fit. Queues check and add without a lock between them, so the
    /// limit can be passed by what concurrent publishes add meanwhile: a few messages.
    pub fn has_room(&self, cost: u64) -> bool {
        self.used.load(Ordering::Relaxed).saturating_add(cost) <= self.limit
    }

    pub fn add(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn sub(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The bytes a message held in memory counts against the budget.
pub fn cost_of(msg: &Message) -> u64 {
    msg.body.len() as u64 + MESSAGE_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_until_the_limit() {
        let b = MemoryBudget::new(1000);
        assert!(b.has_room(1000));
        b.add(600);
        assert!(b.has_room(400));
        assert!(!b.has_room(401));
        b.sub(600);
        assert_eq!(b.used(), 0);
    }
}
