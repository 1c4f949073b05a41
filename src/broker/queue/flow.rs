//! Publisher flow control, as RabbitMQ's credit flow has it in effect: a publisher may not run
//! ahead of the queues it feeds without limit. In Warren a publish is enqueued and delivered in
//! the publisher's own task, so the only way a backlog builds while consumers are ready for more
//! is that their connections cannot take it (their clients read slower than publishers write).
//! A queue in that state with more than [`FLOW_HIGH`] ready messages is "in flow": publishing
//! connections that fed it stop reading until it is back under [`FLOW_LOW`] (the gap keeps them
//! from flapping). The backlog, and with it the end-to-end latency, stays bounded, and the
//! publisher runs at the consumers' speed instead of filling memory.
//!
//! A backlog that builds because consumers are at their prefetch limit, or because there are
//! none, is what queues are for: it never triggers flow. Nor does a consumer whose client has
//! stopped reading altogether: flow holds publishers only while the consumers make progress
//! (took messages within [`STALL_MS`]); one stuck client must not stop everyone publishing to
//! its queue, so past that the backlog grows as it would without flow control.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::broker::timer::now_ms;

/// Ready messages above which a queue whose consumers' connections are full holds back its
/// publishers.
pub const FLOW_HIGH: usize = 4096;
/// ...and below which it lets them go again.
pub const FLOW_LOW: usize = 1024;
/// Consumers that took nothing for this long are stuck, not slow: their queue holds nobody back.
pub const STALL_MS: u64 = 500;

#[derive(Debug, Default)]
pub struct Flow {
    on: AtomicBool,
    /// When a delivery round last handed messages to congested consumers (ms since the epoch).
    progress_ms: AtomicU64,
    off: Notify,
}

impl Flow {
    /// Whether publishers to this queue should wait now.
    pub fn is_on(&self) -> bool {
        // The clock is read only while the flag is up: not on every publish.
        self.on.load(Ordering::Acquire) && now_ms().saturating_sub(self.progress_ms.load(Ordering::Relaxed)) < STALL_MS
    }

    /// After a delivery round (under the queue lock): `delivered` messages handed out,
    /// `congested` when it stopped because the consumers' connections were full, `ready` the
    /// backlog it left.
    pub(super) fn update(&self, delivered: usize, congested: bool, ready: usize) {
        if congested && delivered > 0 {
            self.progress_ms.store(now_ms(), Ordering::Relaxed);
        }
        let on = self.on.load(Ordering::Acquire);
        let next = congested && (ready >= FLOW_HIGH || (on && ready > FLOW_LOW));
        if next != on {
            if next {
                // Its consumers were taking messages until their connections filled up.
                self.progress_ms.store(now_ms(), Ordering::Relaxed);
            }
            self.on.store(next, Ordering::Release);
            if !next {
                self.off.notify_waiters();
            }
        }
    }

    /// Waits until the queue is out of flow, for at most `max`; true if it is.
    pub async fn wait_off(&self, max: Duration) -> bool {
        let off = self.off.notified();
        if !self.is_on() {
            return true;
        }
        let _ = tokio::time::timeout(max, off).await;
        !self.is_on()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_starts_above_the_high_mark_and_ends_below_the_low_one_only_when_congested() {
        let f = Flow::default();
        f.update(1, false, FLOW_HIGH * 10);
        assert!(!f.is_on(), "a backlog without congested consumers is not flow");
        f.update(1, true, FLOW_HIGH - 1);
        assert!(!f.is_on());
        f.update(1, true, FLOW_HIGH);
        assert!(f.is_on());
        f.update(0, true, FLOW_LOW + 1);
        assert!(f.is_on(), "between the marks it stays on");
        f.update(1, true, FLOW_LOW);
        assert!(!f.is_on());
        f.update(1, true, FLOW_HIGH);
        f.update(1, false, FLOW_HIGH);
        assert!(!f.is_on(), "consumers that take messages again end it");
    }

    #[test]
    fn consumers_that_stopped_taking_anything_hold_nobody_back() {
        let f = Flow::default();
        f.update(1, true, FLOW_HIGH);
        assert!(f.is_on());
        f.progress_ms.store(now_ms() - STALL_MS, Ordering::Relaxed);
        assert!(!f.is_on(), "no progress for STALL_MS: stuck, not slow");
        f.update(0, true, FLOW_HIGH * 2);
        assert!(!f.is_on(), "publishing more does not count as progress");
        f.update(3, true, FLOW_HIGH * 2);
        assert!(f.is_on(), "taking messages again does");
    }

    #[tokio::test]
    async fn a_waiting_publisher_is_woken_when_flow_ends() {
        let f = std::sync::Arc::new(Flow::default());
        f.update(1, true, FLOW_HIGH);
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.wait_off(Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        f.update(1, true, 0);
        assert!(tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap());
    }
}
