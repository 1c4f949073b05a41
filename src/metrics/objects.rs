//! Queue, connection and channel metrics: summed over all objects (`/metrics`), one series per
//! object (`/metrics/per-object`, `/metrics/detailed`). RabbitMQ's names and help texts for
//! what it has; `warren_queue_*` for what it lacks.

use crate::broker::connections::{ChannelSnapshot, ConnectionSnapshot};
use crate::broker::queue::QueueGauges;
use crate::broker::stats::BrokerStats;
use crate::broker::timer::now_ms;
use crate::broker::Broker;

use super::streams::StreamRow;
use super::text::{Exposition, Kind, Value};

/// One queue as a scrape saw it.
pub struct QueueRow {
    pub vhost: String,
    pub name: String,
    pub g: QueueGauges,
}

/// One channel with its RabbitMQ-style label (`<connection name> (<number>)`).
pub struct ChannelRow {
    pub label: String,
    pub ch: ChannelSnapshot,
}

/// Everything the object families need, read once per scrape (each queue under its own lock,
/// briefly; no lock held across queues).
#[derive(Default)]
pub struct Objects {
    pub queues: Vec<QueueRow>,
    /// The streams among `queues`, with their offsets and consumer lags.
    pub streams: Vec<StreamRow>,
    pub connections: Vec<ConnectionSnapshot>,
    pub channels: Vec<ChannelRow>,
}

impl Objects {
    /// `vhost`: only that vhost's queues, connections and channels (the detailed endpoint's filter).
    pub fn collect(broker: &Broker, vhost: Option<&str>) -> Objects {
        let mut queues = Vec::new();
        let mut streams = Vec::new();
        for v in broker.vhosts() {
            let vname = v.name.to_string_lossy();
            if vhost.is_some_and(|want| want != vname) {
                continue;
            }
            for q in v.queues() {
                let name = q.name.to_string_lossy();
                // A stream is looked at once, for its queue figures and its own.
                let g = match q.stream() {
                    Some(s) => {
                        let info = s.info();
                        let g = q.stream_gauges(&info);
                        streams.push(StreamRow { vhost: vname.clone(), name: name.clone(), info });
                        g
                    }
                    None => q.gauges(),
                };
                queues.push(QueueRow { vhost: vname.clone(), name, g });
            }
        }
        let mut connections = Vec::new();
        let mut channels = Vec::new();
        for e in broker.connections().entries() {
            if vhost.is_some_and(|want| e.info.vhost.to_string_lossy() != want) {
                continue;
            }
            for ch in e.channels() {
                channels.push(ChannelRow { label: format!("{} ({})", e.info.name, ch.number), ch });
            }
            connections.push(e.snapshot());
        }
        Objects { queues, streams, connections, channels }
    }

    pub fn consumers(&self) -> u64 {
        self.queues.iter().map(|q| q.g.consumers).sum()
    }
}

type QueueValue = fn(&QueueGauges, u64) -> Option<Value>;

/// Age of the head message in seconds; 0 for an empty queue, unknown when its body is paged out.
fn head_age(g: &QueueGauges, now: u64) -> Option<Value> {
    if g.ready == 0 {
        return Some(Value::Float(0.0));
    }
    g.head_arrived_ms.map(|at| Value::Float(now.saturating_sub(at) as f64 / 1000.0))
}

/// RabbitMQ's queue families: `(name, kind, help, value)`, and which detailed family each is in.
pub const QUEUE_COARSE: &[(&str, Kind, &str, QueueValue)] = &[
    ("queue_messages_ready", Kind::Gauge, "Messages ready to be delivered to consumers", |g, _| Some(g.ready.into())),
    ("queue_messages_unacked", Kind::Gauge, "Messages delivered to consumers but not yet acknowledged", |g, _| {
        Some(g.unacked.into())
    }),
    ("queue_messages", Kind::Gauge, "Sum of ready and unacknowledged messages - total queue depth", |g, _| {
        Some((g.ready + g.unacked).into())
    }),
];

pub const QUEUE_CONSUMER_COUNT: &[(&str, Kind, &str, QueueValue)] =
    &[("queue_consumers", Kind::Gauge, "Consumers on a queue", |g, _| Some(g.consumers.into()))];

pub const QUEUE_METRICS: &[(&str, Kind, &str, QueueValue)] = &[
    ("queue_messages_ready_bytes", Kind::Gauge, "Size in bytes of ready messages", |g, _| Some(g.ready_bytes.into())),
    ("queue_messages_ready_ram", Kind::Gauge, "Ready messages stored in memory", |g, _| Some(g.resident.into())),
    ("queue_messages_paged_out", Kind::Gauge, "Messages paged out to disk", |g, _| {
        Some(g.ready.saturating_sub(g.resident).into())
    }),
    ("queue_head_message_timestamp", Kind::Gauge, "Timestamp of the first message in the queue, if any", |g, _| {
        g.head_timestamp.map(Value::Int)
    }),
];

/// Warren's per-queue families (written without a prefix; per-object only, except the age,
/// whose aggregate is the oldest).
pub const WARREN_QUEUE: &[(&str, Kind, &str, QueueValue)] = &[
    (
        "warren_queue_head_message_age_seconds",
        Kind::Gauge,
        "Seconds since the oldest ready message arrived (0 when the queue is empty)",
        head_age,
    ),
    (
        "warren_queue_messages_published_total",
        Kind::Counter,
        "Messages enqueued since the queue was created",
        |g, _| Some(g.counters.published.into()),
    ),
    (
        "warren_queue_messages_delivered_total",
        Kind::Counter,
        "Messages delivered to consumers (basic.consume)",
        |g, _| Some(g.counters.delivered.into()),
    ),
    ("warren_queue_messages_get_total", Kind::Counter, "Messages fetched with basic.get", |g, _| {
        Some(g.counters.got.into())
    }),
    (
        "warren_queue_messages_redelivered_total",
        Kind::Counter,
        "Deliveries and gets of messages handed out before",
        |g, _| Some(g.counters.redelivered.into()),
    ),
    ("warren_queue_messages_acked_total", Kind::Counter, "Deliveries acknowledged by consumers", |g, _| {
        Some(g.counters.acked.into())
    }),
];

/// Writes queue families: per queue (`vhost`, `queue` labels) or summed without labels.
pub fn write_queues(
    e: &mut Exposition,
    rows: &[QueueRow],
    families: &[(&str, Kind, &str, QueueValue)],
    per_object: bool,
) {
    let now = now_ms();
    for (name, kind, help, value) in families {
        if per_object {
            e.family(name, *kind, help);
            for q in rows {
                if let Some(v) = value(&q.g, now) {
                    e.sample(name, &[("vhost", &q.vhost), ("queue", &q.name)], v);
                }
            }
            continue;
        }
        if *name == "queue_head_message_timestamp" {
            continue; // a timestamp does not add up
        }
        e.family(name, *kind, help);
        let oldest = *name == "warren_queue_head_message_age_seconds";
        let mut total = 0.0f64;
        let mut int_total = 0u64;
        for q in rows {
            match value(&q.g, now) {
                Some(Value::Float(v)) if oldest => total = total.max(v),
                Some(Value::Float(v)) => total += v,
                Some(Value::Int(v)) => int_total += v,
                None => {}
            }
        }
        if oldest {
            e.sample(name, &[], total);
        } else {
            e.sample(name, &[], int_total);
        }
    }
}

type ConnectionValue = fn(&ConnectionSnapshot) -> u64;

pub const CONNECTION_COARSE: &[(&str, Kind, &str, ConnectionValue)] = &[
    ("connection_incoming_bytes_total", Kind::Counter, "Total number of bytes received on a connection", |c| {
        c.stats.recv_oct
    }),
    ("connection_outgoing_bytes_total", Kind::Counter, "Total number of bytes sent on a connection", |c| {
        c.stats.send_oct
    }),
];

pub const CONNECTION_METRICS: &[(&str, Kind, &str, ConnectionValue)] = &[
    ("connection_incoming_packets_total", Kind::Counter, "Total number of packets received on a connection", |c| {
        c.stats.recv_cnt
    }),
    ("connection_channels", Kind::Gauge, "Channels on a connection", |c| c.channels as u64),
];

/// Connection families; RabbitMQ labels a connection's series `channel` (its process id),
/// Warren with the connection's name. Aggregated, the counters are the broker's totals
/// (closed connections included: a sum over open ones would fall when one closes), the
/// gauges a sum over open connections.
pub fn write_connections(
    e: &mut Exposition,
    rows: &[ConnectionSnapshot],
    families: &[(&str, Kind, &str, ConnectionValue)],
    per_object: bool,
    stats: &BrokerStats,
) {
    for (name, kind, help, value) in families {
        e.family(name, *kind, help);
        if per_object {
            for c in rows {
                e.sample(name, &[("channel", &c.info.name)], value(c));
            }
            continue;
        }
        let total = match *name {
            "connection_incoming_bytes_total" => stats.recv_oct.get(),
            "connection_outgoing_bytes_total" => stats.send_oct.get(),
            "connection_incoming_packets_total" => stats.recv_cnt.get(),
            _ => rows.iter().map(value).sum::<u64>(),
        };
        e.sample(name, &[], total);
    }
}

type ChannelValue = fn(&ChannelSnapshot) -> u64;

pub const CHANNEL_METRICS: &[(&str, Kind, &str, ChannelValue)] = &[
    ("channel_consumers", Kind::Gauge, "Consumers on a channel", |c| c.consumer_count as u64),
    ("channel_messages_unacked", Kind::Gauge, "Delivered but not yet acknowledged messages", |c| {
        c.messages_unacknowledged as u64
    }),
    ("channel_prefetch", Kind::Gauge, "Total limit of unacknowledged messages for all consumers on a channel", |c| {
        u64::from(c.global_prefetch_count)
    }),
    ("consumer_prefetch", Kind::Gauge, "Limit of unacknowledged messages for each consumer", |c| {
        u64::from(c.prefetch_count)
    }),
];

pub fn write_channels(
    e: &mut Exposition,
    rows: &[ChannelRow],
    families: &[(&str, Kind, &str, ChannelValue)],
    per_object: bool,
) {
    for (name, kind, help, value) in families {
        e.family(name, *kind, help);
        if per_object {
            for c in rows {
                e.sample(name, &[("channel", &c.label)], value(&c.ch));
            }
        } else {
            e.sample(name, &[], rows.iter().map(|c| value(&c.ch)).sum::<u64>());
        }
    }
}
