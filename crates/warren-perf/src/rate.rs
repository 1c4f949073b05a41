//! A publish-rate limiter driven by a schedule: message `n` is due at `start + n / rate`.
//!
//! The producer asks how many messages are due now and sends them as one batch, or sleeps until
//! the next one is due. It catches up after a short stall (a batch of what was missed goes out
//! at once, as the schedule says), but never by more than [`RateLimiter::max_burst`] messages:
//! after a long stall the schedule moves forward instead of flooding the broker.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Messages per second; 0 = no limit.
    rate: u64,
    start: Instant,
    /// Messages sent against the schedule since `start`.
    sent: u64,
    max_burst: u64,
}

impl RateLimiter {
    pub fn new(rate: u64, start: Instant) -> RateLimiter {
        // A tenth of a second's worth, at least one message.
        let max_burst = rate.div_ceil(10).max(1);
        RateLimiter { rate, start, sent: 0, max_burst }
    }

    pub fn unlimited(&self) -> bool {
        self.rate == 0
    }

    #[cfg(test)]
    pub fn max_burst(&self) -> u64 {
        self.max_burst
    }

    /// How many messages may go out at `now` (`u64::MAX` without a limit).
    pub fn available(&mut self, now: Instant) -> u64 {
        if self.unlimited() {
            return u64::MAX;
        }
        // Message n (0-based) is due at n / rate, so floor(elapsed * rate) + 1 are due by now.
        // Integer nanoseconds keep the schedule exact.
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let due = (elapsed * u128::from(self.rate) / NANOS) as u64 + 1;
        let behind = due.saturating_sub(self.sent);
        if behind > self.max_burst {
            // Too far behind: forget the missed slots (move the schedule, not the count) rather
            // than send them all at once.
            self.start += Self::span(behind - self.max_burst, self.rate);
            return self.max_burst;
        }
        behind
    }

    /// Records `n` messages sent.
    pub fn take(&mut self, n: u64) {
        self.sent += n;
    }

    /// When the next message is due (`None` without a limit).
    pub fn next_due(&self) -> Option<Instant> {
        if self.unlimited() {
            return None;
        }
        Some(self.start + Self::span(self.sent, self.rate))
    }

    /// How long `n` messages take at `rate`, rounded up to the nanosecond.
    fn span(n: u64, rate: u64) -> Duration {
        let ns = (u128::from(n) * NANOS).div_ceil(u128::from(rate));
        Duration::from_nanos(ns.min(u128::from(u64::MAX)) as u64)
    }
}

const NANOS: u128 = 1_000_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unlimited_never_waits() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(0, t0);
        assert!(r.unlimited());
        assert_eq!(r.available(t0), u64::MAX);
        r.take(1_000_000);
        assert_eq!(r.next_due(), None);
    }

    #[test]
    fn follows_the_schedule() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1_000, t0);
        // The first message is due immediately, the next one a millisecond later.
        assert_eq!(r.available(t0), 1);
        r.take(1);
        assert_eq!(r.available(t0), 0);
        assert_eq!(r.next_due(), Some(t0 + ms(1)));
        // 10.5 ms in: messages 0..=10 are due, one of them went.
        assert_eq!(r.available(t0 + Duration::from_micros(10_500)), 10);
        r.take(10);
        assert_eq!(r.available(t0 + Duration::from_micros(10_500)), 0);
        assert_eq!(r.next_due(), Some(t0 + ms(11)));
    }

    #[test]
    fn a_long_stall_is_not_made_up_for_all_at_once() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(1_000, t0);
        assert_eq!(r.max_burst(), 100);
        let n = r.available(t0);
        r.take(n);
        // Five seconds without sending: 5,000 messages missed, only a burst's worth goes now.
        let later = t0 + Duration::from_secs(5);
        let n = r.available(later);
        assert_eq!(n, 100);
        r.take(n);
        assert_eq!(r.available(later), 0);
        // From there the normal schedule resumes: one more per millisecond.
        assert_eq!(r.available(later + ms(3)), 3);
    }

    #[test]
    fn slow_rates_have_a_burst_of_one() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, t0);
        assert_eq!(r.max_burst(), 1);
        let n = r.available(t0);
        r.take(n);
        assert_eq!(r.next_due(), Some(t0 + ms(500)));
        assert_eq!(r.available(t0 + ms(499)), 0);
        assert_eq!(r.available(t0 + Duration::from_secs(10)), 1);
    }
}
