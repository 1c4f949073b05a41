//! The `x-delayed-message` exchange (rabbitmq-delayed-message-exchange's behaviour): messages
//! with a positive `x-delay` are routed when due, in due order, through the routing type named
//! by `x-delayed-type`, carrying `x-delay` negated; confirms once held; held messages of durable
//! exchanges survive restarts and `kill -9`, overdue ones are routed at start-up.
//!
//! Timing assertions are one-sided and generous: never earlier than the delay (less 5 ms of clock
//! slack), and within seconds.

mod common;

use std::time::{Duration, Instant};

use common::{connect_port, free_port, reply_code, reply_text, spawn_warren, unique, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Consumer, ExchangeKind};

const SLACK: Duration = Duration::from_millis(5);
/// Latest a delayed message may arrive after it is due, however loaded the test machine.
const LATE: Duration = Duration::from_secs(3);

fn delayed(routing: &str) -> (ExchangeKind, FieldTable) {
    let mut args = FieldTable::default();
    args.insert("x-delayed-type".into(), AMQPValue::LongString(routing.into()));
    (ExchangeKind::Custom("x-delayed-message".into()), args)
}

async fn declare_delayed(ch: &Channel, name: &str, routing: &str, durable: bool) {
    let (kind, args) = delayed(routing);
    let opts = ExchangeDeclareOptions { durable, ..Default::default() };
    ch.exchange_declare(name.into(), kind, opts, args).await.unwrap();
}

async fn bound_queue(ch: &Channel, exchange: &str, key: &str, durable: bool) -> String {
    let name = unique("dq");
    let opts = QueueDeclareOptions { durable, ..Default::default() };
    ch.queue_declare(name.as_str().into(), opts, FieldTable::default()).await.unwrap();
    ch.queue_bind(
        name.as_str().into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    name
}

fn with_delay(delay: Option<AMQPValue>) -> BasicProperties {
    let mut props = BasicProperties::default().with_delivery_mode(2);
    if let Some(d) = delay {
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), d);
        props = props.with_headers(headers);
    }
    props
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &str, delay: Option<AMQPValue>) {
    ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body.as_bytes(), with_delay(delay))
        .await
        .unwrap();
}

async fn consume(ch: &Channel, q: &str) -> Consumer {
    let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
    ch.basic_consume(q.into(), "".into(), opts, FieldTable::default()).await.unwrap()
}

/// The next delivery: body, its x-delay header, and when it arrived.
async fn next(consumer: &mut Consumer, within: Duration) -> (String, Option<AMQPValue>, Instant) {
    let d = tokio::time::timeout(within, consumer.next()).await.expect("a delivery in time").unwrap().unwrap();
    let header = d.properties.headers().as_ref().and_then(|h| h.inner().get("x-delay").cloned());
    (String::from_utf8(d.data.clone()).unwrap(), header, Instant::now())
}

async fn count(ch: &Channel, q: &str) -> u32 {
    common::passive_declare(ch, q).await.unwrap().message_count()
}

fn int(v: i32) -> Option<AMQPValue> {
    Some(AMQPValue::LongInt(v))
}

#[tokio::test]
async fn messages_arrive_in_due_order_after_their_delay_with_x_delay_negated() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("delayed");
    declare_delayed(&ch, &x, "direct", false).await;
    let q = bound_queue(&ch, &x, "k", false).await;
    let mut consumer = consume(&ch, &q).await;
    let start = Instant::now();
    // Published in reverse order of delay.
    for ms in [800, 600, 400, 200] {
        publish(&ch, &x, "k", &ms.to_string(), int(ms)).await;
    }
    publish(&ch, &x, "k", "now", None).await;
    let (body, header, _) = next(&mut consumer, WAIT).await;
    assert_eq!((body.as_str(), header), ("now", None), "no x-delay: routed at once, no header added");
    for ms in [200, 400, 600, 800] {
        let (body, header, at) = next(&mut consumer, WAIT).await;
        assert_eq!(body, ms.to_string(), "due order");
        let due = Duration::from_millis(ms as u64);
        let after = at - start;
        assert!(after + SLACK >= due, "message delayed {ms} ms arrived after {after:?}");
        assert!(after < due + LATE, "message delayed {ms} ms arrived only after {after:?}");
        assert_eq!(header, Some(AMQPValue::LongInt(-ms)), "x-delay negated on delivery");
    }
}

#[tokio::test]
async fn no_zero_or_negative_delay_routes_at_once_and_integer_strings_delay() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("delayed");
    declare_delayed(&ch, &x, "direct", false).await;
    let q = bound_queue(&ch, &x, "k", false).await;
    publish(&ch, &x, "k", "zero", int(0)).await;
    publish(&ch, &x, "k", "negative", int(-500)).await;
    publish(&ch, &x, "k", "not a number", Some(AMQPValue::LongString("soon".into()))).await;
    let start = Instant::now();
    publish(&ch, &x, "k", "string", Some(AMQPValue::LongString("1300".into()))).await;
    publish(&ch, &x, "k", "long", Some(AMQPValue::LongLongInt(1250))).await;
    assert_eq!(count(&ch, &q).await, 3, "only the undelayed ones are there yet");
    let mut consumer = consume(&ch, &q).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let (body, header, at) = next(&mut consumer, WAIT).await;
        got.push((body, header, at - start));
    }
    let headers: Vec<_> = got.iter().map(|(b, h, _)| (b.as_str(), h.clone())).collect();
    assert_eq!(
        headers,
        [
            ("zero", int(0)),
            ("negative", int(-500)),
            ("not a number", Some(AMQPValue::LongString("soon".into()))),
            ("long", int(-1250)),
            ("string", int(-1300)),
        ],
        "undelayed messages keep their header"
    );
    assert!(got[3].2 + SLACK >= Duration::from_millis(1250) && got[4].2 + SLACK >= Duration::from_millis(1300));
}

#[tokio::test]
async fn the_routing_type_is_honoured() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let (topic, fanout, direct) = (unique("dtopic"), unique("dfanout"), unique("ddirect"));
    declare_delayed(&ch, &topic, "topic", false).await;
    declare_delayed(&ch, &fanout, "fanout", false).await;
    declare_delayed(&ch, &direct, "direct", false).await;
    let orders = bound_queue(&ch, &topic, "orders.*", false).await;
    let (all_1, all_2) =
        (bound_queue(&ch, &fanout, "ignored", false).await, bound_queue(&ch, &fanout, "", false).await);
    let exact = bound_queue(&ch, &direct, "exact", false).await;
    // Exchange-to-exchange: a plain exchange bound to a delayed one hands it the message to hold.
    let front = unique("front");
    ch.exchange_declare(front.as_str().into(), ExchangeKind::Fanout, Default::default(), FieldTable::default())
        .await
        .unwrap();
    ch.exchange_bind(direct.as_str().into(), front.as_str().into(), "".into(), Default::default(), Default::default())
        .await
        .unwrap();

    publish(&ch, &topic, "orders.new", "match", int(1000)).await;
    publish(&ch, &topic, "invoices.new", "no match", int(1000)).await;
    publish(&ch, &fanout, "anything", "to all", int(1000)).await;
    publish(&ch, &direct, "exact", "exact", int(1000)).await;
    publish(&ch, &direct, "other", "other", int(1000)).await;
    publish(&ch, &front, "exact", "via e2e", int(1050)).await;
    assert_eq!(count(&ch, &exact).await, 0, "held, also when reached through another exchange");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let deadline = Instant::now() + WAIT;
    while count(&ch, &exact).await < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (q, want) in [(&orders, 1), (&all_1, 1), (&all_2, 1), (&exact, 2)] {
        assert_eq!(count(&ch, q).await, want, "queue {q}");
    }
    let m = ch.basic_get(exact.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().unwrap();
    assert_eq!(m.delivery.data, b"exact");
    assert_eq!(m.delivery.exchange.as_str(), direct, "delivered as published to the delayed exchange");
    assert_eq!(m.delivery.routing_key.as_str(), "exact");
}

#[tokio::test]
async fn x_delayed_type_is_required_and_checked() {
    let b = common::start().await;
    let conn = b.connect().await;
    let x = unique("delayed");
    let ch = conn.create_channel().await.unwrap();
    let kind = ExchangeKind::Custom("x-delayed-message".into());
    let err = ch
        .exchange_declare(x.as_str().into(), kind.clone(), Default::default(), FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"
    );

    let ch = conn.create_channel().await.unwrap();
    let (kind, args) = delayed("x-delayed-message");
    let err = ch.exchange_declare(x.as_str().into(), kind, Default::default(), args).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert_eq!(
        reply_text(&err),
        "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"
    );

    // Redeclaring compares x-delayed-type too.
    let ch = conn.create_channel().await.unwrap();
    declare_delayed(&ch, &x, "topic", false).await;
    declare_delayed(&ch, &x, "topic", false).await;
    let (kind, args) = delayed("direct");
    let err = ch.exchange_declare(x.as_str().into(), kind, Default::default(), args).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert!(reply_text(&err).contains("inequivalent arg 'x-delayed-type'"), "{}", reply_text(&err));
    let ch = conn.create_channel().await.unwrap();
    let err =
        ch.exchange_declare(x.as_str().into(), ExchangeKind::Topic, Default::default(), FieldTable::default()).await;
    assert!(reply_text(&err.unwrap_err()).contains("inequivalent arg 'type'"));

    // An unknown routing type is what declaring that type is: a connection error.
    let ch = conn.create_channel().await.unwrap();
    let (kind, args) = delayed("nope");
    let err = ch.exchange_declare(unique("bad").as_str().into(), kind, Default::default(), args).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(503));
    assert_eq!(reply_text(&err), "COMMAND_INVALID - unknown exchange type 'nope'");
    assert!(!conn.status().connected(), "503 closes the connection");
}

#[tokio::test]
async fn confirms_come_once_held_and_mandatory_returns_as_the_plugin_does() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let x = unique("delayed");
    declare_delayed(&ch, &x, "direct", true).await;
    let q = bound_queue(&ch, &x, "k", true).await;
    let start = Instant::now();
    let mut pending = Vec::new();
    for i in 0..20 {
        let c = ch
            .basic_publish(
                x.as_str().into(),
                "k".into(),
                Default::default(),
                format!("m{i}").as_bytes(),
                with_delay(int(3000)),
            )
            .await
            .unwrap();
        pending.push(c);
    }
    for c in pending {
        let confirmation = tokio::time::timeout(WAIT, c).await.unwrap().unwrap();
        assert!(confirmation.is_ack());
    }
    assert!(start.elapsed() < Duration::from_millis(3000), "confirmed when held, not when routed");
    assert_eq!(count(&ch, &q).await, 0);

    // The plugin cannot know where a held message will go: mandatory ones come back at once
    // (312 NO_ROUTE, before the ack), and are still delivered when due.
    let confirm = ch
        .basic_publish(
            x.as_str().into(),
            "k".into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            b"mandatory",
            with_delay(int(300)),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let returned = confirm.take_message().expect("basic.return before the ack");
    assert_eq!((returned.reply_code, returned.reply_text.as_str()), (312, "NO_ROUTE"));
    let mut consumer = consume(&ch, &q).await;
    let mut bodies = Vec::new();
    for _ in 0..21 {
        bodies.push(next(&mut consumer, WAIT).await.0);
    }
    assert_eq!(bodies[0], "mandatory");
    assert_eq!(bodies[1..], (0..20).map(|i| format!("m{i}")).collect::<Vec<_>>()[..], "same due time: publish order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_messages_of_a_durable_exchange_survive_a_restart_and_fire_afterwards() {
    let b = common::start().await;
    let (x, transient_x) = (unique("durable-delays"), unique("transient-delays"));
    let q;
    let published;
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        declare_delayed(&ch, &x, "topic", true).await;
        declare_delayed(&ch, &transient_x, "topic", false).await;
        q = bound_queue(&ch, &x, "#", true).await;
        ch.queue_bind(
            q.as_str().into(),
            transient_x.as_str().into(),
            "#".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
        published = Instant::now();
        for (body, ms) in [("b", 4500), ("a", 4000)] {
            let c = ch
                .basic_publish(x.as_str().into(), "r".into(), Default::default(), body.as_bytes(), with_delay(int(ms)))
                .await
                .unwrap();
            assert!(c.await.unwrap().is_ack());
        }
        publish(&ch, &transient_x, "r", "lost with its exchange", int(4000)).await;
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    assert!(published.elapsed() < Duration::from_millis(4000), "the restart took too long for this test");
    assert_eq!(count(&ch, &q).await, 0, "not due yet");
    let mut consumer = consume(&ch, &q).await;
    for (body, ms) in [("a", 4000), ("b", 4500)] {
        let (got, header, at) = next(&mut consumer, WAIT).await;
        assert_eq!(got, body);
        assert_eq!(header, int(-ms));
        assert!(at - published + SLACK >= Duration::from_millis(ms as u64), "{body} arrived early");
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(500), consumer.next()).await.is_err(),
        "a transient exchange's messages do not survive it"
    );
    let ch2 = b.connect().await.create_channel().await.unwrap();
    let err = ch2
        .exchange_declare(
            transient_x.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_messages_are_routed_at_start_up_after_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let x = "overdue-delays";
    let q = "overdue-queue";
    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    {
        let conn = connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        declare_delayed(&ch, x, "direct", true).await;
        let opts = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(q.into(), opts, FieldTable::default()).await.unwrap();
        ch.queue_bind(q.into(), x.into(), "k".into(), Default::default(), Default::default()).await.unwrap();
        for i in 0..50 {
            let c = ch
                .basic_publish(
                    x.into(),
                    "k".into(),
                    Default::default(),
                    format!("m{i}").as_bytes(),
                    with_delay(int(400 + i)),
                )
                .await
                .unwrap();
            assert!(c.await.unwrap().is_ack(), "confirmed means on disk");
        }
    }
    warren.kill().unwrap(); // SIGKILL: no shutdown, no flush
    warren.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await; // all of them are overdue now
    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    let conn = connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&ch, q).await;
    for i in 0..50 {
        let (body, header, _) = next(&mut consumer, WAIT).await;
        assert_eq!(body, format!("m{i}"), "in due order");
        assert_eq!(header, int(-400 - i));
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), consumer.next()).await.is_err(), "each once");
    warren.kill().unwrap();
    warren.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_messages_fall_due_exits_0_and_loses_none() {
    let data = tempfile::tempdir().unwrap();
    let (x, q) = ("term-delays", "term-queue");
    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    {
        let conn = connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        declare_delayed(&ch, x, "fanout", true).await;
        let opts = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(q.into(), opts, FieldTable::default()).await.unwrap();
        ch.queue_bind(q.into(), x.into(), "".into(), Default::default(), Default::default()).await.unwrap();
        let mut pending = Vec::new();
        for i in 0..2000 {
            let c = ch
                .basic_publish(x.into(), "".into(), Default::default(), b"m", with_delay(int(50 + i % 1500)))
                .await
                .unwrap();
            pending.push(c);
        }
        for c in pending {
            assert!(c.await.unwrap().is_ack());
        }
        // Some are routed by now, most are still held: stop in the middle.
        let status = std::process::Command::new("kill").args(["-TERM", &warren.id().to_string()]).status().unwrap();
        assert!(status.success());
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = warren.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "warren did not stop within 15 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    let conn = connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    let deadline = Instant::now() + WAIT;
    let mut n = count(&ch, q).await;
    while n < 2000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        n = count(&ch, q).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(&ch, q).await, 2000, "each held message routed exactly once across the shutdown");
    warren.kill().unwrap();
    warren.wait().unwrap();
}
