//! Broker-wide counters over the process's life, for the Prometheus endpoint: RabbitMQ's global
//! counters (`rabbit_global_counters`) and churn totals, and Warren's own. A queue's
//! `message_stats` vanish with the queue; these do not, so they stay monotonic as Prometheus
//! requires.
//!
//! Each is a striped [`Counter`]: a per-message increment is an uncontended relaxed add on
//! the current thread's cache line, no lock.

use crate::broker::dead_letter::DeathReason;
use crate::counters::{Counter, Gauge, Histogram};

/// Upper bounds of the confirm latency histogram, in microseconds (100 µs to 10 s).
pub static CONFIRM_LATENCY_BOUNDS_US: [u64; 14] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 2_500_000, 10_000_000];

/// Whether a dead message went to a dead-letter exchange (`at_most_once`, as RabbitMQ labels a
/// classic queue's DLX) or was dropped (`disabled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterStrategy {
    Disabled,
    AtMostOnce,
}

impl DeadLetterStrategy {
    pub const ALL: [DeadLetterStrategy; 2] = [DeadLetterStrategy::Disabled, DeadLetterStrategy::AtMostOnce];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStrategy::Disabled => "disabled",
            DeadLetterStrategy::AtMostOnce => "at_most_once",
        }
    }
}

/// The reasons in the order [`BrokerStats::dead_lettered`] keeps them.
pub const DEATH_REASONS: [DeathReason; 4] =
    [DeathReason::Expired, DeathReason::Rejected, DeathReason::Maxlen, DeathReason::DeliveryLimit];

fn reason_index(r: DeathReason) -> usize {
    match r {
        DeathReason::Expired => 0,
        DeathReason::Rejected => 1,
        DeathReason::Maxlen => 2,
        DeathReason::DeliveryLimit => 3,
    }
}

pub struct BrokerStats {
    pub connections_opened: Counter,
    pub connections_closed: Counter,
    pub channels_opened: Counter,
    pub channels_closed: Counter,
    /// Every successful `queue.declare` (and API declare), new queue or not.
    pub queues_declared: Counter,
    pub queues_created: Counter,
    pub queues_deleted: Counter,
    /// `basic.publish`es received (RabbitMQ's `messages_received_total`).
    pub received: Counter,
    /// ... of them on channels in confirm mode.
    pub received_confirm: Counter,
    /// Publishes that reached at least one queue.
    pub routed: Counter,
    pub unroutable_dropped: Counter,
    pub unroutable_returned: Counter,
    /// Publisher confirms sent (`basic.ack` to the publisher, per message).
    pub confirmed: Counter,
    /// Publisher confirms that were `basic.nack`s (Warren's).
    pub confirm_nacked: Counter,
    pub delivered_consume_auto_ack: Counter,
    pub delivered_consume_manual_ack: Counter,
    pub delivered_get_auto_ack: Counter,
    pub delivered_get_manual_ack: Counter,
    pub get_empty: Counter,
    pub redelivered: Counter,
    pub acknowledged: Counter,
    /// Deliveries a consumer rejected or nacked, with and without requeue (Warren's).
    pub rejected_requeue: Counter,
    pub rejected_drop: Counter,
    /// Messages that died in a queue, by [`DEATH_REASONS`] order and strategy.
    dead_lettered: [[Counter; 2]; 4],
    /// Octets and frames read and octets written by every connection (RabbitMQ sums its open
    /// connections' counters, which drop when one closes; these never do).
    pub recv_oct: Counter,
    pub send_oct: Counter,
    pub recv_cnt: Counter,
    /// Channels that have published at least once and are still open.
    pub publishers: Gauge,
    /// Time from a publish to its confirm, in microseconds.
    pub confirm_latency_us: Histogram,
}

impl Default for BrokerStats {
    fn default() -> BrokerStats {
        BrokerStats {
            connections_opened: Counter::default(),
            connections_closed: Counter::default(),
            channels_opened: Counter::default(),
            channels_closed: Counter::default(),
            queues_declared: Counter::default(),
            queues_created: Counter::default(),
            queues_deleted: Counter::default(),
            received: Counter::default(),
            received_confirm: Counter::default(),
            routed: Counter::default(),
            unroutable_dropped: Counter::default(),
            unroutable_returned: Counter::default(),
            confirmed: Counter::default(),
            confirm_nacked: Counter::default(),
            delivered_consume_auto_ack: Counter::default(),
            delivered_consume_manual_ack: Counter::default(),
            delivered_get_auto_ack: Counter::default(),
            delivered_get_manual_ack: Counter::default(),
            get_empty: Counter::default(),
            redelivered: Counter::default(),
            acknowledged: Counter::default(),
            rejected_requeue: Counter::default(),
            rejected_drop: Counter::default(),
            dead_lettered: Default::default(),
            recv_oct: Counter::default(),
            send_oct: Counter::default(),
            recv_cnt: Counter::default(),
            publishers: Gauge::default(),
            confirm_latency_us: Histogram::new(&CONFIRM_LATENCY_BOUNDS_US),
        }
    }
}

impl BrokerStats {
    /// A message died in a queue: `dlx` says whether it goes to a dead-letter exchange.
    pub fn dead_lettered(&self, reason: DeathReason, dlx: bool) {
        self.dead_lettered[reason_index(reason)][usize::from(dlx)].inc();
    }

    pub fn dead_lettered_total(&self, reason: DeathReason, strategy: DeadLetterStrategy) -> u64 {
        let s = usize::from(strategy == DeadLetterStrategy::AtMostOnce);
        self.dead_lettered[reason_index(reason)][s].get()
    }

    /// Every delivery to a client, consumed or got (RabbitMQ's `messages_delivered_total`).
    pub fn delivered_total(&self) -> u64 {
        self.delivered_consume_auto_ack.get()
            + self.delivered_consume_manual_ack.get()
            + self.delivered_get_auto_ack.get()
            + self.delivered_get_manual_ack.get()
    }

    /// One delivery: by `basic.consume` or `basic.get`, with or without ack, redelivered or not.
    pub fn delivered(&self, get: bool, no_ack: bool, redelivered: bool) {
        match (get, no_ack) {
            (false, true) => self.delivered_consume_auto_ack.inc(),
            (false, false) => self.delivered_consume_manual_ack.inc(),
            (true, true) => self.delivered_get_auto_ack.inc(),
            (true, false) => self.delivered_get_manual_ack.inc(),
        }
        if redelivered {
            self.redelivered.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_kept_by_reason_and_strategy() {
        let s = BrokerStats::default();
        s.dead_lettered(DeathReason::Expired, true);
        s.dead_lettered(DeathReason::Expired, false);
        s.dead_lettered(DeathReason::Expired, false);
        assert_eq!(s.dead_lettered_total(DeathReason::Expired, DeadLetterStrategy::Disabled), 2);
        assert_eq!(s.dead_lettered_total(DeathReason::Expired, DeadLetterStrategy::AtMostOnce), 1);
        assert_eq!(s.dead_lettered_total(DeathReason::Maxlen, DeadLetterStrategy::Disabled), 0);
        s.delivered(true, false, true);
        s.delivered(false, true, false);
        assert_eq!((s.delivered_total(), s.redelivered.get()), (2, 1));
    }
}
