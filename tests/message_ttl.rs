//! Message TTL: `x-message-ttl`, the per-message `expiration`, the lower of the two winning,
//! TTL 0 (to a consumer ready now, else expired), expired messages never delivered, expiry by
//! the broker's timer with no client action, RabbitMQ's 406 for a malformed `expiration`, and
//! persistent messages keeping their deadline across restarts.

mod common;

use std::time::{Duration, Instant};

use common::lifecycle::*;
use common::{reply_code, reply_text, unique, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

async fn confirming(b: &common::TestBroker) -> (Connection, Channel) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

fn ttl(ms: i32) -> FieldTable {
    table(vec![("x-message-ttl", int(ms))])
}

fn ttl_dlx(ms: i32, dlx: &str) -> FieldTable {
    table(vec![("x-message-ttl", int(ms)), ("x-dead-letter-exchange", text(dlx))])
}

#[tokio::test]
async fn queue_ttl_expires_messages_on_the_timer_without_any_client_action() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("ttl");
    declare(&ch, &q, ttl(1500)).await;
    let start = Instant::now();
    for i in 0..3 {
        send(&ch, &q, format!("m{i}").as_bytes(), BasicProperties::default()).await;
    }
    let before_ttl = ready(&b, &q);
    assert!(start.elapsed() < Duration::from_millis(1400), "publishing took too long to check before the TTL");
    assert_eq!(before_ttl, 3, "not expired before the TTL");
    // Read inside the broker: nothing a client does wakes the queue, only its timer.
    wait_for("the timer to expire the messages", || ready(&b, &q) == 0).await;
    assert!(start.elapsed() >= Duration::from_millis(1500), "expired early: {:?}", start.elapsed());
    assert_eq!(count(&ch, &q).await, 0);
    assert!(get(&ch, &q).await.is_none());
}

#[tokio::test]
async fn per_message_expiration_expires_only_that_message() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("exp");
    declare(&ch, &q, FieldTable::default()).await;
    send(&ch, &q, b"short", expiring("200")).await;
    send(&ch, &q, b"forever", BasicProperties::default()).await;
    wait_for("the short-lived message to expire", || ready(&b, &q) == 1).await;
    let left = get(&ch, &q).await.expect("the message without expiration");
    assert_eq!(left.data, b"forever");
    assert!(get(&ch, &q).await.is_none());
}

#[tokio::test]
async fn expiration_property_is_delivered_unchanged() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("exp-prop");
    declare(&ch, &q, ttl(60_000)).await;
    send(&ch, &q, b"x", expiring("60000")).await;
    let d = get(&ch, &q).await.unwrap();
    assert_eq!(d.properties.expiration().as_ref().map(|e| e.as_str()), Some("60000"), "not the time left");
}

#[tokio::test]
async fn the_lower_of_queue_ttl_and_message_expiration_wins() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    // Whichever is lower (200 ms) expires the message well within the wait; the other (60 s)
    // would outlast it.
    for (queue_ttl, expiration) in [(60_000, "200"), (200, "60000")] {
        let (dlx, dlq) = sink(&ch).await;
        let q = unique("lower");
        declare(&ch, &q, ttl_dlx(queue_ttl, &dlx)).await;
        send(&ch, &q, b"x", expiring(expiration)).await;
        let d = get_one(&ch, &dlq).await;
        let death = &deaths(&d)[0];
        assert_eq!(field(death, "reason"), "expired", "queue TTL {queue_ttl}, expiration {expiration}");
        assert_eq!(field(death, "original-expiration"), expiration);
        assert_eq!(count(&ch, &q).await, 0);
    }
}

#[tokio::test]
async fn ttl_zero_is_delivered_to_a_ready_consumer() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let q = unique("ttl0");
    declare(&ch, &q, ttl_dlx(0, &dlx)).await;
    let (_c2, consumer_ch) = b.channel().await;
    let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer =
        consumer_ch.basic_consume(q.as_str().into(), "c".into(), opts, FieldTable::default()).await.unwrap();
    send(&ch, &q, b"just in time", BasicProperties::default()).await;
    let d = tokio::time::timeout(WAIT, consumer.next()).await.expect("a delivery").unwrap().unwrap();
    assert_eq!(d.data, b"just in time");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(drain(&ch, &dlq).await.is_empty(), "a delivered message is not also dead-lettered");
}

#[tokio::test]
async fn ttl_zero_without_a_ready_consumer_expires_at_once() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;

    // No consumer at all: gone by the time the publish is confirmed.
    let q = unique("ttl0-alone");
    declare(&ch, &q, ttl_dlx(0, &dlx)).await;
    send(&ch, &q, b"nobody home", BasicProperties::default()).await;
    assert_eq!(ready(&b, &q), 0);
    let d = get_one(&ch, &dlq).await;
    assert_eq!((d.data.as_slice(), field(&deaths(&d)[0], "reason").as_str()), (&b"nobody home"[..], "expired"));

    // A consumer at its prefetch limit is not ready: the next message expires (per-message 0).
    let q = unique("ttl0-busy");
    declare(&ch, &q, table(vec![("x-dead-letter-exchange", text(&dlx))])).await;
    let (_c2, _consumer_ch, mut consumer) = one_at_a_time(&b, &q).await;
    send(&ch, &q, b"first", expiring("0")).await;
    let first = next(&mut consumer).await;
    assert_eq!(first.data, b"first");
    send(&ch, &q, b"second", expiring("0")).await;
    let d = get_one(&ch, &dlq).await;
    assert_eq!(d.data, b"second");
    assert_eq!(d.properties.expiration(), &None, "expiration removed from the dead letter");
    assert_eq!(field(&deaths(&d)[0], "original-expiration"), "0");
    first.ack(BasicAckOptions::default()).await.unwrap();
    let more = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(more.is_err(), "the expired message was delivered after all: {more:?}");
}

#[tokio::test]
async fn expired_messages_are_never_delivered() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;

    // basic.get: an expired message behind a live one is skipped when it reaches the head.
    let q = unique("behind");
    declare(&ch, &q, FieldTable::default()).await;
    send(&ch, &q, b"a", BasicProperties::default()).await;
    send(&ch, &q, b"b", expiring("100")).await;
    send(&ch, &q, b"c", BasicProperties::default()).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(bodies(drain(&ch, &q).await), ["a", "c"]);

    // A consumer: the message expires while the consumer is busy with the one before it.
    let q = unique("behind-consumer");
    declare(&ch, &q, FieldTable::default()).await;
    let (_c2, _consumer_ch, mut consumer) = one_at_a_time(&b, &q).await;
    send(&ch, &q, b"a", BasicProperties::default()).await;
    send(&ch, &q, b"b", expiring("150")).await;
    send(&ch, &q, b"c", BasicProperties::default()).await;
    let a = next(&mut consumer).await;
    assert_eq!(a.data, b"a");
    tokio::time::sleep(Duration::from_millis(400)).await;
    a.ack(BasicAckOptions::default()).await.unwrap();
    let c = next(&mut consumer).await;
    assert_eq!(c.data, b"c", "the expired message is skipped");
    c.ack(BasicAckOptions::default()).await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), consumer.next()).await.is_err());
}

#[tokio::test]
async fn invalid_expiration_closes_the_channel_with_precondition_failed() {
    let b = common::start().await;
    let conn = b.connect().await;
    let q = unique("bad-exp");
    declare(&conn.create_channel().await.unwrap(), &q, FieldTable::default()).await;
    for (expiration, reason) in
        [("abc", "no_integer"), ("-1", "{value_negative,-1}"), ("100ms", "{leftover_string,\"ms\"}")]
    {
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let confirm = ch
            .basic_publish("".into(), q.as_str().into(), Default::default(), b"x", expiring(expiration))
            .await
            .unwrap();
        let err = confirm.await.expect_err("the channel is closed");
        assert_eq!(reply_code(&err), Some(406), "{expiration}: {err}");
        assert_eq!(reply_text(&err), format!("PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}"));
    }
    // The connection is fine, and nothing was enqueued.
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(count(&ch, &q).await, 0);
}

/// The TTL of the `later` queues, and how long the broker stays down: past the 300 ms
/// deadlines of the `soon` queues, well before the `later` ones. A deadline counted from the
/// recovery instead of the publish would come at least `DOWN` after the right one.
const LATER_MS: u64 = 3000;
const DOWN: Duration = Duration::from_millis(1500);
/// How late after its deadline an expiry may be seen (less than `DOWN`, so a restarted
/// deadline is told apart).
const SLACK: Duration = Duration::from_millis(900);

/// Durable queues holding three persistent messages each: `later` (TTL `LATER_MS`) and
/// `later_own` (each message's `expiration` `LATER_MS`), `soon` (TTL 300 ms, dead-letters to
/// `dlq` through a durable fanout) and `soon_plain` (TTL 300 ms, no DLX). `first` and `last`
/// bracket the publishes.
struct Durables {
    later: String,
    later_own: String,
    soon: String,
    soon_plain: String,
    dlq: String,
    first: Instant,
    last: Instant,
}

async fn durables_with_deadlines(b: &common::TestBroker) -> Durables {
    let (conn, ch) = confirming(b).await;
    let dlx = exchange(&ch, ExchangeKind::Fanout, true).await;
    let (later, later_own) = (unique("later"), unique("later-own"));
    let (soon, soon_plain, dlq) = (unique("soon"), unique("soon-plain"), unique("dlq"));
    declare_durable(&ch, &dlq, FieldTable::default()).await;
    bind(&ch, &dlq, &dlx, "").await;
    declare_durable(&ch, &later, ttl(LATER_MS as i32)).await;
    declare_durable(&ch, &later_own, FieldTable::default()).await;
    declare_durable(&ch, &soon, ttl_dlx(300, &dlx)).await;
    declare_durable(&ch, &soon_plain, ttl(300)).await;
    let first = Instant::now();
    for i in 0..3 {
        let body = format!("m{i}");
        send(&ch, &later, body.as_bytes(), persistent()).await;
        send(&ch, &later_own, body.as_bytes(), persistent().with_expiration(LATER_MS.to_string().into())).await;
        send(&ch, &soon, body.as_bytes(), persistent()).await;
        send(&ch, &soon_plain, body.as_bytes(), persistent()).await;
    }
    let last = Instant::now();
    conn.close(200, "restart".into()).await.unwrap();
    Durables { later, later_own, soon, soon_plain, dlq, first, last }
}

fn later_deadline() -> Duration {
    Duration::from_millis(LATER_MS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_keep_their_deadline_across_a_restart() {
    let b = common::start().await;
    let d = durables_with_deadlines(&b).await;
    let b = b.restart_after(DOWN).await;
    let (later, later_own) = (ready(&b, &d.later), ready(&b, &d.later_own));
    assert!(d.first.elapsed() < later_deadline(), "the restart took too long to check before the TTL");
    assert_eq!((later, later_own), (3, 3), "recovered, not yet expired");
    let (_c, ch) = b.channel().await;

    // Past their deadline while the broker was down: never delivered; dead-lettered if the
    // queue has a DLX, dropped if not.
    let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumers = Vec::new();
    for queue in [&d.soon, &d.soon_plain] {
        let tag = unique("c");
        consumers.push(
            ch.basic_consume(queue.as_str().into(), tag.as_str().into(), opts, FieldTable::default()).await.unwrap(),
        );
    }
    for i in 0..3 {
        let dead = get_one(&ch, &d.dlq).await;
        assert_eq!(dead.data, format!("m{i}").as_bytes());
        assert_eq!(history(&dead), [(d.soon.clone(), "expired".to_string(), 1)]);
    }
    for mut c in consumers {
        let got = tokio::time::timeout(Duration::from_millis(300), c.next()).await;
        assert!(got.is_err(), "a message past its deadline was delivered: {got:?}");
    }
    assert_eq!((ready(&b, &d.soon), ready(&b, &d.soon_plain)), (0, 0));

    // Due `LATER_MS` after their publish, not after the recovery.
    let check_at = later_deadline() + SLACK;
    tokio::time::sleep(check_at.saturating_sub(d.last.elapsed())).await;
    assert!(get(&ch, &d.later).await.is_none(), "queue TTL restarted by the recovery");
    assert!(get(&ch, &d.later_own).await.is_none(), "message expiration restarted by the recovery");
    assert_eq!((count(&ch, &d.later).await, count(&ch, &d.later_own).await), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_messages_expire_on_the_timer_without_client_action() {
    let b = common::start().await;
    let d = durables_with_deadlines(&b).await;
    let b = b.restart_after(DOWN).await;
    // No client touches these queues: the broker must expire what it recovered on its own.
    wait_for("messages past their deadline to leave after recovery", || {
        ready(&b, &d.soon) + ready(&b, &d.soon_plain) == 0
    })
    .await;
    // A queue drops what expired under its lock and routes it to the dead-letter exchange just
    // after: the two counts are not read at one instant.
    wait_for("the expired messages to be dead-lettered", || ready(&b, &d.dlq) == 3).await;
    wait_for("the recovered messages to expire", || ready(&b, &d.later) + ready(&b, &d.later_own) == 0).await;
    assert!(d.first.elapsed() >= later_deadline(), "expired early: {:?}", d.first.elapsed());
    let late = d.last.elapsed().saturating_sub(later_deadline());
    assert!(late < SLACK, "expired {late:?} after the deadline: it restarted at the recovery");
}
