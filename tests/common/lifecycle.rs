//! Helpers for the message-lifecycle tests (TTL, dead-lettering, length limits, priorities,
//! queue expiry): declaring with arguments, publishing with confirms, getting and draining,
//! waiting with a deadline, and reading `x-death` headers.

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, Consumer, ExchangeKind};
use warren::protocol::ShortStr;

use super::{unique, TestBroker, WAIT};

/// A consumer (manual acks) on `queue`, on a connection of its own, taking one unacked message
/// at a time. Keep the connection and channel as long as the consumer is used.
pub async fn one_at_a_time(b: &TestBroker, queue: &str) -> (Connection, Channel, Consumer) {
    let (conn, ch) = b.channel().await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let consumer = ch.basic_consume(queue.into(), "c".into(), Default::default(), FieldTable::default()).await.unwrap();
    (conn, ch, consumer)
}

/// The consumer's next delivery, within [`WAIT`].
pub async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next()).await.expect("a delivery in time").unwrap().unwrap()
}

/// A field table from `(key, value)` pairs.
pub fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

/// An integer argument as most clients send it (`signedint`).
pub fn int(n: i32) -> AMQPValue {
    AMQPValue::LongInt(n)
}

pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// A non-durable queue with `args`.
pub async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args).await.expect("queue.declare");
}

pub async fn declare_durable(ch: &Channel, name: &str, args: FieldTable) {
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(name.into(), durable, args).await.expect("queue.declare (durable)");
}

/// A new exchange of `kind`; returns its name.
pub async fn exchange(ch: &Channel, kind: ExchangeKind, durable: bool) -> String {
    let x = unique("x");
    let options = ExchangeDeclareOptions { durable, ..Default::default() };
    ch.exchange_declare(x.as_str().into(), kind, options, FieldTable::default()).await.expect("exchange.declare");
    x
}

pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    ch.queue_bind(queue.into(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
        .await
        .expect("queue.bind");
}

/// A fanout dead-letter exchange with one queue bound to it: `(exchange, queue)`.
pub async fn sink(ch: &Channel) -> (String, String) {
    let dlx = exchange(ch, ExchangeKind::Fanout, false).await;
    let dlq = unique("dlq");
    declare(ch, &dlq, FieldTable::default()).await;
    bind(ch, &dlq, &dlx, "").await;
    (dlx, dlq)
}

/// Publishes and waits for the broker's answer (`Ack`/`Nack` on a confirm channel).
pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) -> Confirmation {
    ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body, props)
        .await
        .expect("basic.publish")
        .await
        .expect("publisher confirm")
}

/// Publishes to `queue` through the default exchange; the broker must confirm it.
pub async fn send(ch: &Channel, queue: &str, body: &[u8], props: BasicProperties) {
    let c = publish(ch, "", queue, body, props).await;
    assert!(c.is_ack(), "{:?} not acked: {c:?}", String::from_utf8_lossy(body));
}

/// Properties with a per-message TTL.
pub fn expiring(ms: &str) -> BasicProperties {
    BasicProperties::default().with_expiration(ms.into())
}

pub fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// `basic.get` with auto-ack: the message at the head, if any.
pub async fn get(ch: &Channel, queue: &str) -> Option<Delivery> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.expect("basic.get").map(|m| m.delivery)
}

/// `basic.get` without auto-ack: the caller settles it.
pub async fn get_unacked(ch: &Channel, queue: &str) -> Delivery {
    let got = ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.expect("basic.get");
    got.unwrap_or_else(|| panic!("a message in {queue}")).delivery
}

/// Waits (up to [`WAIT`]) for a message to arrive in `queue` and takes it (auto-ack).
pub async fn get_one(ch: &Channel, queue: &str) -> Delivery {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(d) = get(ch, queue).await {
            return d;
        }
        assert!(Instant::now() < deadline, "no message arrived in {queue} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes every ready message (auto-ack); returns the bodies in delivery order.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(d) = get(ch, queue).await {
        out.push(d.data);
    }
    out
}

/// The bodies as text, for readable assertions.
pub fn bodies(raw: Vec<Vec<u8>>) -> Vec<String> {
    raw.into_iter().map(|b| String::from_utf8(b).unwrap()).collect()
}

/// The ready count a passive declare reports.
pub async fn count(ch: &Channel, queue: &str) -> u32 {
    super::passive_declare(ch, queue).await.expect("passive declare").message_count()
}

/// The ready count read inside the broker: no client action that could trigger expiry.
pub fn ready(b: &TestBroker, queue: &str) -> u32 {
    b.queue(queue).message_count()
}

/// Whether the queue exists, looked up inside the broker (a passive declare would count as a
/// use and restart `x-expires`).
pub fn exists(b: &TestBroker, queue: &str) -> bool {
    let vhost = b.broker.vhost(&ShortStr::from_static("/")).expect("vhost /");
    vhost.queue(&ShortStr::try_from(queue).unwrap()).is_ok()
}

/// Polls `done` until it holds (up to [`WAIT`]); returns how long that took.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

pub fn headers(d: &Delivery) -> &FieldTable {
    d.properties.headers().as_ref().expect("headers")
}

pub fn header<'a>(d: &'a Delivery, key: &str) -> Option<&'a AMQPValue> {
    d.properties.headers().as_ref().and_then(|h| h.inner().get(key))
}

/// A string value (longstr) as text.
pub fn string(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("not a longstr: {other:?}"),
    }
}

/// A string header's value.
pub fn header_str(d: &Delivery, key: &str) -> String {
    string(header(d, key).unwrap_or_else(|| panic!("header {key}")))
}

/// An array of strings as texts.
pub fn strings(v: &AMQPValue) -> Vec<String> {
    match v {
        AMQPValue::FieldArray(a) => a.as_slice().iter().map(string).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

/// The `x-death` entries, newest first.
pub fn deaths(d: &Delivery) -> Vec<FieldTable> {
    match header(d, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a
            .as_slice()
            .iter()
            .map(|e| match e {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("no x-death array: {other:?}"),
    }
}

/// A text field of an `x-death` entry.
pub fn field(entry: &FieldTable, key: &str) -> String {
    string(entry.inner().get(key).unwrap_or_else(|| panic!("x-death field {key} in {entry:?}")))
}

/// `count` of an `x-death` entry (RabbitMQ sends a `long`).
pub fn death_count(entry: &FieldTable) -> i64 {
    match entry.inner().get("count") {
        Some(AMQPValue::LongLongInt(n)) => *n,
        other => panic!("x-death count is not a long: {other:?}"),
    }
}

/// `(queue, reason, count)` of each `x-death` entry, newest first.
pub fn history(d: &Delivery) -> Vec<(String, String, i64)> {
    deaths(d).iter().map(|e| (field(e, "queue"), field(e, "reason"), death_count(e))).collect()
}

/// Seconds since the UNIX epoch, for `x-death` times.
pub fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}
