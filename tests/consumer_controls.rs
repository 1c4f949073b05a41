//! Single active consumer, delivery limits with `x-delivery-count`, and the consumer ack
//! timeout, through lapin.

mod common;

use std::time::Duration;

use common::{reply_code, reply_text, unique, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

async fn declare(ch: &Channel, q: &str, arguments: FieldTable) {
    ch.queue_declare(q.into(), QueueDeclareOptions::default(), arguments).await.unwrap();
}

async fn publish(ch: &Channel, q: &str, body: &[u8]) {
    ch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), body, BasicProperties::default())
        .await
        .unwrap();
}

async fn consumer(ch: &Channel, q: &str, tag: &str) -> lapin::Consumer {
    ch.basic_consume(q.into(), tag.into(), BasicConsumeOptions::default(), FieldTable::default()).await.unwrap()
}

async fn next(c: &mut lapin::Consumer) -> lapin::message::Delivery {
    tokio::time::timeout(WAIT, c.next()).await.expect("a delivery").unwrap().unwrap()
}

async fn nothing_for(c: &mut lapin::Consumer, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), c.next()).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_fails_over_with_the_unacked_messages_first() {
    let b = common::start().await;
    let (_p, publisher) = b.channel().await;
    let q = unique("sac");
    declare(&publisher, &q, args(&[("x-single-active-consumer", AMQPValue::Boolean(true))])).await;
    let (conn_a, ch_a) = b.channel().await;
    ch_a.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut a = consumer(&ch_a, &q, "a").await;
    let (_cb, ch_b) = b.channel().await;
    let mut standby = consumer(&ch_b, &q, "b").await;
    for m in [b"m1", b"m2", b"m3"] {
        publish(&publisher, &q, m).await;
    }
    assert_eq!(next(&mut a).await.data, b"m1");
    assert!(nothing_for(&mut standby, 300).await, "the standby gets nothing while a is active, even when a is full");

    conn_a.close(200, "".into()).await.unwrap();
    let got: Vec<(Vec<u8>, bool)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let d = next(&mut standby).await;
            v.push((d.data.clone(), d.redelivered));
        }
        v
    };
    assert_eq!(got, vec![(b"m1".to_vec(), true), (b"m2".to_vec(), false), (b"m3".to_vec(), false)]);

    let (_cc, ch_c) = b.channel().await;
    let refused = ch_c
        .basic_consume(
            q.as_str().into(),
            "x".into(),
            BasicConsumeOptions { exclusive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&refused), Some(403));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_after_its_delivery_limit() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let (q, dlq) = (unique("poison"), unique("parked"));
    declare(&ch, &dlq, FieldTable::default()).await;
    let arguments = args(&[
        ("x-delivery-limit", AMQPValue::LongInt(2)),
        ("x-dead-letter-exchange", AMQPValue::LongString("".into())),
        ("x-dead-letter-routing-key", AMQPValue::LongString(dlq.as_str().into())),
    ]);
    declare(&ch, &q, arguments).await;
    publish(&ch, &q, b"poison").await;
    let mut c = consumer(&ch, &q, "worker").await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let d = next(&mut c).await;
        let count = d.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count").cloned());
        counts.push(count);
        d.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.unwrap();
    }
    assert_eq!(counts, vec![None, Some(AMQPValue::LongLongInt(1)), Some(AMQPValue::LongLongInt(2))]);
    assert!(nothing_for(&mut c, 300).await, "limit 2: delivered three times, then gone");
    let parked = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(m) = ch.basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("dead-lettered");
    let headers = parked.delivery.properties.headers().clone().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else { panic!("x-death") };
    let AMQPValue::FieldTable(death) = &deaths.as_slice()[0] else { panic!("entry") };
    assert_eq!(death.inner().get("reason"), Some(&AMQPValue::LongString("delivery_limit".into())));
    assert!(headers.inner().get("x-delivery-count").is_none(), "the dead letter carries no delivery count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_sitting_on_a_delivery_loses_its_channel_and_the_message_is_requeued() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("slow");
    declare(&ch, &q, args(&[("x-consumer-timeout", AMQPValue::LongInt(300))])).await;
    publish(&ch, &q, b"job").await;
    let (_c2, worker) = b.channel().await;
    let mut c = consumer(&worker, &q, "w").await;
    let d = next(&mut c).await;
    assert!(!d.redelivered);
    // Never acked: after 300 ms the broker closes the channel with 406, which ends the
    // consumer's stream with that error.
    let end = tokio::time::timeout(WAIT, c.next()).await.expect("the channel is closed");
    let err = match end {
        Some(Err(e)) => e,
        other => panic!("expected the channel error, got {other:?}"),
    };
    assert_eq!(reply_code(&err), Some(406), "{err:?}");
    let text = reply_text(&err);
    assert!(
        text.contains("delivery acknowledgement on channel") && text.contains("timed out. Timeout value used: 300 ms"),
        "{text}"
    );
    let back = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("requeued");
    assert!(back.delivery.redelivered);
    assert_eq!(back.delivery.data, b"job");
}
