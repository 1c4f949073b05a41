//! Counters and histograms cheap enough for the per-message path: each is split into stripes
//! (one cache line each) and a thread adds to its own stripe, so publishing connections on
//! different cores never bounce a shared line; a scrape sums the stripes. Relaxed ordering
//! throughout: these are statistics, read long after they are written.
//!
//! A leaf module (no broker, no store types): the store's writer and the broker both count
//! through it.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Enough for the cores a broker runs on; more would only make scrapes longer.
const STRIPES: usize = 8;

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

/// This thread's stripe: handed out round-robin the first time a thread counts.
fn stripe() -> usize {
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(i);
        }
        i
    })
}

#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A monotonic counter.
#[derive(Default)]
pub struct Counter {
    stripes: [Padded; STRIPES],
}

impl Counter {
    pub fn add(&self, n: u64) {
        if n > 0 {
            self.stripes[stripe()].0.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).fold(0u64, u64::wrapping_add)
    }
}

/// A value that goes up and down (publishers, say); changed rarely, so one atomic.
#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Never below zero, even if a decrement raced ahead of its increment.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
    }
}

/// Most buckets a histogram has (its `+Inf` bucket aside).
pub const MAX_BUCKETS: usize = 16;

#[repr(align(64))]
struct HistogramStripe {
    /// Per bucket (the last is `+Inf`): observations that fell into it, not cumulative.
    buckets: [AtomicU64; MAX_BUCKETS + 1],
    /// Sum of the observations, in the histogram's integer unit.
    sum: AtomicU64,
}

/// A histogram with fixed upper bounds, observed in an integer unit (microseconds, items) and
/// exposed scaled (seconds): an observation is one short scan of the bounds and two relaxed
/// adds on this thread's stripe.
pub struct Histogram {
    bounds: &'static [u64],
    stripes: [HistogramStripe; STRIPES],
}

/// A histogram summed over its stripes, buckets cumulative as Prometheus wants them.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations <= it)`, in the observation unit; `+Inf` is `count`.
    pub buckets: Vec<(u64, u64)>,
    pub count: u64,
    pub sum: u64,
}

impl Histogram {
    /// `bounds` must ascend; more than [`MAX_BUCKETS`] are cut.
    pub const fn new(bounds: &'static [u64]) -> Histogram {
        Histogram { bounds, stripes: [const { HistogramStripe::new() }; STRIPES] }
    }

    pub fn observe(&self, value: u64) {
        let bounds = &self.bounds[..self.bounds.len().min(MAX_BUCKETS)];
        let at = bounds.iter().position(|b| value <= *b).unwrap_or(MAX_BUCKETS);
        let s = &self.stripes[stripe()];
        s.buckets[at].fetch_add(1, Ordering::Relaxed);
        s.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = &self.bounds[..self.bounds.len().min(MAX_BUCKETS)];
        let mut per = [0u64; MAX_BUCKETS + 1];
        let mut sum = 0u64;
        for s in &self.stripes {
            for (p, b) in per.iter_mut().zip(&s.buckets) {
                *p = p.wrapping_add(b.load(Ordering::Relaxed));
            }
            sum = sum.wrapping_add(s.sum.load(Ordering::Relaxed));
        }
        let mut running = 0u64;
        let buckets = bounds
            .iter()
            .zip(per.iter())
            .map(|(b, n)| {
                running += n;
                (*b, running)
            })
            .collect();
        let count = per.iter().sum();
        HistogramSnapshot { buckets, count, sum }
    }
}

impl HistogramStripe {
    const fn new() -> HistogramStripe {
        HistogramStripe { buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS + 1], sum: AtomicU64::new(0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_their_stripes_across_threads() {
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.inc()))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        c.add(5);
        assert_eq!(c.get(), 4005);
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        static BOUNDS: [u64; 3] = [10, 100, 1000];
        let h = Histogram::new(&BOUNDS);
        for v in [1, 10, 11, 500, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(10, 2), (100, 3), (1000, 4)]);
        assert_eq!((s.count, s.sum), (5, 5522));
    }

    #[test]
    fn gauges_never_go_negative() {
        let g = Gauge::default();
        g.dec();
        assert_eq!(g.get(), 0);
        g.inc();
        g.inc();
        assert_eq!(g.get(), 1);
    }
}
