//! Back-pressure from the store writer to publishers: the bytes of messages handed to the
//! writer and not yet written. Publishers never wait for a write they did not ask a confirm for,
//! so without a bound a publisher faster than the disk (or one paging transient messages out
//! faster than they can be written) would fill memory with queued writes, each holding a copy
//! of its body. Above [`BACKLOG_HIGH`] queued bytes publishing connections stop reading until
//! the writer is back under [`BACKLOG_LOW`] — RabbitMQ's credit flow between channels and its
//! message store, by bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Queued bytes above which publishers are held back.
pub const BACKLOG_HIGH: u64 = 32 << 20;
/// ...and at or below which they go on.
pub const BACKLOG_LOW: u64 = 8 << 20;

#[derive(Debug, Default)]
pub struct Backlog {
    bytes: AtomicU64,
    held: AtomicBool,
    drained: Notify,
}

impl Backlog {
    /// `n` bytes were handed to the writer (called before they can be written, so the count
    /// never goes below zero).
    pub(super) fn queued(&self, n: u64) {
        if n > 0 && self.bytes.fetch_add(n, Ordering::AcqRel) + n > BACKLOG_HIGH {
            self.held.store(true, Ordering::Release);
        }
    }

    /// `n` queued bytes were written (or given up on).
    pub(super) fn written(&self, n: u64) {
        if n == 0 {
            return;
        }
        // A `queued` that raced past an earlier clear is undone here, at the next write after it.
        if self.bytes.fetch_sub(n, Ordering::AcqRel) - n <= BACKLOG_LOW && self.held.swap(false, Ordering::AcqRel) {
            self.drained.notify_waiters();
        }
    }

    /// Whether publishers should stop reading now.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Bytes handed to the writer and not written yet.
    pub fn queued_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Waits until publishers may go on.
    pub async fn wait_drained(&self) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if !self.is_held() {
                return;
            }
            drained.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn publishers_are_held_above_the_high_mark_until_the_low_one() {
        let b = Backlog::default();
        b.queued(BACKLOG_HIGH);
        assert!(!b.is_held(), "at the mark is not above it");
        b.queued(1);
        assert!(b.is_held());
        b.written(BACKLOG_HIGH - BACKLOG_LOW);
        assert!(b.is_held(), "between the marks it stays held");
        b.written(1);
        assert!(!b.is_held());
        assert_eq!(b.queued_bytes(), BACKLOG_LOW);
    }

    #[tokio::test]
    async fn a_held_publisher_is_woken_when_the_writer_catches_up() {
        let b = Arc::new(Backlog::default());
        b.queued(BACKLOG_HIGH + 1);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait_drained().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        b.written(BACKLOG_HIGH + 1);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
    }
}
