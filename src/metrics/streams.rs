//! Stream metrics: where each stream starts and ends, its size, and how far each consumer is
//! behind the tail — the lag a Kafka user alerts on. RabbitMQ's stream plugin names the lag
//! `stream_consumer_max_offset_lag` (per stream, the worst consumer); Warren adds the rest as
//! `warren_stream_*`, per consumer where it matters.

use crate::broker::stream::StreamInfo;

use super::text::{Exposition, Kind};

pub struct StreamRow {
    pub vhost: String,
    pub name: String,
    pub info: StreamInfo,
}

fn max_lag(info: &StreamInfo) -> u64 {
    info.consumers.iter().map(|c| c.lag).max().unwrap_or(0)
}

/// RabbitMQ's family (with the exposition's prefix): the largest consumer lag of each stream.
pub fn write_max_lag(e: &mut Exposition, rows: &[StreamRow]) {
    let name = "stream_consumer_max_offset_lag";
    e.family(name, Kind::Gauge, "Current maximum of offset lag of consumers");
    for r in rows {
        e.sample(name, &[("vhost", &r.vhost), ("queue", &r.name)], max_lag(&r.info));
    }
}

/// Warren's own families (written without a prefix). Aggregated: the number of streams and
/// the worst lag of any consumer; per object: one series per stream and per consumer.
pub fn write_warren(e: &mut Exposition, rows: &[StreamRow], per_object: bool) {
    if !per_object {
        e.family("warren_streams", Kind::Gauge, "Streams (x-queue-type=stream)");
        e.sample("warren_streams", &[], rows.len() as u64);
        let name = "warren_stream_consumer_max_offset_lag";
        e.family(name, Kind::Gauge, "The largest offset lag of any stream consumer");
        e.sample(name, &[], rows.iter().map(|r| max_lag(&r.info)).max().unwrap_or(0));
        return;
    }
    type Field = fn(&StreamInfo) -> Option<u64>;
    let families: [(&str, &str, Field); 5] = [
        ("warren_stream_first_offset", "The oldest offset the stream retains", |i| Some(i.first_offset)),
        ("warren_stream_last_offset", "The newest offset written", |i| i.last_offset),
        ("warren_stream_messages", "Messages the stream retains", |i| Some(i.messages)),
        ("warren_stream_bytes", "Bytes of the messages the stream retains", |i| Some(i.bytes)),
        ("warren_stream_segments", "Segments the stream retains (the unit of retention)", |i| Some(i.segments as u64)),
    ];
    for (name, help, field) in families {
        e.family(name, Kind::Gauge, help);
        for r in rows {
            if let Some(v) = field(&r.info) {
                e.sample(name, &[("vhost", &r.vhost), ("queue", &r.name)], v);
            }
        }
    }
    let name = "warren_stream_consumer_offset_lag";
    e.family(name, Kind::Gauge, "Committed messages a stream consumer has not been offered yet");
    for r in rows {
        for c in &r.info.consumers {
            let tag = c.tag.to_string_lossy();
            e.sample(name, &[("vhost", &r.vhost), ("queue", &r.name), ("consumer_tag", &tag)], c.lag);
        }
    }
}
