//! Message rates for the API's `message_stats` (`publish`, `deliver_get`, `ack`, ... and their
//! `*_details.rate`): every [`SAMPLE_EVERY`] the sampler copies each queue's monotonic counters
//! (`broker::queue::Counters`, kept by the queues at no extra lock), and a rate is the change
//! between the last two samples — per second, as fresh as RabbitMQ's (which samples every 5 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Mgmt;
use crate::broker::queue::Counters;
use crate::protocol::ShortStr;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

type Key = (ShortStr, ShortStr);

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    counters: Counters,
}

/// The last two samples of something counted.
#[derive(Clone, Copy, Default)]
struct Pair {
    previous: Option<Sample>,
    last: Option<Sample>,
}

impl Pair {
    fn push(&mut self, s: Sample) {
        self.previous = self.last.replace(s);
    }

    /// Per-second rates between the two samples (all 0 until there are two).
    fn rates(&self) -> [f64; 6] {
        let (Some(p), Some(l)) = (self.previous, self.last) else { return [0.0; 6] };
        let secs = l.at.duration_since(p.at).as_secs_f64();
        if secs <= 0.0 {
            return [0.0; 6];
        }
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let (a, b) = (l.counters, p.counters);
        [
            d(a.published, b.published),
            d(a.delivered, b.delivered),
            d(a.got, b.got),
            d(a.delivered + a.got, b.delivered + b.got),
            d(a.acked, b.acked),
            d(a.redelivered, b.redelivered),
        ]
    }
}

#[derive(Default)]
pub struct Rates {
    queues: Mutex<HashMap<Key, Pair>>,
    total: Mutex<Pair>,
}

impl Rates {
    /// Takes one sample of every queue (and of their sum); forgets queues that are gone.
    pub fn sample(&self, mgmt: &Mgmt) {
        let at = Instant::now();
        let mut seen: HashMap<Key, Counters> = HashMap::new();
        for v in mgmt.broker.vhosts() {
            for q in v.queues() {
                seen.insert((v.name.clone(), q.name.clone()), q.counters());
            }
        }
        let total = seen.values().fold(Counters::default(), |a, c| a + *c);
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.retain(|k, _| seen.contains_key(k));
        for (k, counters) in seen {
            queues.entry(k).or_default().push(Sample { at, counters });
        }
        self.total.lock().unwrap_or_else(|e| e.into_inner()).push(Sample { at, counters: total });
    }

    pub fn queue_stats(&self, vhost: &ShortStr, queue: &ShortStr, counters: Counters) -> Value {
        let pair = self.queues.lock().unwrap_or_else(|e| e.into_inner()).get(&(vhost.clone(), queue.clone())).copied();
        message_stats(counters, pair.unwrap_or_default().rates())
    }

    pub fn total_stats(&self, counters: Counters) -> Value {
        let pair = *self.total.lock().unwrap_or_else(|e| e.into_inner());
        message_stats(counters, pair.rates())
    }
}

/// RabbitMQ's `message_stats` object.
fn message_stats(c: Counters, r: [f64; 6]) -> Value {
    json!({
        "publish": c.published, "publish_details": {"rate": r[0]},
        "deliver": c.delivered, "deliver_details": {"rate": r[1]},
        "get": c.got, "get_details": {"rate": r[2]},
        "deliver_get": c.delivered + c.got, "deliver_get_details": {"rate": r[3]},
        "ack": c.acked, "ack_details": {"rate": r[4]},
        "redeliver": c.redelivered, "redeliver_details": {"rate": r[5]},
    })
}

/// Samples every [`SAMPLE_EVERY`] while the API runs.
pub async fn run_sampler(mgmt: Weak<Mgmt>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tick.tick().await;
        let Some(m) = mgmt.upgrade() else { return };
        let m2: Arc<Mgmt> = m.clone();
        drop(m);
        m2.rates.sample(&m2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_change_between_the_last_two_samples() {
        let mut p = Pair::default();
        let t0 = Instant::now();
        assert_eq!(p.rates(), [0.0; 6]);
        p.push(Sample { at: t0, counters: Counters { published: 10, ..Default::default() } });
        assert_eq!(p.rates(), [0.0; 6], "one sample says nothing yet");
        let later = Counters { published: 60, delivered: 20, got: 5, acked: 25, redelivered: 0 };
        p.push(Sample { at: t0 + Duration::from_secs(5), counters: later });
        assert_eq!(p.rates(), [10.0, 4.0, 1.0, 5.0, 5.0, 0.0]);
    }
}
