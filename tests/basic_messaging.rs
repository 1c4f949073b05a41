//! Publish, consume, get, ack, nack/reject, requeue order, qos and cancel through lapin.

mod common;

use common::{reply_code, unique, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn publish_then_consume_with_ack() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("q");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let props = BasicProperties::default().with_content_type("text/plain".into()).with_delivery_mode(2);
    for i in 0..10 {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            format!("m{i}").as_bytes(),
            props.clone(),
        )
        .await
        .unwrap();
    }
    let mut consumer = ch
        .basic_consume(q.as_str().into(), "c1".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for i in 0..10 {
        let d = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(d.data, format!("m{i}").as_bytes());
        assert_eq!(d.properties.content_type().as_ref().map(|s| s.as_str()), Some("text/plain"));
        assert_eq!(d.delivery_tag, i + 1);
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let declared = common::passive_declare(&ch, q.as_str()).await.unwrap();
    assert_eq!((declared.message_count(), declared.consumer_count()), (0, 1));
}

#[tokio::test]
async fn large_bodies_cross_frame_boundaries_intact() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("big");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let body: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), &body, BasicProperties::default())
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(m) = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                return m;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got.delivery.data, body);
}

#[tokio::test]
async fn get_reports_remaining_count_and_get_empty() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("get");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    for body in [b"a", b"b", b"c"] {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    common::passive_declare(&ch, q.as_str()).await.unwrap();
    let m = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("a message");
    assert_eq!((m.delivery.data.as_slice(), m.message_count), (&b"a"[..], 2));
    let m = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false }).await.unwrap().expect("a message");
    m.delivery.nack(BasicNackOptions { requeue: true, multiple: false }).await.unwrap();
    let again = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("requeued");
    assert_eq!(again.delivery.data, b"b", "a requeued message keeps its place at the head");
    assert!(again.delivery.redelivered);
    ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("c");
    assert!(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().is_none());
}

#[tokio::test]
async fn reject_without_requeue_drops_and_unknown_tag_is_406() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("rej");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"x", BasicProperties::default())
        .await
        .unwrap();
    let m = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().unwrap();
    m.delivery.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    assert!(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().is_none());
    ch.basic_ack(99, BasicAckOptions::default()).await.unwrap();
    let err = ch.basic_qos(1, BasicQosOptions::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406), "{err}");
}

#[tokio::test]
async fn prefetch_limits_unacked_deliveries_per_consumer() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("qos");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    for i in 0..5u8 {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            &[i],
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(q.as_str().into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let d1 = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
    let _d2 = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), consumer.next()).await.is_err(),
        "a third delivery arrived with prefetch 2"
    );
    d1.ack(BasicAckOptions::default()).await.unwrap();
    let d3 = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d3.data, [2]);
}

#[tokio::test]
async fn closing_a_channel_requeues_its_unacked_messages_as_redelivered() {
    let b = common::start().await;
    let conn = b.connect().await;
    let q = unique("requeue");
    let ch1 = conn.create_channel().await.unwrap();
    ch1.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch1.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"once",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = ch1.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().unwrap();
    assert!(!got.delivery.redelivered);
    ch1.close(200, "bye".into()).await.unwrap();
    let ch2 = conn.create_channel().await.unwrap();
    let again = ch2.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("requeued");
    assert!(again.delivery.redelivered);
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("gone");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(q.as_str().into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let (_c2, other) = b.channel().await;
    other.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let end = tokio::time::timeout(WAIT, consumer.next()).await.expect("consumer notified");
    assert!(end.is_none(), "the consumer stream ends on basic.cancel from the server");
}
