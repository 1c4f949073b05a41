//! The `x-consistent-hash` exchange (rabbitmq_consistent_hash_exchange's behaviour): each
//! message to exactly one bound queue or exchange, chosen by a hash of its routing key, the
//! `hash-header` header or the `hash-property` property; binding keys are weights; the plugin's
//! errors for bad keys and arguments; the same keys go to the same queues after a restart.

mod common;

use std::collections::HashMap;

use common::http::Http;
use common::{reply_code, reply_text, unique};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};

const CHASH: &str = "x-consistent-hash";

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

async fn declare(ch: &Channel, args: FieldTable, durable: bool) -> String {
    let x = unique("chash");
    let opts = ExchangeDeclareOptions { durable, ..Default::default() };
    ch.exchange_declare(x.as_str().into(), ExchangeKind::Custom(CHASH.into()), opts, args).await.unwrap();
    x
}

/// Queues bound to `x` with these weights.
async fn bound_queues(ch: &Channel, x: &str, weights: &[&str], durable: bool) -> Vec<String> {
    let mut names = Vec::new();
    for w in weights {
        let q = unique("part");
        let opts = QueueDeclareOptions { durable, ..Default::default() };
        ch.queue_declare(q.as_str().into(), opts, FieldTable::default()).await.unwrap();
        ch.queue_bind(q.as_str().into(), x.into(), (*w).into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        names.push(q);
    }
    names
}

/// Publishes one message per (routing key, properties), the key as its body, and waits for the
/// confirms.
async fn publish_all(ch: &Channel, x: &str, messages: impl IntoIterator<Item = (String, BasicProperties)>) {
    for (key, props) in messages {
        ch.basic_publish(x.into(), key.as_str().into(), Default::default(), key.as_bytes(), props).await.unwrap();
    }
    assert!(ch.wait_for_confirms().await.unwrap().is_empty(), "nothing returned");
}

fn keys(n: usize) -> impl Iterator<Item = (String, BasicProperties)> {
    (0..n).map(|i| (format!("key-{i}"), BasicProperties::default().with_delivery_mode(2)))
}

async fn counts(ch: &Channel, queues: &[String]) -> Vec<u32> {
    let mut out = Vec::new();
    for q in queues {
        out.push(common::passive_declare(ch, q).await.unwrap().message_count());
    }
    out
}

/// Empties the queues: which queue (index) each body went to.
async fn placement(ch: &Channel, queues: &[String]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for (i, q) in queues.iter().enumerate() {
        while let Some(m) = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            assert!(out.insert(String::from_utf8(m.delivery.data).unwrap(), i).is_none(), "delivered twice");
        }
    }
    out
}

async fn confirming_channel(b: &common::TestBroker) -> (lapin::Connection, Channel) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

#[tokio::test]
async fn each_message_goes_to_one_queue_in_proportion_to_the_weights() {
    let b = common::start().await;
    let (_c, ch) = confirming_channel(&b).await;
    let x = declare(&ch, FieldTable::default(), false).await;
    let qs = bound_queues(&ch, &x, &["1", "1", "2"], false).await;
    publish_all(&ch, &x, keys(4000)).await;
    let got = counts(&ch, &qs).await;
    assert_eq!(got.iter().sum::<u32>(), 4000, "each message once: {got:?}");
    for (count, due) in got.iter().zip([1000.0, 1000.0, 2000.0]) {
        assert!((f64::from(*count) - due).abs() < due * 0.2, "shares follow the weights: {got:?}");
    }
    for q in &qs {
        ch.queue_purge(q.as_str().into(), Default::default()).await.unwrap();
    }
    let cc = BasicProperties::default().with_headers(table(&[("CC", AMQPValue::FieldArray(vec![text("a")].into()))]));
    publish_all(&ch, &x, (0..20).map(|_| ("same".to_string(), cc.clone()))).await;
    let same = counts(&ch, &qs).await;
    assert_eq!((same.iter().sum::<u32>(), same.iter().max()), (20, Some(&20)), "one key, one queue: {same:?}");
}

#[tokio::test]
async fn binding_keys_must_be_weights() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let x = declare(&ch, FieldTable::default(), false).await;
    let fanout = unique("fan");
    ch.exchange_declare(fanout.as_str().into(), ExchangeKind::Fanout, Default::default(), FieldTable::default())
        .await
        .unwrap();
    let q = bound_queues(&ch, &x, &["+2", "007"], false).await.remove(0);
    let refused = [
        ("abc", r#"The binding key must be an integer: <<"abc">>"#),
        ("", "The binding key must be an integer: <<>>"),
        ("1.5", r#"The binding key must be an integer: <<"1.5">>"#),
        ("0", "The binding key must be greater than 0"),
        ("-1", "The binding key must be greater than 0"),
        ("10001", "The binding key must not exceed 10000"),
    ];
    for (key, why) in refused {
        let ch = conn.create_channel().await.unwrap();
        let err = ch
            .queue_bind(q.as_str().into(), x.as_str().into(), key.into(), Default::default(), FieldTable::default())
            .await
            .unwrap_err();
        assert_eq!((reply_code(&err), reply_text(&err)), (Some(406), format!("PRECONDITION_FAILED - {why}")));
        let ch = conn.create_channel().await.unwrap();
        let err = ch
            .exchange_bind(
                fanout.as_str().into(),
                x.as_str().into(),
                key.into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap_err();
        assert_eq!((reply_code(&err), reply_text(&err)), (Some(406), format!("PRECONDITION_FAILED - {why}")));
    }
    // A missing queue is reported first, as RabbitMQ does; unbinding checks nothing.
    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .queue_bind("no-such-queue".into(), x.as_str().into(), "abc".into(), Default::default(), Default::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    let ch = conn.create_channel().await.unwrap();
    ch.queue_unbind(q.as_str().into(), x.as_str().into(), "abc".into(), FieldTable::default()).await.unwrap();
}

#[tokio::test]
async fn hash_arguments_are_checked_when_declared() {
    let b = common::start().await;
    let conn = b.connect().await;
    let refused = [
        (
            table(&[("hash-header", text("h")), ("hash-property", text("message_id"))]),
            "hash-header and hash-property are mutually exclusive".to_string(),
        ),
        (table(&[("hash-property", text("app_id"))]), "Unsupported property: app_id".to_string()),
        (
            table(&[("hash-header", AMQPValue::LongInt(5))]),
            "invalid arg 'hash-header' for exchange 'NAME' in vhost '/'".to_string(),
        ),
    ];
    for (args, why) in refused {
        let ch = conn.create_channel().await.unwrap();
        let x = unique("bad");
        let err = ch
            .exchange_declare(x.as_str().into(), ExchangeKind::Custom(CHASH.into()), Default::default(), args)
            .await
            .unwrap_err();
        assert_eq!(reply_code(&err), Some(406));
        assert_eq!(reply_text(&err), format!("PRECONDITION_FAILED - {}", why.replace("NAME", &x)));
    }
    // A redeclare does not compare them (nor does the plugin); the type it does.
    let ch = conn.create_channel().await.unwrap();
    let x = declare(&ch, table(&[("hash-header", text("h"))]), false).await;
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Custom(CHASH.into()),
        Default::default(),
        table(&[("hash-property", text("timestamp"))]),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(x.as_str().into(), ExchangeKind::Direct, Default::default(), FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(
        reply_text(&err),
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'direct' but \
             current is ''x-consistent-hash''"
        )
    );
}

#[tokio::test]
async fn a_header_or_a_property_can_be_hashed_instead_and_its_absence_is_one_value() {
    let b = common::start().await;
    let (_c, ch) = confirming_channel(&b).await;
    type Props = fn(usize) -> BasicProperties;
    let cases: [(&str, &str, Props); 4] = [
        ("hash-header", "user", |i| {
            BasicProperties::default().with_headers(table(&[("user", text(&format!("u{}", i % 100)))]))
        }),
        ("hash-property", "message_id", |i| BasicProperties::default().with_message_id(format!("m{}", i % 100).into())),
        ("hash-property", "correlation_id", |i| {
            BasicProperties::default().with_correlation_id(format!("c{}", i % 100).into())
        }),
        ("hash-property", "timestamp", |i| BasicProperties::default().with_timestamp(1_700_000_000 + (i % 100) as u64)),
    ];
    for (arg, name, props) in cases {
        let x = declare(&ch, table(&[(arg, text(name))]), false).await;
        let qs = bound_queues(&ch, &x, &["1", "1", "1", "1"], false).await;
        // 400 messages, 100 values, each value under four routing keys.
        publish_all(&ch, &x, (0..400).map(|i| (format!("rk-{i}"), props(i)))).await;
        let placed = placement(&ch, &qs).await;
        assert_eq!(placed.len(), 400);
        for i in 0..100 {
            let q = placed[&format!("rk-{i}")];
            assert!((1..4).all(|k| placed[&format!("rk-{}", i + 100 * k)] == q), "{name}: one value, one queue");
        }
        let used = (0..4).filter(|q| placed.values().any(|v| v == q)).count();
        assert_eq!(used, 4, "{name}: values spread over every queue");
        // Without the header or property: all to one queue.
        publish_all(&ch, &x, keys(50)).await;
        let without = counts(&ch, &qs).await;
        assert_eq!(without.iter().max(), Some(&50), "{name}: absent is one value: {without:?}");
    }
}

#[tokio::test]
async fn exchanges_take_a_share_and_unbound_or_deleted_queues_leave_the_ring() {
    let b = common::start().await;
    let (_c, ch) = confirming_channel(&b).await;
    let x = declare(&ch, FieldTable::default(), false).await;
    let fanout = unique("fan");
    ch.exchange_declare(fanout.as_str().into(), ExchangeKind::Fanout, Default::default(), FieldTable::default())
        .await
        .unwrap();
    let mut fanned = Vec::new();
    for _ in 0..2 {
        let q = unique("fanned");
        ch.queue_declare(q.as_str().into(), Default::default(), FieldTable::default()).await.unwrap();
        ch.queue_bind(q.as_str().into(), fanout.as_str().into(), "".into(), Default::default(), Default::default())
            .await
            .unwrap();
        fanned.push(q);
    }
    ch.exchange_bind(fanout.as_str().into(), x.as_str().into(), "1".into(), Default::default(), Default::default())
        .await
        .unwrap();
    let direct = bound_queues(&ch, &x, &["1"], false).await.remove(0);
    publish_all(&ch, &x, keys(1000)).await;
    let got = counts(&ch, &[fanned[0].clone(), fanned[1].clone(), direct.clone()]).await;
    assert_eq!(got[0], got[1], "the exchange's share fans out: {got:?}");
    assert_eq!(got[0] + got[2], 1000, "{got:?}");
    assert!(got[0] > 300 && got[2] > 300, "{got:?}");

    ch.exchange_unbind(fanout.as_str().into(), x.as_str().into(), "1".into(), Default::default(), Default::default())
        .await
        .unwrap();
    ch.queue_purge(direct.as_str().into(), Default::default()).await.unwrap();
    publish_all(&ch, &x, keys(100)).await;
    assert_eq!(counts(&ch, std::slice::from_ref(&direct)).await, [100]);

    ch.queue_delete(direct.as_str().into(), Default::default()).await.unwrap();
    let mandatory = BasicPublishOptions { mandatory: true, ..Default::default() };
    let confirm = ch.basic_publish(x.as_str().into(), "k".into(), mandatory, b"lost", Default::default()).await;
    let confirm = confirm.unwrap().await.unwrap();
    assert_eq!(confirm.take_message().expect("returned").reply_code, 312, "nothing bound: unroutable");
}

#[tokio::test]
async fn removing_one_queue_moves_only_its_keys() {
    let b = common::start().await;
    let (_c, ch) = confirming_channel(&b).await;
    let x = declare(&ch, FieldTable::default(), false).await;
    let qs = bound_queues(&ch, &x, &["1"; 5], false).await;
    publish_all(&ch, &x, keys(1000)).await;
    let before = placement(&ch, &qs).await;
    ch.queue_unbind(qs[2].as_str().into(), x.as_str().into(), "1".into(), FieldTable::default()).await.unwrap();
    publish_all(&ch, &x, keys(1000)).await;
    let after = placement(&ch, &qs).await;
    let moved = before.iter().filter(|(k, q)| after[*k] != **q).count();
    assert!(before.iter().all(|(k, q)| after[k] == *q || *q == 2), "only the unbound queue's keys move");
    assert_eq!(moved, before.values().filter(|q| **q == 2).count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_go_to_the_same_queues_after_a_restart() {
    let b = common::start().await;
    let (x, qs, before) = {
        let (conn, ch) = confirming_channel(&b).await;
        let x = declare(&ch, FieldTable::default(), true).await;
        // Bound in an order a restart does not keep (the store lists bindings by name).
        let qs = bound_queues(&ch, &x, &["3", "1", "2", "1"], true).await;
        publish_all(&ch, &x, keys(600)).await;
        let before = placement(&ch, &qs).await;
        conn.close(200, "restart".into()).await.unwrap();
        (x, qs, before)
    };
    let b = b.restart().await;
    let (_c, ch) = confirming_channel(&b).await;
    publish_all(&ch, &x, keys(600)).await;
    assert_eq!(placement(&ch, &qs).await, before);
}

#[tokio::test]
async fn the_management_api_lists_the_type() {
    let b = common::start().await;
    let overview = Http::new(b.mgmt).get("/overview").await;
    let types = overview.body["exchange_types"].as_array().unwrap();
    let chash = types.iter().find(|t| t["name"] == CHASH).expect("listed");
    assert_eq!(chash["description"], "Consistent Hashing Exchange");
}
