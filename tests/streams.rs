//! Streams (`x-queue-type: stream`) through lapin: declaring, reading by offset and time, credit,
//! independent consumers, retention, filtering, offset tracking, and replay after a restart.

mod common;

use std::time::Duration;

use common::{reply_code, reply_text, unique, TestBroker, WAIT};
use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Consumer};

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

fn stream_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut all = vec![("x-queue-type", text("stream"))];
    all.extend_from_slice(extra);
    table(&all)
}

async fn declare(ch: &Channel, name: &str, extra: &[(&str, AMQPValue)]) {
    ch.queue_declare(name.into(), QueueDeclareOptions { durable: true, ..Default::default() }, stream_args(extra))
        .await
        .expect("stream declared");
}

/// Publishes `bodies` with confirms and waits for them all.
async fn publish(ch: &Channel, stream: &str, bodies: impl IntoIterator<Item = String>, headers: Option<FieldTable>) {
    let mut confirms = Vec::new();
    for body in bodies {
        let mut props = BasicProperties::default();
        if let Some(h) = &headers {
            props = props.with_headers(h.clone());
        }
        let c = ch.basic_publish("".into(), stream.into(), BasicPublishOptions::default(), body.as_bytes(), props);
        confirms.push(c.await.unwrap());
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack(), "every append is confirmed");
    }
}

/// A broker with a stream just declared (with `extra` arguments) and a channel in confirm
/// mode to publish to it.
async fn with_stream(extra: &[(&str, AMQPValue)]) -> (TestBroker, lapin::Connection, Channel, String) {
    let b = common::start().await;
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let s = unique("stream");
    declare(&ch, &s, extra).await;
    (b, conn, ch, s)
}

async fn consume(ch: &Channel, stream: &str, tag: &str, prefetch: u16, args: FieldTable) -> Consumer {
    ch.basic_qos(prefetch, BasicQosOptions::default()).await.unwrap();
    ch.basic_consume(stream.into(), tag.into(), BasicConsumeOptions::default(), args).await.expect("consume-ok")
}

fn offset_of(d: &Delivery) -> i64 {
    match d.properties.headers().as_ref().and_then(|h| h.inner().get("x-stream-offset").cloned()) {
        Some(AMQPValue::LongLongInt(n)) => n,
        other => panic!("x-stream-offset header missing or not a long: {other:?}"),
    }
}

/// The next `n` deliveries as (offset, body), acking each.
async fn take(c: &mut Consumer, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let d = tokio::time::timeout(WAIT, c.next()).await.expect("a delivery in time").unwrap().unwrap();
        got.push((offset_of(&d), String::from_utf8_lossy(&d.data).into_owned()));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    got
}

async fn nothing_more(c: &mut Consumer, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), c.next()).await.is_err()
}

fn bodies(range: std::ops::Range<u32>) -> impl Iterator<Item = String> {
    range.map(|i| format!("m{i}"))
}

#[tokio::test]
async fn declaring_refuses_what_a_stream_cannot_be() {
    let b = common::start().await;
    let conn = b.connect().await;
    let refused = |flags: QueueDeclareOptions, args: FieldTable| {
        let conn = &conn;
        async move {
            let ch = conn.create_channel().await.unwrap();
            let e = ch.queue_declare("s".into(), flags, args).await.expect_err("refused");
            (reply_code(&e), reply_text(&e))
        }
    };
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    let (code, why) = refused(QueueDeclareOptions::default(), stream_args(&[])).await;
    assert_eq!(
        (code, why.as_str()),
        (Some(406), "PRECONDITION_FAILED - invalid property 'non-durable' for queue 's' in vhost '/'")
    );
    let (code, why) = refused(durable, stream_args(&[("x-message-ttl", AMQPValue::LongInt(5))])).await;
    assert_eq!(code, Some(406));
    assert!(
        why.ends_with("invalid arg 'x-message-ttl' for queue 's' in vhost '/' of queue type rabbit_stream_queue"),
        "{why}"
    );
    let (_, why) = refused(durable, stream_args(&[("x-max-age", text("7d"))])).await;
    assert!(why.ends_with("invalid_max_age"), "{why}");
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "s", &[("x-max-age", text("7D")), ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1000))])
        .await;
    // A consumer must set a prefetch, and basic.get closes the connection (540).
    let e = ch.basic_consume("s".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default()).await;
    assert_eq!(reply_code(&e.expect_err("no prefetch")), Some(406));
    let ch = conn.create_channel().await.unwrap();
    let e = ch.basic_get("s".into(), BasicGetOptions::default()).await.expect_err("basic.get refused");
    assert_eq!(reply_code(&e), Some(540));
}

#[tokio::test]
async fn consumers_read_by_offset_each_at_their_own_pace() {
    let (b, _conn, ch, s) = with_stream(&[]).await;
    let mut h = FieldTable::default();
    h.insert("app".into(), text("kept"));
    publish(&ch, &s, bodies(0..10), Some(h)).await;

    // From the first: every message, offsets 0.., headers kept beside x-stream-offset.
    let reader = b.connect().await.create_channel().await.unwrap();
    let mut first = consume(&reader, &s, "first", 100, table(&[("x-stream-offset", text("first"))])).await;
    let got = take(&mut first, 10).await;
    assert_eq!(got, (0..10).map(|i| (i as i64, format!("m{i}"))).collect::<Vec<_>>());

    // From offset 7, and from "last": independent of the first reader.
    let other = b.connect().await.create_channel().await.unwrap();
    let mut at7 = consume(&other, &s, "at7", 100, table(&[("x-stream-offset", AMQPValue::LongLongInt(7))])).await;
    assert_eq!(take(&mut at7, 3).await.first().map(|(o, _)| *o), Some(7));
    let mut last = consume(&other, &s, "last", 100, table(&[("x-stream-offset", text("last"))])).await;
    assert_eq!(take(&mut last, 1).await, vec![(9, "m9".to_string())]);

    // "next" (the default) sees only what comes after it attached.
    let mut next = consume(&other, &s, "next", 100, FieldTable::default()).await;
    assert!(nothing_more(&mut next, 200).await);
    publish(&ch, &s, bodies(10..12), None).await;
    assert_eq!(take(&mut next, 2).await, vec![(10, "m10".to_string()), (11, "m11".to_string())]);
    assert_eq!(take(&mut first, 2).await.last().map(|(o, _)| *o), Some(11), "the tail reaches every reader");

    // The queue holds everything still: nothing was taken away.
    assert_eq!(b.queue(&s).message_count(), 12);
}

#[tokio::test]
async fn prefetch_is_credit_and_acks_return_it_without_redelivery() {
    let (b, _conn, ch, s) = with_stream(&[]).await;
    publish(&ch, &s, bodies(0..20), None).await;
    let reader = b.connect().await.create_channel().await.unwrap();
    let mut c = consume(&reader, &s, "c", 5, table(&[("x-stream-offset", text("first"))])).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(tokio::time::timeout(WAIT, c.next()).await.unwrap().unwrap().unwrap());
    }
    assert!(nothing_more(&mut c, 200).await, "five unacked: no credit left");
    // A nack with requeue returns credit and is not redelivered (as RabbitMQ's streams do).
    held.remove(0).nack(BasicNackOptions { requeue: true, ..Default::default() }).await.unwrap();
    let d = tokio::time::timeout(WAIT, c.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((offset_of(&d), d.redelivered), (5, false));
}

#[tokio::test]
async fn a_timestamp_or_an_interval_starts_at_the_messages_of_that_time() {
    let (b, _conn, ch, s) = with_stream(&[]).await;
    publish(&ch, &s, bodies(0..5), None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    publish(&ch, &s, bodies(5..8), None).await;
    let reader = b.connect().await.create_channel().await.unwrap();
    let mut c = consume(&reader, &s, "t", 100, table(&[("x-stream-offset", AMQPValue::Timestamp(since))])).await;
    assert_eq!(take(&mut c, 3).await.first().map(|(o, _)| *o), Some(5));
    assert!(nothing_more(&mut c, 200).await);
    let mut recent = consume(&reader, &s, "i", 100, table(&[("x-stream-offset", text("1h"))])).await;
    assert_eq!(take(&mut recent, 8).await.first().map(|(o, _)| *o), Some(0));
}

#[tokio::test]
async fn retention_cuts_whole_old_segments() {
    let small = [
        ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1000)),
        ("x-max-length-bytes", AMQPValue::LongInt(3000)),
    ];
    let (b, _conn, ch, s) = with_stream(&small).await;
    publish(&ch, &s, (0..100).map(|i| format!("{i:0>100}")), None).await;
    let info = b.queue(&s).stream().unwrap().info();
    assert!(info.first_offset > 0, "old segments are gone: {info:?}");
    assert!(info.bytes <= 3000 + 1200, "what is kept is about the limit (whole segments): {info:?}");
    assert_eq!(info.last_offset, Some(99));
    let reader = b.connect().await.create_channel().await.unwrap();
    let mut c = consume(&reader, &s, "c", 200, table(&[("x-stream-offset", text("first"))])).await;
    let got = take(&mut c, (100 - info.first_offset) as usize).await;
    assert_eq!(got.first().map(|(o, _)| *o as u64), Some(info.first_offset));
    assert_eq!(got.last().map(|(o, _)| *o), Some(99), "the newest messages are all there");
}

#[tokio::test]
async fn filters_deliver_exactly_what_a_consumer_asked_for() {
    let (b, _conn, ch, s) = with_stream(&[]).await;
    for (i, colour) in ["red", "blue", "", "red", "green", ""].iter().enumerate() {
        let headers = (!colour.is_empty()).then(|| table(&[("x-stream-filter-value", text(colour))]));
        publish(&ch, &s, [format!("{i}")], headers).await;
    }
    let reader = b.connect().await.create_channel().await.unwrap();
    let from_first = ("x-stream-offset", text("first"));
    let mut reds =
        consume(&reader, &s, "red", 100, table(&[from_first.clone(), ("x-stream-filter", text("red"))])).await;
    assert_eq!(take(&mut reds, 2).await.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![0, 3]);
    assert!(nothing_more(&mut reds, 200).await, "exactly the red ones, no false positives");
    let either = AMQPValue::FieldArray(vec![text("blue"), text("green")].into());
    let unfiltered = ("x-stream-match-unfiltered", AMQPValue::Boolean(true));
    let mut some = consume(&reader, &s, "bg", 100, table(&[from_first, ("x-stream-filter", either), unfiltered])).await;
    assert_eq!(take(&mut some, 4).await.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![1, 2, 4, 5]);
}

#[tokio::test]
async fn deleting_a_stream_cancels_its_consumers() {
    let b = common::start().await;
    let (_conn, ch) = b.channel().await;
    let s = unique("stream");
    declare(&ch, &s, &[]).await;
    let reader = b.connect().await.create_channel().await.unwrap();
    let mut c = consume(&reader, &s, "c", 10, FieldTable::default()).await;
    ch.queue_delete(s.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let end = tokio::time::timeout(WAIT, c.next()).await.expect("the consumer ends");
    assert!(end.is_none_or(|r| r.is_err()), "cancelled by the broker");
}

/// Replay after a restart: same offsets, same bodies; appends go on after the last offset; a
/// tracked consumer resumes after the offset it acked, also across the restart.
#[tokio::test]
async fn offsets_and_tracked_positions_survive_a_restart() {
    let b = common::start().await;
    let s = unique("stream");
    let tracked =
        table(&[("x-stream-offset", text("first")), ("x-stream-automatic-offset-tracking", AMQPValue::Boolean(true))]);
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        declare(&ch, &s, &[]).await;
        publish(&ch, &s, bodies(0..10), None).await;
        let mut group = consume(&ch, &s, "group-a", 100, tracked.clone()).await;
        assert_eq!(take(&mut group, 4).await.last().map(|(o, _)| *o), Some(3));
        conn.close(200, "bye".into()).await.unwrap();
    }
    let b: TestBroker = b.restart().await;
    let (_conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut replay = consume(&ch, &s, "replay", 100, table(&[("x-stream-offset", text("first"))])).await;
    assert_eq!(take(&mut replay, 10).await, (0..10).map(|i| (i as i64, format!("m{i}"))).collect::<Vec<_>>());
    publish(&ch, &s, bodies(10..11), None).await;
    assert_eq!(take(&mut replay, 1).await, vec![(10, "m10".to_string())]);
    // Same name, tracked: resumes at 4 although it asks for "first" (that is for a new name).
    let other = b.connect().await.create_channel().await.unwrap();
    let mut group = consume(&other, &s, "group-a", 100, tracked.clone()).await;
    assert_eq!(take(&mut group, 1).await.first().map(|(o, _)| *o), Some(4));
    let mut fresh = consume(&other, &s, "group-b", 100, tracked).await;
    assert_eq!(take(&mut fresh, 1).await.first().map(|(o, _)| *o), Some(0));
}

/// The management API and Prometheus show a stream's ends, size and each consumer's lag.
#[tokio::test]
async fn the_api_and_metrics_show_offsets_and_consumer_lag() {
    let (b, _conn, ch, s) = with_stream(&[]).await;
    publish(&ch, &s, bodies(0..5), None).await;
    let reader = b.connect().await.create_channel().await.unwrap();
    // Prefetch 2 and no acks: it holds offsets 0 and 1, three behind the tail.
    let mut c = consume(&reader, &s, "lagging", 2, table(&[("x-stream-offset", text("first"))])).await;
    for _ in 0..2 {
        tokio::time::timeout(WAIT, c.next()).await.unwrap().unwrap().unwrap();
    }
    let api = common::http::Http::new(b.mgmt);
    let q = api.get(&format!("/queues/%2F/{s}")).await;
    assert_eq!(q.status, 200);
    assert_eq!(q.body["type"], "stream");
    assert_eq!(q.body["messages_ready"], 5);
    let stream = &q.body["stream"];
    assert_eq!((stream["first_offset"].as_u64(), stream["last_offset"].as_u64()), (Some(0), Some(4)));
    assert_eq!(stream["consumers"][0]["consumer_tag"], "lagging");
    assert_eq!(stream["consumers"][0]["offset_lag"], 3);
    assert_eq!(q.body["consumer_details"].as_array().map(Vec::len), Some(1));
    // A look at offsets 3.. through the API delivers nothing and counts nothing.
    let peek = api.get(&format!("/queues/%2F/{s}/messages?offset=3&count=10")).await;
    let payloads: Vec<&str> = peek.body.as_array().unwrap().iter().filter_map(|m| m["payload"].as_str()).collect();
    assert_eq!(payloads, vec!["m3", "m4"]);
    let purge = api.delete(&format!("/queues/%2F/{s}/contents")).await;
    assert_eq!(purge.status, 400, "{:?}", purge.body);

    let url = format!("http://{}/metrics/per-object", b.prometheus);
    let text =
        tokio::task::spawn_blocking(move || ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap())
            .await
            .unwrap();
    let lag = format!("warren_stream_consumer_offset_lag{{vhost=\"/\",queue=\"{s}\",consumer_tag=\"lagging\"}} 3");
    assert!(
        text.lines().any(|l| l == lag),
        "no {lag} in:\n{}",
        text.lines().filter(|l| l.contains("stream")).collect::<Vec<_>>().join("\n")
    );
    let last = format!("warren_stream_last_offset{{vhost=\"/\",queue=\"{s}\"}} 4");
    assert!(text.lines().any(|l| l == last));
}

/// A policy's `max-length-bytes` applies to a live stream at once (and wins over the argument).
#[tokio::test]
async fn a_policy_sets_retention_on_a_live_stream() {
    let args = [
        ("x-stream-max-segment-size-bytes", AMQPValue::LongInt(1000)),
        ("x-max-length-bytes", AMQPValue::LongInt(1_000_000)),
    ];
    let (b, _conn, ch, s) = with_stream(&args).await;
    publish(&ch, &s, (0..100).map(|i| format!("{i:0>100}")), None).await;
    assert_eq!(b.queue(&s).stream().unwrap().info().first_offset, 0, "within the argument's limit");
    let api = common::http::Http::new(b.mgmt);
    let policy = serde_json::json!({"pattern": format!("^{s}$"), "definition": {"max-length-bytes": 2000}, "apply-to": "queues"});
    assert_eq!(api.put("/policies/%2F/small", policy).await.status, 201);
    let info = b.queue(&s).stream().unwrap().info();
    assert!(info.first_offset > 0 && info.bytes <= 2000 + 1200, "cut to the policy's limit: {info:?}");
    assert_eq!(info.last_offset, Some(99));
}

/// A filter that matches one message in a long log still finds it (the scan goes on in turns).
#[tokio::test]
async fn a_selective_filter_scans_a_long_log() {
    let (b, _conn, ch, s) = with_stream(&[]).await;
    publish(&ch, &s, bodies(0..10_000), Some(table(&[("x-stream-filter-value", text("common"))]))).await;
    publish(&ch, &s, ["needle".to_string()], Some(table(&[("x-stream-filter-value", text("rare"))]))).await;
    let reader = b.connect().await.create_channel().await.unwrap();
    let args = table(&[("x-stream-offset", text("first")), ("x-stream-filter", text("rare"))]);
    let mut c = consume(&reader, &s, "needle", 10, args).await;
    assert_eq!(take(&mut c, 1).await, vec![(10_000, "needle".to_string())]);
}
