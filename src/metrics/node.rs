//! Node-wide families: identity, the process, disk and alarms, churn totals, current counts,
//! RabbitMQ's global counters, and Warren's own counters and histograms.

use crate::broker::stats::{BrokerStats, DeadLetterStrategy, DEATH_REASONS};
use crate::broker::Broker;
use crate::mgmt::api::overview::{PRODUCT_NAME, PRODUCT_VERSION, RABBITMQ_COMPAT_VERSION};

use super::objects::Objects;
use super::process;
use super::text::{Exposition, Kind};
use super::Exporter;

const AMQP: (&str, &str) = ("protocol", "amqp091");
/// Warren's queues are all classic queues as RabbitMQ would count them.
const CLASSIC: (&str, &str) = ("queue_type", "rabbit_classic_queue");

/// `rabbitmq_build_info` and `rabbitmq_identity_info`: every endpoint has them, unprefixed.
pub fn write_identity(e: &mut Exposition, x: &Exporter) {
    let saved = e.prefix();
    e.set_prefix("rabbitmq_");
    e.family("build_info", Kind::Untyped, "RabbitMQ & Erlang/OTP version info");
    e.sample(
        "build_info",
        &[
            ("rabbitmq_version", RABBITMQ_COMPAT_VERSION),
            ("prometheus_plugin_version", PRODUCT_VERSION),
            ("prometheus_client_version", PRODUCT_VERSION),
            ("erlang_version", "none"),
            ("product_name", PRODUCT_NAME),
            ("product_version", PRODUCT_VERSION),
        ],
        1u64,
    );
    e.family("identity_info", Kind::Untyped, "RabbitMQ node & cluster identity info");
    e.sample("identity_info", &[("rabbitmq_node", &x.node), ("rabbitmq_cluster", &x.cluster)], 1u64);
    e.set_prefix(saved);
}

/// Process, memory, disk and alarm gauges (RabbitMQ's `prometheus_rabbitmq_core_metrics`
/// node group).
pub fn write_process(e: &mut Exposition, x: &Exporter, objects: &Objects) {
    let broker = &x.broker;
    let fds = process::open_fds().unwrap_or(0);
    e.single("process_open_fds", Kind::Gauge, "Open file descriptors", fds);
    e.single("process_open_tcp_sockets", Kind::Gauge, "Open TCP sockets", objects.connections.len());
    let (memory_used, memory_limit) = broker.memory();
    e.single("process_resident_memory_bytes", Kind::Gauge, "Memory used in bytes", memory_used);
    let (free, limit) = broker.disk_free().unwrap_or((0, 0));
    e.single("disk_space_available_bytes", Kind::Gauge, "Disk space available in bytes", free);
    e.single("process_max_fds", Kind::Gauge, "Open file descriptors limit", process::max_fds().unwrap_or(0));
    e.single("process_max_tcp_sockets", Kind::Gauge, "Open TCP sockets limit", process::max_fds().unwrap_or(0));
    e.single("resident_memory_limit_bytes", Kind::Gauge, "Memory high watermark in bytes", memory_limit);
    e.single("disk_space_available_limit_bytes", Kind::Gauge, "Free disk space low watermark in bytes", limit);
    e.single("erlang_uptime_seconds", Kind::Gauge, "Node uptime", x.started.elapsed().as_secs_f64());
    let alarms = broker.alarms.current();
    e.single("alarms_file_descriptor_limit", Kind::Gauge, "is 1 if file descriptor limit alarm is in effect", 0u64);
    e.single(
        "alarms_free_disk_space_watermark",
        Kind::Gauge,
        "is 1 if free disk space watermark alarm is in effect",
        u64::from(alarms.disk()),
    );
    e.single(
        "alarms_memory_used_watermark",
        Kind::Gauge,
        "is 1 if VM memory watermark alarm is in effect",
        u64::from(alarms.memory),
    );
}

/// Churn totals (RabbitMQ's `connection_churn_metrics`).
pub fn write_churn(e: &mut Exposition, s: &BrokerStats) {
    let churn = [
        ("connections_opened_total", "Total number of connections opened", &s.connections_opened),
        ("connections_closed_total", "Total number of connections closed or terminated", &s.connections_closed),
        ("channels_opened_total", "Total number of channels opened", &s.channels_opened),
        ("channels_closed_total", "Total number of channels closed", &s.channels_closed),
        ("queues_declared_total", "Total number of queues declared", &s.queues_declared),
        ("queues_created_total", "Total number of queues created", &s.queues_created),
        ("queues_deleted_total", "Total number of queues deleted", &s.queues_deleted),
    ];
    for (name, help, c) in churn {
        e.single(name, Kind::Counter, help, c.get());
    }
}

/// Objects open now.
pub fn write_counts(e: &mut Exposition, objects: &Objects) {
    e.single("connections", Kind::Gauge, "Connections currently open", objects.connections.len());
    e.single("channels", Kind::Gauge, "Channels currently open", objects.channels.len());
    e.single("consumers", Kind::Gauge, "Consumers currently connected", objects.consumers());
    e.single("queues", Kind::Gauge, "Queues available", objects.queues.len());
}

/// RabbitMQ's global counters (`rabbitmq_global_*`), for AMQP 0-9-1 and classic queues.
pub fn write_global(e: &mut Exposition, s: &BrokerStats, objects: &Objects) {
    e.family("global_consumers", Kind::Gauge, "Current number of consumers");
    e.sample("global_consumers", &[AMQP], objects.consumers());
    e.family("global_publishers", Kind::Gauge, "Current number of publishers");
    e.sample("global_publishers", &[AMQP], s.publishers.get());
    let by_protocol = [
        ("global_messages_received_total", "Total number of messages received from publishers", s.received.get()),
        (
            "global_messages_received_confirm_total",
            "Total number of messages received from publishers expecting confirmations",
            s.received_confirm.get(),
        ),
        ("global_messages_routed_total", "Total number of messages routed to queues or streams", s.routed.get()),
        (
            "global_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            s.unroutable_dropped.get(),
        ),
        (
            "global_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            s.unroutable_returned.get(),
        ),
        ("global_messages_confirmed_total", "Total number of messages confirmed to publishers", s.confirmed.get()),
    ];
    for (name, help, v) in by_protocol {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[AMQP], v);
    }
    let by_queue_type = [
        ("global_messages_delivered_total", "Total number of messages delivered to consumers", s.delivered_total()),
        (
            "global_messages_delivered_consume_auto_ack_total",
            "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment",
            s.delivered_consume_auto_ack.get(),
        ),
        (
            "global_messages_delivered_consume_manual_ack_total",
            "Total number of messages delivered to consumers using basic.consume with manual acknowledgment",
            s.delivered_consume_manual_ack.get(),
        ),
        (
            "global_messages_delivered_get_auto_ack_total",
            "Total number of messages delivered to consumers using basic.get with automatic acknowledgment",
            s.delivered_get_auto_ack.get(),
        ),
        (
            "global_messages_delivered_get_manual_ack_total",
            "Total number of messages delivered to consumers using basic.get with manual acknowledgment",
            s.delivered_get_manual_ack.get(),
        ),
        (
            "global_messages_get_empty_total",
            "Total number of times basic.get operations fetched no message",
            s.get_empty.get(),
        ),
        ("global_messages_redelivered_total", "Total number of messages redelivered to consumers", s.redelivered.get()),
        (
            "global_messages_acknowledged_total",
            "Total number of messages acknowledged by consumers",
            s.acknowledged.get(),
        ),
    ];
    for (name, help, v) in by_queue_type {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[AMQP, CLASSIC], v);
    }
    let dead = [
        (
            "global_messages_dead_lettered_expired_total",
            "Total number of messages dead-lettered due to message TTL exceeded",
        ),
        (
            "global_messages_dead_lettered_rejected_total",
            "Total number of messages dead-lettered due to basic.reject or basic.nack",
        ),
        (
            "global_messages_dead_lettered_maxlen_total",
            "Total number of messages dead-lettered due to overflow drop-head or reject-publish-dlx",
        ),
        (
            "global_messages_dead_lettered_delivery_limit_total",
            "Total number of messages dead-lettered due to delivery-limit exceeded",
        ),
    ];
    for ((name, help), reason) in dead.into_iter().zip(DEATH_REASONS) {
        e.family(name, Kind::Counter, help);
        for strategy in DeadLetterStrategy::ALL {
            let v = s.dead_lettered_total(reason, strategy);
            e.sample(name, &[CLASSIC, ("dead_letter_strategy", strategy.as_str())], v);
        }
    }
}

/// RabbitMQ's channel-level message counters, which its older Overview dashboards chart
/// (`rate(rabbitmq_channel_messages_published_total[60s])`...). RabbitMQ sums them over the
/// channels open now, so they drop when a channel closes; Warren takes them from the global
/// counters, which never drop, so `rate()` sees no false resets.
pub fn write_channel_totals(e: &mut Exposition, s: &BrokerStats) {
    let totals = [
        ("channel_messages_published_total", "Total number of messages published into an exchange on a channel", s.received.get()),
        (
            "channel_messages_confirmed_total",
            "Total number of messages published into an exchange and confirmed on the channel",
            s.confirmed.get(),
        ),
        (
            "channel_messages_unroutable_returned_total",
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            s.unroutable_returned.get(),
        ),
        (
            "channel_messages_unroutable_dropped_total",
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            s.unroutable_dropped.get(),
        ),
        (
            "channel_get_ack_total",
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            s.delivered_get_manual_ack.get(),
        ),
        (
            "channel_get_total",
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            s.delivered_get_auto_ack.get(),
        ),
        (
            "channel_messages_delivered_ack_total",
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            s.delivered_consume_manual_ack.get(),
        ),
        (
            "channel_messages_delivered_total",
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            s.delivered_consume_auto_ack.get(),
        ),
        ("channel_messages_redelivered_total", "Total number of messages redelivered to consumers", s.redelivered.get()),
        ("channel_messages_acked_total", "Total number of messages acknowledged by consumers", s.acknowledged.get()),
        ("channel_get_empty_total", "Total number of times basic.get operations fetched no message", s.get_empty.get()),
        ("queue_messages_published_total", "Total number of messages published to queues", s.routed.get()),
    ];
    for (name, help, v) in totals {
        e.single(name, Kind::Counter, help, v);
    }
}

/// Warren's own node-wide families (unprefixed `warren_*`).
pub fn write_warren(e: &mut Exposition, broker: &Broker) {
    let saved = e.prefix();
    e.set_prefix("");
    let s = broker.stats();
    e.family("warren_messages_dead_lettered_total", Kind::Counter, "Messages that died in a queue, by reason; dead_letter_strategy is disabled when the queue had no dead-letter exchange (dropped)");
    for reason in DEATH_REASONS {
        for strategy in DeadLetterStrategy::ALL {
            let labels = [("reason", reason.as_str()), ("dead_letter_strategy", strategy.as_str())];
            e.sample("warren_messages_dead_lettered_total", &labels, s.dead_lettered_total(reason, strategy));
        }
    }
    e.family(
        "warren_messages_rejected_total",
        Kind::Counter,
        "Deliveries consumers rejected or nacked (basic.reject, basic.nack), by requeue",
    );
    e.sample("warren_messages_rejected_total", &[("requeue", "true")], s.rejected_requeue.get());
    e.sample("warren_messages_rejected_total", &[("requeue", "false")], s.rejected_drop.get());
    e.single(
        "warren_messages_confirm_nacked_total",
        Kind::Counter,
        "Publisher confirms sent as basic.nack (a full queue refused the message, or its write failed)",
        s.confirm_nacked.get(),
    );
    e.histogram(
        "warren_confirm_latency_seconds",
        "Time from receiving a publish on a confirm channel to settling its confirm",
        &[],
        &s.confirm_latency_us.snapshot(),
        1_000_000,
    );
    if let Some(w) = broker.writer_stats() {
        e.histogram(
            "warren_store_batch_size",
            "Operations written per group-commit batch of the store writer",
            &[],
            &w.batch_size.snapshot(),
            1,
        );
        e.histogram(
            "warren_store_sync_seconds",
            "Time to write and fsync one group-commit batch that needed durability",
            &[],
            &w.sync_latency_us.snapshot(),
            1_000_000,
        );
    }
    if let Some(backlog) = broker.store_backlog() {
        e.single(
            "warren_store_queued_bytes",
            Kind::Gauge,
            "Bytes of messages handed to the store writer and not yet written (publishers wait above 32 MiB)",
            backlog.queued_bytes(),
        );
    }
    e.set_prefix(saved);
}
