//! Dead-lettering: the reasons (rejected by reject and nack, expired, maxlen), the `x-death`
//! history as RabbitMQ 3.13 writes it (fields, newest first, counts, first and last death),
//! `x-dead-letter-routing-key`, `expiration` kept as `original-expiration`, a missing DLX,
//! cycles, what does not dead-letter (requeue, channel close), and durability across restarts.

mod common;

use std::time::Duration;

use common::lifecycle::*;
use common::{unique, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

async fn confirming(b: &common::TestBroker) -> (Connection, Channel) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

fn dlx_args(dlx: &str) -> FieldTable {
    table(vec![("x-dead-letter-exchange", text(dlx))])
}

/// A queue dead-lettering to `dlx`, with more arguments.
async fn source(ch: &Channel, dlx: &str, more: Vec<(&str, AMQPValue)>) -> String {
    let q = unique("src");
    let mut args = vec![("x-dead-letter-exchange", text(dlx))];
    args.extend(more);
    declare(ch, &q, table(args)).await;
    q
}

async fn reject_one(ch: &Channel, q: &str) {
    let d = get_unacked(ch, q).await;
    d.reject(BasicRejectOptions { requeue: false }).await.unwrap();
}

fn cc(keys: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(keys.iter().map(|k| text(k)).collect::<Vec<_>>().into())
}

#[tokio::test]
async fn a_rejected_message_carries_its_history_and_keeps_its_properties() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let x = exchange(&ch, ExchangeKind::Direct, false).await;
    let src = source(&ch, &dlx, vec![]).await;
    bind(&ch, &src, &x, "orders").await;
    let props = BasicProperties::default()
        .with_headers(table(vec![("app", text("keep"))]))
        .with_message_id("m-1".into())
        .with_correlation_id("c-1".into())
        .with_content_type("text/plain".into())
        .with_priority(3)
        .with_delivery_mode(2);
    assert!(publish(&ch, &x, "orders", b"payload", props).await.is_ack());
    let before = now_s();
    reject_one(&ch, &src).await;

    let d = get_one(&ch, &dlq).await;
    assert_eq!(d.data, b"payload");
    assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), (dlx.as_str(), "orders"), "to the DLX, same key");
    assert!(!d.redelivered);
    let p = &d.properties;
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), "m-1");
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "c-1");
    assert_eq!(p.content_type().as_ref().unwrap().as_str(), "text/plain");
    assert_eq!((*p.priority(), *p.delivery_mode(), p.expiration()), (Some(3), Some(2), &None));
    assert_eq!(header_str(&d, "app"), "keep");

    let [death] = deaths(&d).try_into().unwrap();
    let mut fields: Vec<&str> = death.inner().keys().map(|k| k.as_str()).collect();
    fields.sort();
    assert_eq!(fields, ["count", "exchange", "queue", "reason", "routing-keys", "time"]);
    assert_eq!(death_count(&death), 1);
    assert_eq!((field(&death, "reason"), field(&death, "queue")), ("rejected".into(), src.clone()));
    assert_eq!(field(&death, "exchange"), x);
    assert_eq!(strings(&death.inner()["routing-keys"]), ["orders"]);
    match death.inner()["time"] {
        AMQPValue::Timestamp(t) => assert!(t >= before && t <= now_s() + 1, "time {t}, now {}", now_s()),
        ref other => panic!("time is not a timestamp: {other:?}"),
    }
    for (which, reason, queue, exchange) in [("first", "rejected", &src, &x), ("last", "rejected", &src, &x)] {
        assert_eq!(header_str(&d, &format!("x-{which}-death-reason")), reason);
        assert_eq!(&header_str(&d, &format!("x-{which}-death-queue")), queue);
        assert_eq!(&header_str(&d, &format!("x-{which}-death-exchange")), exchange);
    }
    assert_eq!(count(&ch, &src).await, 0);
}

#[tokio::test]
async fn nack_without_requeue_dead_letters_every_message_of_a_multiple_nack_in_order() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let src = source(&ch, &dlx, vec![]).await;
    for i in 0..3 {
        send(&ch, &src, format!("n{i}").as_bytes(), BasicProperties::default()).await;
    }
    let mut last = None;
    for _ in 0..3 {
        last = Some(get_unacked(&ch, &src).await);
    }
    last.unwrap().nack(BasicNackOptions { multiple: true, requeue: false }).await.unwrap();
    for i in 0..3 {
        let d = get_one(&ch, &dlq).await;
        assert_eq!(d.data, format!("n{i}").as_bytes());
        assert_eq!(d.routing_key.as_str(), src, "published to the default exchange with the queue's name");
        let [death] = deaths(&d).try_into().unwrap();
        assert_eq!(
            (field(&death, "reason"), field(&death, "queue"), field(&death, "exchange")),
            ("rejected".into(), src.clone(), String::new())
        );
        assert_eq!(strings(&death.inner()["routing-keys"]), [src.as_str()]);
    }
    assert!(get(&ch, &dlq).await.is_none());
    assert_eq!(count(&ch, &src).await, 0);
}

#[tokio::test]
async fn a_consumer_nack_dead_letters_too() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let src = source(&ch, &dlx, vec![]).await;
    let mut consumer =
        ch.basic_consume(src.as_str().into(), "c".into(), Default::default(), FieldTable::default()).await.unwrap();
    send(&ch, &src, b"no thanks", BasicProperties::default()).await;
    let d = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
    d.nack(BasicNackOptions { multiple: false, requeue: false }).await.unwrap();
    let dead = get_one(&ch, &dlq).await;
    assert_eq!((dead.data.as_slice(), history(&dead)), (&b"no thanks"[..], vec![(src, "rejected".into(), 1)]));
}

#[tokio::test]
async fn expired_messages_keep_their_expiration_as_original_expiration() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;

    let src = source(&ch, &dlx, vec![]).await;
    send(&ch, &src, b"old news", expiring("150")).await;
    let d = get_one(&ch, &dlq).await;
    assert_eq!(d.data, b"old news");
    assert_eq!(d.properties.expiration(), &None, "removed: it must not expire again downstream");
    let [death] = deaths(&d).try_into().unwrap();
    assert_eq!(
        (field(&death, "reason"), field(&death, "queue"), field(&death, "exchange")),
        ("expired".into(), src.clone(), String::new())
    );
    assert_eq!((field(&death, "original-expiration"), death_count(&death)), ("150".into(), 1));
    assert_eq!(header_str(&d, "x-first-death-reason"), "expired");
    assert_eq!(header_str(&d, "x-last-death-reason"), "expired");

    // Expired by the queue's TTL: a longer own expiration is still recorded; none, no field.
    let src = source(&ch, &dlx, vec![("x-message-ttl", int(150))]).await;
    send(&ch, &src, b"a", expiring("100000")).await;
    send(&ch, &src, b"b", BasicProperties::default()).await;
    let (a, b_) = (get_one(&ch, &dlq).await, get_one(&ch, &dlq).await);
    assert_eq!((a.data.as_slice(), b_.data.as_slice()), (&b"a"[..], &b"b"[..]));
    assert_eq!(field(&deaths(&a)[0], "original-expiration"), "100000");
    assert!(!deaths(&b_)[0].contains_key("original-expiration"));

    // Rejected with an expiration: recorded as well.
    let src = source(&ch, &dlx, vec![]).await;
    send(&ch, &src, b"r", expiring("60000")).await;
    reject_one(&ch, &src).await;
    let d = get_one(&ch, &dlq).await;
    assert_eq!(d.properties.expiration(), &None);
    let death = &deaths(&d)[0];
    assert_eq!((field(death, "reason"), field(death, "original-expiration")), ("rejected".into(), "60000".into()));
}

#[tokio::test]
async fn a_message_pushed_out_by_max_length_is_dead_lettered_as_maxlen() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let x = exchange(&ch, ExchangeKind::Direct, false).await;
    let src = source(&ch, &dlx, vec![("x-max-length", int(1))]).await;
    bind(&ch, &src, &x, "k").await;
    assert!(publish(&ch, &x, "k", b"old", BasicProperties::default()).await.is_ack());
    assert!(publish(&ch, &x, "k", b"new", BasicProperties::default()).await.is_ack());
    let d = get_one(&ch, &dlq).await;
    assert_eq!((d.data.as_slice(), d.exchange.as_str(), d.routing_key.as_str()), (&b"old"[..], dlx.as_str(), "k"));
    let [death] = deaths(&d).try_into().unwrap();
    assert_eq!(
        (field(&death, "reason"), field(&death, "queue"), field(&death, "exchange")),
        ("maxlen".into(), src.clone(), x)
    );
    assert_eq!((strings(&death.inner()["routing-keys"]), death_count(&death)), (vec!["k".to_string()], 1));
    assert_eq!(header_str(&d, "x-first-death-reason"), "maxlen");
    assert_eq!(bodies(drain(&ch, &src).await), ["new"]);
}

#[tokio::test]
async fn dead_letter_routing_key_replaces_the_key_and_drops_cc() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let dlx = exchange(&ch, ExchangeKind::Direct, false).await;
    let (retry, audit) = (unique("retry"), unique("audit"));
    declare(&ch, &retry, FieldTable::default()).await;
    declare(&ch, &audit, FieldTable::default()).await;
    bind(&ch, &retry, &dlx, "retry").await;
    bind(&ch, &audit, &dlx, "audit").await;
    let x = exchange(&ch, ExchangeKind::Direct, false).await;
    let src = source(&ch, &dlx, vec![("x-dead-letter-routing-key", text("retry"))]).await;
    bind(&ch, &src, &x, "orders").await;
    let headers = table(vec![("CC", cc(&["audit"])), ("keep", int(1))]);
    publish(&ch, &x, "orders", b"m", BasicProperties::default().with_headers(headers)).await;
    reject_one(&ch, &src).await;

    let d = get_one(&ch, &retry).await;
    assert_eq!(d.routing_key.as_str(), "retry");
    assert!(header(&d, "CC").is_none(), "CC removed with the new routing key");
    assert_eq!(header(&d, "keep"), Some(&int(1)));
    assert_eq!(strings(&deaths(&d)[0].inner()["routing-keys"]), ["orders", "audit"], "the keys it had");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(drain(&ch, &audit).await.is_empty(), "not routed by its old CC key");
}

#[tokio::test]
async fn without_a_dead_letter_routing_key_the_key_and_cc_keys_route_again() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let dlx = exchange(&ch, ExchangeKind::Direct, false).await;
    let mut queues = Vec::new();
    for key in ["orders", "audit", "other"] {
        let q = unique(key);
        declare(&ch, &q, FieldTable::default()).await;
        bind(&ch, &q, &dlx, key).await;
        queues.push(q);
    }
    let src = source(&ch, &dlx, vec![]).await;
    bind(&ch, &src, "amq.direct", "orders").await;
    let props = BasicProperties::default().with_headers(table(vec![("CC", cc(&["audit"]))]));
    publish(&ch, "amq.direct", "orders", b"m", props).await;
    reject_one(&ch, &src).await;
    for q in &queues[..2] {
        let d = get_one(&ch, q).await;
        assert_eq!((d.data.as_slice(), d.routing_key.as_str()), (&b"m"[..], "orders"), "{q}");
        assert_eq!(strings(header(&d, "CC").unwrap()), ["audit"], "CC kept");
        assert_eq!(strings(&deaths(&d)[0].inner()["routing-keys"]), ["orders", "audit"]);
    }
    assert!(drain(&ch, &queues[2]).await.is_empty());
}

#[tokio::test]
async fn a_missing_dead_letter_exchange_drops_silently() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let src = source(&ch, &unique("missing"), vec![]).await;
    send(&ch, &src, b"gone", BasicProperties::default()).await;
    reject_one(&ch, &src).await;
    send(&ch, &src, b"still fine", BasicProperties::default()).await; // the channel is healthy
    assert_eq!(bodies(drain(&ch, &src).await), ["still fine"]);
}

/// W (work) --reject--> DX --> T (TTL 200 ms) --expire--> X2 "back" --> W, twice: the history
/// is newest first, counts per (queue, reason), and each entry keeps its first exchange and keys.
#[tokio::test]
async fn x_death_history_is_newest_first_and_counts_repeats() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let x = exchange(&ch, ExchangeKind::Direct, false).await;
    let dx = exchange(&ch, ExchangeKind::Fanout, false).await;
    let x2 = exchange(&ch, ExchangeKind::Direct, false).await;
    let w = source(&ch, &dx, vec![]).await;
    bind(&ch, &w, &x, "job").await;
    bind(&ch, &w, &x2, "back").await;
    let t = source(&ch, &x2, vec![("x-dead-letter-routing-key", text("back")), ("x-message-ttl", int(200))]).await;
    bind(&ch, &t, &dx, "").await;
    let props = BasicProperties::default().with_headers(table(vec![("CC", cc(&["copy"]))]));
    publish(&ch, &x, "job", b"work", props).await;

    let first = get_unacked(&ch, &w).await;
    assert_eq!((first.exchange.as_str(), first.routing_key.as_str()), (x.as_str(), "job"));
    first.reject(BasicRejectOptions { requeue: false }).await.unwrap();

    for round in 1..=2 {
        let d = get_one_unacked(&ch, &w).await;
        assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), (x2.as_str(), "back"));
        assert!(header(&d, "CC").is_none(), "T replaced the routing key");
        assert_eq!(history(&d), [(t.clone(), "expired".into(), round), (w.clone(), "rejected".into(), round)]);
        let [t_death, w_death] = deaths(&d).try_into().unwrap();
        assert_eq!(
            (field(&t_death, "exchange"), strings(&t_death.inner()["routing-keys"])),
            (dx.clone(), vec!["job".into(), "copy".into()])
        );
        assert_eq!(
            (field(&w_death, "exchange"), strings(&w_death.inner()["routing-keys"])),
            (x.clone(), vec!["job".into(), "copy".into()])
        );
        let first_death = ["reason", "queue", "exchange"].map(|f| header_str(&d, &format!("x-first-death-{f}")));
        assert_eq!(first_death, ["rejected".to_string(), w.clone(), x.clone()]);
        let last_death = ["reason", "queue", "exchange"].map(|f| header_str(&d, &format!("x-last-death-{f}")));
        assert_eq!(last_death, ["expired".to_string(), t.clone(), dx.clone()]);
        if round == 1 {
            d.reject(BasicRejectOptions { requeue: false }).await.unwrap();
        } else {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
}

/// Waits for a message in `queue` and takes it without auto-ack.
async fn get_one_unacked(ch: &Channel, queue: &str) -> lapin::message::Delivery {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(m) = ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.unwrap() {
            return m.delivery;
        }
        assert!(std::time::Instant::now() < deadline, "no message arrived in {queue}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn expiry_cycles_are_dropped() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    // Back to itself through the default exchange.
    let itself = source(&ch, "", vec![("x-message-ttl", int(100))]).await;
    send(&ch, &itself, b"loop", BasicProperties::default()).await;
    // a → b → a.
    let (qa, qb) = (unique("cycle-a"), unique("cycle-b"));
    for (q, to) in [(&qa, &qb), (&qb, &qa)] {
        let args = vec![
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(to)),
            ("x-message-ttl", int(100)),
        ];
        declare(&ch, q, table(args)).await;
    }
    send(&ch, &qa, b"ping", BasicProperties::default()).await;
    // Several TTLs: a message going round would be in one of the queues at every look.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for _ in 0..5 {
        assert_eq!((ready(&b, &itself), ready(&b, &qa), ready(&b, &qb)), (0, 0, 0));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(get(&ch, &itself).await.is_none());
}

#[tokio::test]
async fn a_reject_cycle_is_not_dropped() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = source(&ch, "", vec![]).await;
    send(&ch, &q, b"boomerang", BasicProperties::default()).await;
    reject_one(&ch, &q).await;
    for round in 1..=3 {
        let d = get_unacked(&ch, &q).await;
        assert_eq!(d.data, b"boomerang");
        assert!(!d.redelivered, "a new message, not a redelivery");
        assert_eq!(history(&d), [(q.clone(), "rejected".into(), round)]);
        assert_eq!(header_str(&d, "x-first-death-queue"), q);
        d.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    }
}

#[tokio::test]
async fn requeue_does_not_dead_letter() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let src = source(&ch, &dlx, vec![]).await;
    send(&ch, &src, b"again", BasicProperties::default()).await;
    get_unacked(&ch, &src).await.reject(BasicRejectOptions { requeue: true }).await.unwrap();
    get_unacked(&ch, &src).await.nack(BasicNackOptions { multiple: false, requeue: true }).await.unwrap();
    let d = get(&ch, &src).await.expect("requeued");
    assert_eq!((d.data.as_slice(), d.redelivered, d.properties.headers()), (&b"again"[..], true, &None));
    assert!(drain(&ch, &dlq).await.is_empty());
}

#[tokio::test]
async fn closing_a_channel_with_unacked_messages_does_not_dead_letter() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let src = source(&ch, &dlx, vec![]).await;
    send(&ch, &src, b"unacked", BasicProperties::default()).await;
    let (conn2, consumer_ch) = b.channel().await;
    let mut consumer = consumer_ch
        .basic_consume(src.as_str().into(), "c".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    let d = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.data, b"unacked");
    consumer_ch.close(200, "bye".into()).await.unwrap();
    let back = get_one(&ch, &src).await;
    assert_eq!((back.data.as_slice(), back.redelivered), (&b"unacked"[..], true));
    // The same when the whole connection goes.
    send(&ch, &src, b"unacked too", BasicProperties::default()).await;
    let other = conn2.create_channel().await.unwrap();
    let _held = get_unacked(&other, &src).await;
    conn2.close(200, "bye".into()).await.unwrap();
    let back = get_one(&ch, &src).await;
    assert_eq!((back.data.as_slice(), back.redelivered), (&b"unacked too"[..], true));
    assert!(drain(&ch, &dlq).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_persistent_message_in_a_durable_queue_survives_a_restart() {
    let b = common::start().await;
    let (dlq, src) = (unique("dlq-durable"), unique("src-durable"));
    {
        let (conn, ch) = confirming(&b).await;
        let dlx = exchange(&ch, ExchangeKind::Fanout, true).await;
        declare_durable(&ch, &dlq, FieldTable::default()).await;
        bind(&ch, &dlq, &dlx, "").await;
        declare_durable(&ch, &src, dlx_args(&dlx)).await;
        let props = persistent().with_message_id("kept".into());
        send(&ch, &src, b"dead but durable", props).await;
        reject_one(&ch, &src).await;
        wait_for("the dead letter", || ready(&b, &dlq) == 1).await;
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    let d = get(&ch, &dlq).await.expect("the dead letter survived the restart");
    assert_eq!(d.data, b"dead but durable");
    assert_eq!(d.properties.message_id().as_ref().unwrap().as_str(), "kept");
    assert_eq!(history(&d), [(src.clone(), "rejected".into(), 1)]);
    assert_eq!(header_str(&d, "x-first-death-queue"), src);
    assert_eq!(count(&ch, &src).await, 0, "and it is gone from the queue it died in");
}
