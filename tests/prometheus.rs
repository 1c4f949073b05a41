//! The Prometheus endpoint against an in-process broker, parsed with a real exposition-format
//! parser: the stock RabbitMQ-Overview dashboard's metrics are all there after traffic, the
//! per-object figures agree with the management API, counters survive a queue's deletion, and
//! the detailed endpoint filters by family and vhost. (`interop-tests/prometheus` runs
//! `promtool check metrics` on a Warren process, and the dashboard check against RabbitMQ too.)

mod common;

use std::collections::HashMap;

use common::http::Http;
use common::lifecycle::{declare, get_unacked, send};
use common::{unique, TestBroker};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use prometheus_parse::{Sample, Scrape, Value};
use warren::broker::dead_letter::DeathReason;
use warren::broker::stats::DeadLetterStrategy;

/// Every metric the stock RabbitMQ-Overview dashboards query (3.10.8's and 4.x's, the 4.x-only
/// message size histogram aside): what `rabbitmq_prometheus` has to offer for them to draw.
const DASHBOARD: &[&str] = &[
    "rabbitmq_build_info",
    "rabbitmq_identity_info",
    "rabbitmq_erlang_uptime_seconds",
    "rabbitmq_resident_memory_limit_bytes",
    "rabbitmq_process_resident_memory_bytes",
    "rabbitmq_disk_space_available_bytes",
    "rabbitmq_disk_space_available_limit_bytes",
    "rabbitmq_process_max_fds",
    "rabbitmq_process_open_fds",
    "rabbitmq_process_max_tcp_sockets",
    "rabbitmq_process_open_tcp_sockets",
    "rabbitmq_connections",
    "rabbitmq_channels",
    "rabbitmq_consumers",
    "rabbitmq_queues",
    "rabbitmq_channel_consumers",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_connections_opened_total",
    "rabbitmq_connections_closed_total",
    "rabbitmq_channels_opened_total",
    "rabbitmq_channels_closed_total",
    "rabbitmq_queues_declared_total",
    "rabbitmq_queues_created_total",
    "rabbitmq_queues_deleted_total",
    "rabbitmq_global_publishers",
    "rabbitmq_global_consumers",
    "rabbitmq_global_messages_received_total",
    "rabbitmq_global_messages_received_confirm_total",
    "rabbitmq_global_messages_routed_total",
    "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_global_messages_unroutable_dropped_total",
    "rabbitmq_global_messages_unroutable_returned_total",
    "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_messages_delivered_consume_auto_ack_total",
    "rabbitmq_global_messages_delivered_consume_manual_ack_total",
    "rabbitmq_global_messages_delivered_get_auto_ack_total",
    "rabbitmq_global_messages_delivered_get_manual_ack_total",
    "rabbitmq_global_messages_get_empty_total",
    "rabbitmq_global_messages_redelivered_total",
    "rabbitmq_global_messages_acknowledged_total",
    "rabbitmq_alarms_free_disk_space_watermark",
    "rabbitmq_alarms_memory_used_watermark",
    // Older Overview dashboards chart the channel-level totals.
    "rabbitmq_channel_messages_published_total",
    "rabbitmq_channel_messages_confirmed_total",
    "rabbitmq_channel_messages_redelivered_total",
    "rabbitmq_channel_messages_unroutable_dropped_total",
    "rabbitmq_channel_messages_unroutable_returned_total",
    "rabbitmq_channel_messages_delivered_total",
    "rabbitmq_channel_messages_delivered_ack_total",
    "rabbitmq_channel_messages_acked_total",
    "rabbitmq_channel_get_total",
    "rabbitmq_channel_get_ack_total",
    "rabbitmq_channel_get_empty_total",
];

async fn scrape(b: &TestBroker, path: &str) -> (String, Scrape) {
    let url = format!("http://{}{path}", b.prometheus);
    let text = tokio::task::spawn_blocking(move || {
        let mut resp = ureq::get(&url).call().expect("an HTTP answer");
        assert_eq!(resp.status().as_u16(), 200);
        let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        resp.body_mut().read_to_string().expect("a body")
    })
    .await
    .expect("the request task");
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parses as Prometheus text");
    (text, parsed)
}

fn value(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{} is not a scalar: {other:?}", s.metric),
    }
}

/// The one sample of `name` whose labels include `labels`.
fn one(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = s
        .samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    value(found[0])
}

/// Every unlabelled-or-not counter of the scrape, by name and labels, for monotonicity checks.
fn counters(s: &Scrape) -> HashMap<String, f64> {
    s.samples
        .iter()
        .filter(|x| matches!(x.value, Value::Counter(_)) && !x.metric.starts_with("warren_queue_"))
        .map(|x| {
            let mut labels: Vec<String> = x.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            (format!("{}{{{}}}", x.metric, labels.join(",")), value(x))
        })
        .collect()
}

/// Publishes, confirms, consumes, gets, acks, rejects into a DLX, lets one expire and sends
/// one unroutable message each way; returns the queues and the consumer's connection (the
/// consumer holds four unacked deliveries while it lives).
async fn traffic(b: &TestBroker) -> (String, String, (lapin::Connection, lapin::Consumer)) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let (q, dlq) = (unique("prom"), unique("prom-dlq"));
    declare(&ch, &dlq, FieldTable::default()).await;
    let mut args = FieldTable::default();
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(dlq.as_str().into()));
    declare(&ch, &q, args).await;
    for i in 0..6 {
        send(&ch, &q, format!("m{i}").as_bytes(), BasicProperties::default()).await;
    }
    let expiring = BasicProperties::default().with_expiration("1".into());
    send(&ch, &dlq, b"short-lived", expiring).await;
    ch.basic_publish(
        "".into(),
        unique("nowhere").as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
    ch.basic_publish("".into(), unique("nowhere").as_str().into(), mandatory, b"x", BasicProperties::default())
        .await
        .unwrap()
        .await
        .unwrap();
    let acked = get_unacked(&ch, &q).await;
    acked.ack(BasicAckOptions::default()).await.unwrap();
    let rejected = get_unacked(&ch, &q).await;
    rejected.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    let _held = get_unacked(&ch, &q).await; // requeued (redelivered) when the connection closes
    let empty = unique("prom-empty");
    declare(&ch, &empty, FieldTable::default()).await;
    assert!(ch.basic_get(empty.as_str().into(), BasicGetOptions::default()).await.unwrap().is_none());
    conn.close(200, "bye".into()).await.unwrap();
    let (conn, ch) = b.channel().await;
    let consumer = ch
        .basic_consume(q.as_str().into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let stats = b.broker.stats().clone();
    common::eventually("the consumer to hold every message", || (stats.delivered_total() == 7).then_some(())).await;
    (q, dlq, (conn, consumer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_dashboards_metrics_are_all_there_after_traffic() {
    let b = common::start().await;
    let _consumer = traffic(&b).await;
    let (text, s) = scrape(&b, "/metrics").await;
    let names: std::collections::HashSet<&str> = s.samples.iter().map(|x| x.metric.as_str()).collect();
    let missing: Vec<&&str> = DASHBOARD.iter().filter(|n| !names.contains(**n)).collect();
    assert!(missing.is_empty(), "missing {missing:?}\n{text}");
    // One identity series, naming the node and cluster as the management API does.
    let identity: Vec<&Sample> = s.samples.iter().filter(|x| x.metric == "rabbitmq_identity_info").collect();
    assert_eq!(identity.len(), 1);
    let http = Http::new(b.mgmt);
    let overview = http.get("/overview").await.body;
    assert_eq!(identity[0].labels.get("rabbitmq_node"), overview["node"].as_str());
    let cluster = http.get("/cluster-name").await.body;
    assert_eq!(identity[0].labels.get("rabbitmq_cluster"), cluster["name"].as_str());
    // Aggregated: no per-object labels on queue series.
    assert!(s.samples.iter().all(|x| x.labels.get("queue").is_none()), "{text}");
    let amqp = [("protocol", "amqp091")];
    let classic = [("protocol", "amqp091"), ("queue_type", "rabbit_classic_queue")];
    assert_eq!(one(&s, "rabbitmq_global_messages_received_total", &amqp), 9.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_received_confirm_total", &amqp), 9.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_routed_total", &amqp), 7.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_unroutable_dropped_total", &amqp), 1.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_unroutable_returned_total", &amqp), 1.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_confirmed_total", &amqp), 9.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_delivered_get_manual_ack_total", &classic), 3.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_get_empty_total", &classic), 1.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_delivered_consume_manual_ack_total", &classic), 4.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_redelivered_total", &classic), 1.0);
    assert_eq!(one(&s, "rabbitmq_global_messages_acknowledged_total", &classic), 1.0);
    assert_eq!(one(&s, "rabbitmq_global_publishers", &amqp), 0.0, "the publishing channel is closed");
    let rejected = [("reason", "rejected"), ("dead_letter_strategy", "at_most_once")];
    assert_eq!(one(&s, "warren_messages_dead_lettered_total", &rejected), 1.0);
    let dl = [("queue_type", "rabbit_classic_queue"), ("dead_letter_strategy", "at_most_once")];
    assert_eq!(one(&s, "rabbitmq_global_messages_dead_lettered_rejected_total", &dl), 1.0);
    assert_eq!(one(&s, "rabbitmq_queues_created_total", &[]), 3.0);
    assert_eq!(one(&s, "warren_confirm_latency_seconds_count", &[]), 9.0);
    assert!(one(&s, "warren_store_batch_size_count", &[]) >= 0.0);
    assert_eq!(one(&s, "warren_store_queued_bytes", &[]), 0.0, "every confirmed write is done");
    assert!(one(&s, "rabbitmq_connections", &[]) >= 1.0);
    assert!(one(&s, "rabbitmq_connection_incoming_bytes_total", &[]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_object_figures_match_the_management_api() {
    let b = common::start().await;
    let (q, dlq, _consumer) = traffic(&b).await;
    let http = Http::new(b.mgmt);
    // The expired message leaves the dead-letter queue by its timer; the rejected one stays.
    let stats = b.broker.stats().clone();
    common::eventually("the expired message to be dropped", || {
        let expired = stats.dead_lettered_total(DeathReason::Expired, DeadLetterStrategy::Disabled);
        (expired == 1 && b.queue(&dlq).info().ready == 1).then_some(())
    })
    .await;
    let (text, s) = scrape(&b, "/metrics/per-object").await;
    let queues = http.get("/queues/%2F").await.body;
    let list = queues.as_array().expect("a list");
    assert!(list.len() >= 2);
    for api in list {
        let name = api["name"].as_str().unwrap();
        let labels = [("vhost", "/"), ("queue", name)];
        let field = |f: &str| api[f].as_f64().unwrap_or_else(|| panic!("{f} of {name}"));
        assert_eq!(one(&s, "rabbitmq_queue_messages_ready", &labels), field("messages_ready"), "{name}");
        assert_eq!(one(&s, "rabbitmq_queue_messages_unacked", &labels), field("messages_unacknowledged"), "{name}");
        assert_eq!(one(&s, "rabbitmq_queue_messages", &labels), field("messages"), "{name}");
        assert_eq!(one(&s, "rabbitmq_queue_consumers", &labels), field("consumers"), "{name}");
        let stats = &api["message_stats"];
        let stat = |f: &str| stats[f].as_f64().unwrap_or(0.0);
        assert_eq!(one(&s, "warren_queue_messages_published_total", &labels), stat("publish"), "{name}");
        assert_eq!(one(&s, "warren_queue_messages_delivered_total", &labels), stat("deliver"), "{name}");
        assert_eq!(one(&s, "warren_queue_messages_get_total", &labels), stat("get"), "{name}");
        assert_eq!(one(&s, "warren_queue_messages_acked_total", &labels), stat("ack"), "{name}");
        assert!(one(&s, "warren_queue_head_message_age_seconds", &labels) >= 0.0);
    }
    let q_labels = [("vhost", "/"), ("queue", q.as_str())];
    assert_eq!(one(&s, "rabbitmq_queue_messages_unacked", &q_labels), 4.0, "{text}");
    assert_eq!(one(&s, "rabbitmq_queue_consumers", &q_labels), 1.0);
    // Channels carry their management API name.
    let channels = http.get("/channels").await.body;
    let ch = &channels.as_array().expect("a list")[0];
    let ch_labels = [("channel", ch["name"].as_str().unwrap())];
    assert_eq!(one(&s, "rabbitmq_channel_consumers", &ch_labels), 1.0);
    assert_eq!(
        one(&s, "rabbitmq_channel_messages_unacked", &ch_labels),
        ch["messages_unacknowledged"].as_f64().unwrap()
    );
    let expired = [("reason", "expired"), ("dead_letter_strategy", "disabled")];
    assert_eq!(one(&s, "warren_messages_dead_lettered_total", &expired), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_stay_monotonic_when_a_queue_goes() {
    let b = common::start().await;
    let (q, _, _consumer) = traffic(&b).await;
    let (_, before) = scrape(&b, "/metrics").await;
    let (conn, ch) = b.channel().await;
    ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    conn.close(200, "bye".into()).await.ok();
    let (_, after) = scrape(&b, "/metrics").await;
    let (was, now) = (counters(&before), counters(&after));
    assert!(was.len() > 40, "{was:?}");
    for (k, v) in &was {
        let n = now.get(k).unwrap_or_else(|| panic!("{k} disappeared"));
        assert!(n >= v, "{k} went from {v} to {n}");
    }
    assert_eq!(
        one(&after, "rabbitmq_queues_deleted_total", &[]),
        one(&before, "rabbitmq_queues_deleted_total", &[]) + 1.0
    );
    assert_eq!(one(&after, "rabbitmq_queues", &[]), one(&before, "rabbitmq_queues", &[]) - 1.0);
    let acked = [("protocol", "amqp091"), ("queue_type", "rabbit_classic_queue")];
    assert_eq!(
        one(&after, "rabbitmq_global_messages_acknowledged_total", &acked),
        one(&before, "rabbitmq_global_messages_acknowledged_total", &acked)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detailed_returns_the_families_and_vhosts_asked_for() {
    let b = common::start().await;
    let (q, _, _consumer) = traffic(&b).await;
    let (text, s) = scrape(&b, "/metrics/detailed?family=queue_coarse_metrics&vhost=%2F").await;
    assert_eq!(one(&s, "rabbitmq_detailed_queue_messages_unacked", &[("vhost", "/"), ("queue", q.as_str())]), 4.0);
    assert!(s.samples.iter().all(|x| !x.metric.starts_with("rabbitmq_detailed_queue_consumers")), "{text}");
    assert_eq!(s.samples.iter().filter(|x| x.metric == "rabbitmq_identity_info").count(), 1);
    let (_, other) = scrape(&b, "/metrics/detailed?family=queue_coarse_metrics&vhost=nope").await;
    assert!(other.samples.iter().all(|x| !x.metric.starts_with("rabbitmq_detailed_queue")));
    let (_, none) = scrape(&b, "/metrics/detailed").await;
    assert!(none.samples.iter().all(|x| !x.metric.starts_with("rabbitmq_detailed_")), "no family, no series");
    let (_, churn) = scrape(&b, "/metrics/detailed?family=connection_churn_metrics").await;
    assert!(one(&churn, "rabbitmq_detailed_connections_opened_total", &[]) >= 2.0);
}
