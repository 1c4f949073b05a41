//! Latency histograms and the per-connection counters the reporter reads.
//!
//! [`Histogram`] is log-linear: values below 128 ns get a bucket each, above that every power of
//! two is split into 64 buckets, so any recorded value is known to within 1/64 (1.6 %) and the
//! whole range of `u64` nanoseconds fits in 3,776 counters. Recording is an index computation and
//! an increment: no allocation, no floating point. Percentiles report the upper bound of the
//! bucket (never below the true value), clamped to the exact maximum.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Sub-buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this have a bucket of their own.
const LINEAR: u64 = 2 * SUB;
const BUCKETS: usize = (LINEAR + (63 - SUB_BITS as u64) * SUB) as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("count", &self.count).field("min", &self.min).field("max", &self.max).finish()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS + 1
    let shift = exp - SUB_BITS;
    let mantissa = v >> shift; // in [SUB, 2 * SUB)
    (LINEAR + u64::from(shift - 1) * SUB + (mantissa - SUB)) as usize
}

/// The largest value that falls into bucket `i`.
fn bucket_upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = (i - LINEAR) / SUB + 1;
    let mantissa = (i - LINEAR) % SUB + SUB;
    // The top bucket's bound overflows u64 by one; saturate.
    (((mantissa + 1) as u128) << shift).saturating_sub(1).min(u64::MAX as u128) as u64
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram { counts: vec![0; BUCKETS].into_boxed_slice(), count: 0, sum: 0, min: u64::MAX, max: 0 }
    }

    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.count += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn max(&self) -> Option<u64> {
        (self.count > 0).then_some(self.max)
    }

    pub fn min(&self) -> Option<u64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The value at quantile `q` (0.0..=1.0): the smallest recorded value's bucket bound such
    /// that at least `q` of all values are at or below it. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_upper(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn clear(&mut self) {
        if self.count == 0 {
            return;
        }
        self.counts.fill(0);
        self.count = 0;
        self.sum = 0;
        self.min = u64::MAX;
        self.max = 0;
    }
}

/// Latencies a connection recorded since the reporter last collected them.
#[derive(Default)]
pub struct Latencies {
    pub confirm: Histogram,
    pub e2e: Histogram,
    /// Delayed messages: receive time − (send time + delay); early ones count 0 here.
    pub lateness: Histogram,
    /// Delayed messages received before their delay was over.
    pub early: u64,
    /// How early the earliest of them was (ns).
    pub early_max: u64,
}

impl Latencies {
    /// Adds `other`'s figures to these.
    pub fn merge(&mut self, other: &Latencies) {
        self.confirm.merge(&other.confirm);
        self.e2e.merge(&other.e2e);
        self.lateness.merge(&other.lateness);
        self.early += other.early;
        self.early_max = self.early_max.max(other.early_max);
    }

    pub fn clear(&mut self) {
        self.confirm.clear();
        self.e2e.clear();
        self.lateness.clear();
        self.early = 0;
        self.early_max = 0;
    }
}

/// One connection's counters. Connections add once per batch; the reporter reads them once a
/// second and takes the latencies out of the mutex (which is therefore almost never contended).
#[derive(Default)]
pub struct ConnStats {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub received: AtomicU64,
    pub latencies: Mutex<Latencies>,
}

impl ConnStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn latencies(&self) -> std::sync::MutexGuard<'_, Latencies> {
        self.latencies.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Totals over all connections at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    pub received: u64,
}

impl Counts {
    pub fn read<'a>(stats: impl IntoIterator<Item = &'a ConnStats>) -> Counts {
        let mut c = Counts::default();
        for s in stats {
            c.published += s.published.load(Ordering::Relaxed);
            c.confirmed += s.confirmed.load(Ordering::Relaxed);
            c.nacked += s.nacked.load(Ordering::Relaxed);
            c.returned += s.returned.load(Ordering::Relaxed);
            c.received += s.received.load(Ordering::Relaxed);
        }
        c
    }

    pub fn minus(self, earlier: Counts) -> Counts {
        Counts {
            published: self.published - earlier.published,
            confirmed: self.confirmed - earlier.confirmed,
            nacked: self.nacked - earlier.nacked,
            returned: self.returned - earlier.returned,
            received: self.received - earlier.received,
        }
    }
}

/// Moves every connection's recorded latencies into `into`.
pub fn collect_latencies<'a>(stats: impl IntoIterator<Item = &'a ConnStats>, into: &mut Latencies) {
    for s in stats {
        let mut l = s.latencies();
        into.merge(&l);
        l.clear();
    }
}

/// Nanoseconds as a short human figure: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn format_ns(ns: u64) -> String {
    let v = ns as f64;
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", v / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let b = bucket_of(v);
            assert!(b < BUCKETS, "value {v} maps past the last bucket");
            assert!(b >= last || v >= 100_000, "bucket index went down at {v}");
            last = b;
            assert!(bucket_upper(b) >= v, "bucket {b} upper bound below its value {v}");
            if b > 0 {
                assert!(bucket_upper(b - 1) < v, "value {v} would fit the previous bucket");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_upper(BUCKETS - 1), u64::MAX);
    }

    #[test]
    fn relative_error_is_below_two_percent() {
        for v in [128u64, 1_000, 12_345, 999_999, 1 << 40, 123_456_789_012] {
            let upper = bucket_upper(bucket_of(v));
            assert!((upper - v) as f64 / v as f64 <= 1.0 / 64.0, "{v} -> {upper}");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=100u64 {
            h.record(v);
        }
        // Below 128 every value has its own bucket, so quantiles are exact.
        assert_eq!(h.quantile(0.5), Some(50));
        assert_eq!(h.quantile(0.95), Some(95));
        assert_eq!(h.quantile(0.99), Some(99));
        assert_eq!(h.quantile(1.0), Some(100));
        assert_eq!(h.quantile(0.0), Some(1));
        assert_eq!((h.min(), h.max(), h.count()), (Some(1), Some(100), 100));
        assert_eq!(h.mean(), Some(50.5));
    }

    #[test]
    fn quantiles_of_large_values_are_close_and_never_below() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1_000);
        }
        for (q, exact) in [(0.5, 5_000_000u64), (0.99, 9_900_000), (0.999, 9_990_000)] {
            let got = h.quantile(q).unwrap();
            assert!(got >= exact && (got - exact) as f64 / exact as f64 <= 1.0 / 64.0, "q{q}: {got} vs {exact}");
        }
        assert_eq!(h.quantile(1.0), Some(10_000_000), "the top is clamped to the exact maximum");
    }

    #[test]
    fn empty_histograms_have_no_quantiles() {
        let h = Histogram::new();
        assert_eq!((h.quantile(0.5), h.max(), h.min(), h.mean()), (None, None, None, None));
    }

    #[test]
    fn merge_and_clear() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        a.record(10);
        b.record(1_000_000);
        b.record(20);
        a.merge(&b);
        assert_eq!((a.count(), a.min(), a.max()), (3, Some(10), Some(1_000_000)));
        assert_eq!(a.quantile(0.5), Some(20));
        a.clear();
        assert!(a.is_empty());
        a.merge(&Histogram::new());
        assert!(a.is_empty());
    }

    #[test]
    fn collecting_moves_latencies_out_of_the_connections() {
        let conns = [ConnStats::default(), ConnStats::default()];
        conns[0].latencies().e2e.record(5);
        conns[1].latencies().e2e.record(7);
        conns[1].latencies().confirm.record(3);
        conns[1].latencies().lateness.record(9);
        conns[0].latencies().early += 1;
        conns[0].latencies().early_max = 40;
        conns[1].latencies().early_max = 30;
        ConnStats::add(&conns[1].received, 2);
        let mut all = Latencies::default();
        collect_latencies(&conns, &mut all);
        assert_eq!((all.confirm.count(), all.e2e.count(), all.lateness.count(), all.early), (1, 2, 1, 1));
        assert_eq!(all.early_max, 40);
        assert!(conns.iter().all(|s| s.latencies().e2e.is_empty()));
        let counts = Counts::read(&conns);
        assert_eq!(counts.received, 2);
        assert_eq!(counts.minus(Counts { received: 1, ..Default::default() }).received, 1);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_ns(850), "850 ns");
        assert_eq!(format_ns(12_345), "12.3 µs");
        assert_eq!(format_ns(4_560_000), "4.56 ms");
        assert_eq!(format_ns(1_200_000_000), "1.20 s");
    }
}
