//! Deduplication by the `x-deduplication-header` header: in a queue while the first message is
//! held (also across a restart), and in an `x-message-deduplication` exchange's memory.

mod common;

use common::{reply_code, unique};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn with_id(id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(table(&[("x-deduplication-header", AMQPValue::LongString(id.into()))]))
}

/// Publishes with confirms; every publish, duplicate or not, is acked.
async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    let confirm = ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body, props);
    assert!(confirm.await.unwrap().await.unwrap().is_ack());
}

async fn drain(ch: &Channel, q: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(m) = ch.basic_get(q.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        out.push(m.delivery.data);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_holds_one_message_per_identity_until_it_is_gone_also_across_a_restart() {
    let b = common::start().await;
    let q = unique("dedup");
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let opts = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(q.as_str().into(), opts, table(&[("x-message-deduplication", AMQPValue::Boolean(true))]))
            .await
            .unwrap();
        publish(&ch, "", &q, b"first", with_id("order-1")).await;
        publish(&ch, "", &q, b"again", with_id("order-1")).await;
        publish(&ch, "", &q, b"plain", BasicProperties::default().with_delivery_mode(2)).await;
        conn.close(200, "".into()).await.unwrap();
    }
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publish(&ch, "", &q, b"after restart", with_id("order-1")).await;
    let held = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().expect("first");
    assert_eq!(held.delivery.data, b"first");
    publish(&ch, "", &q, b"while unacked", with_id("order-1")).await;
    held.delivery.ack(BasicAckOptions::default()).await.unwrap();
    publish(&ch, "", &q, b"after ack", with_id("order-1")).await;
    assert_eq!(drain(&ch, &q).await, vec![b"plain".to_vec(), b"after ack".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deduplicating_exchange_routes_like_fanout_and_remembers_what_it_routed() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let (x, q1, q2) = (unique("dx"), unique("q1"), unique("q2"));
    let declare = |arguments: FieldTable| {
        let ch = ch.clone();
        let x = x.clone();
        async move {
            ch.exchange_declare(
                x.as_str().into(),
                lapin::ExchangeKind::Custom("x-message-deduplication".into()),
                ExchangeDeclareOptions::default(),
                arguments,
            )
            .await
        }
    };
    let (_c2, other) = b.channel().await;
    let refused = {
        let ch = other.clone();
        ch.exchange_declare(
            x.as_str().into(),
            lapin::ExchangeKind::Custom("x-message-deduplication".into()),
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err()
    };
    assert_eq!(reply_code(&refused), Some(406), "x-cache-size is required");
    declare(table(&[("x-cache-size", AMQPValue::LongInt(2))])).await.unwrap();
    for q in [&q1, &q2] {
        ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    publish(&ch, &x, "any", b"a1", with_id("a")).await;
    publish(&ch, &x, "any", b"a2", with_id("a")).await;
    publish(&ch, &x, "any", b"b1", with_id("b")).await;
    publish(&ch, &x, "any", b"c1", with_id("c")).await; // a cache of 2: "a" is forgotten
    publish(&ch, &x, "any", b"a3", with_id("a")).await;
    for q in [&q1, &q2] {
        assert_eq!(drain(&ch, q).await, vec![b"a1".to_vec(), b"b1".to_vec(), b"c1".to_vec(), b"a3".to_vec()]);
    }
}
