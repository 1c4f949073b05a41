//! What a run declares (exchange, queues, bindings, wait queues) and which producer publishes
//! with which keys and which consumer reads which queue: planned from the flags alone, before
//! any connection, so that the plan can be tested without a broker.

use super::{ExchangeType, PerfArgs, QueueType};

/// What a run declares and how producers and consumers use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub exchange_type: ExchangeType,
    /// Declared as `x-delayed-message` routing as `exchange_type`.
    pub delayed: bool,
    pub declare_exchange: bool,
    pub queues: Vec<String>,
    /// The `x-queue-type` argument the queues are declared with (none: the broker's default).
    pub queue_type: Option<QueueType>,
    /// (queue index, binding key); empty for the default exchange.
    pub bindings: Vec<(usize, String)>,
    /// The routing keys each producer cycles through.
    pub producer_keys: Vec<Vec<String>>,
    /// The queue index each consumer consumes from.
    pub consumer_queues: Vec<usize>,
    /// Deliveries per published message (queues each message reaches).
    pub copies: u64,
    /// TTL + dead-letter retry: the wait queues, dead-lettering into `queues[0]`. Producers
    /// publish to them (`producer_keys` are their names) through the default exchange.
    pub wait_queues: Vec<WaitQueue>,
}

/// A queue that holds messages for its `x-message-ttl`, then dead-letters them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitQueue {
    pub name: String,
    pub ttl_ms: u64,
}

/// `k` TTLs spread evenly over `lo..=hi` (both ends included when `k` > 1).
pub fn spread(lo: u64, hi: u64, k: u32) -> Vec<u64> {
    match k {
        0 => Vec::new(),
        1 => vec![lo],
        _ => (0..u64::from(k)).map(|i| lo + (hi - lo) * i / (u64::from(k) - 1)).collect(),
    }
}

impl Topology {
    /// Deliveries to expect when every producer has sent one message. A message reaches
    /// `copies` queues; a classic or quorum queue hands it to one of its consumers, a stream to
    /// every one of them.
    pub fn deliveries_per_round(&self) -> u64 {
        let producers = self.producer_keys.len() as u64;
        if self.queue_type != Some(QueueType::Stream) {
            return producers * self.copies;
        }
        if self.exchange_type == ExchangeType::Fanout {
            // Every queue, hence every consumer.
            return producers * self.consumer_queues.len() as u64;
        }
        // Producer p publishes to queue p mod N only (see `plan`).
        let readers = |q: usize| self.consumer_queues.iter().filter(|&&c| c == q).count() as u64;
        (0..self.producer_keys.len()).map(|p| readers(p % self.queues.len())).sum()
    }

    pub fn plan(args: &PerfArgs) -> Topology {
        let (exchange, declare_exchange) = args.exchange_name();
        let fanout = args.fanout_queues > 0 || args.exchange_type == ExchangeType::Fanout;
        let exchange_type = if fanout { ExchangeType::Fanout } else { args.exchange_type };
        let n = if args.fanout_queues > 0 { args.fanout_queues } else { args.queues } as usize;
        let queues: Vec<String> = match (&args.queue_pattern, args.fanout_queues > 0, n) {
            (Some(p), _, _) => (1..=n).map(|i| p.replace("%d", &i.to_string())).collect(),
            (None, true, _) => (1..=n).map(|i| format!("warren-perf-fanout-{i}")).collect(),
            (None, false, 1) => vec![args.queue.clone()],
            (None, false, _) => (1..=n).map(|i| format!("{}-{i}", args.queue)).collect(),
        };
        let nq = queues.len();
        let mut bindings = Vec::new();
        let producer_queue = |p: usize| p % nq;
        let producer_keys: Vec<Vec<String>>;
        let copies;
        if fanout {
            bindings.extend((0..nq).map(|q| (q, String::new())));
            producer_keys = (0..args.producers as usize).map(|_| vec![String::new()]).collect();
            copies = nq as u64;
        } else if exchange_type == ExchangeType::Topic && args.topic_bindings > 0 {
            // Binding i goes to queue i mod N; a producer cycles through the keys of its queue's
            // bindings, so every message matches exactly one binding among all of them.
            for i in 0..args.topic_bindings as usize {
                let wildcard = if i % 2 == 0 { "*" } else { "#" };
                bindings.push((i % nq, format!("perf.{i}.{wildcard}")));
            }
            producer_keys = (0..args.producers as usize)
                .map(|p| {
                    let q = producer_queue(p);
                    bindings.iter().filter(|(bq, _)| *bq == q).map(|(_, k)| k.replace(['*', '#'], "x")).collect()
                })
                .collect();
            copies = 1;
        } else {
            // Direct (or topic without wildcards): each queue bound under its own name.
            if !exchange.is_empty() {
                bindings.extend(queues.iter().enumerate().map(|(q, name)| (q, name.clone())));
            }
            producer_keys = (0..args.producers as usize).map(|p| vec![queues[producer_queue(p)].clone()]).collect();
            copies = 1;
        }
        let wait_queues: Vec<WaitQueue> = match args.ttl_ms {
            Some((lo, hi)) if args.ttl_queues > 0 => spread(lo, hi, args.ttl_queues)
                .into_iter()
                .enumerate()
                .map(|(i, ttl_ms)| WaitQueue { name: format!("{}-wait-{}-{ttl_ms}ms", queues[0], i + 1), ttl_ms })
                .collect(),
            _ => Vec::new(),
        };
        let producer_keys = if wait_queues.is_empty() {
            producer_keys
        } else {
            // Each message picks one of them at random (see producer::Delays::PerKey).
            let names: Vec<String> = wait_queues.iter().map(|w| w.name.clone()).collect();
            (0..args.producers as usize).map(|_| names.clone()).collect()
        };
        // With fewer topic bindings than queues some producers would have nothing to send to.
        let producer_keys = producer_keys
            .into_iter()
            .map(|k| if k.is_empty() { vec!["perf.unbound".to_string()] } else { k })
            .collect();
        Topology {
            exchange,
            exchange_type,
            delayed: args.delayed_exchange,
            declare_exchange,
            queue_type: args.queue_type,
            consumer_queues: (0..args.consumers as usize).map(|c| c % nq).collect(),
            queues,
            bindings,
            producer_keys,
            copies,
            wait_queues,
        }
    }
}
