//! Persistent messages in durable queues survive restarts in order, byte for byte; unacked
//! ones come back redelivered; transient messages and transient queues do not survive.

mod common;

use common::{unique, WAIT};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

fn props(i: u32, persistent: bool) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("n".into(), AMQPValue::LongUInt(i));
    BasicProperties::default()
        .with_delivery_mode(if persistent { 2 } else { 1 })
        .with_content_type("application/octet-stream".into())
        .with_message_id(format!("m-{i}").into())
        .with_headers(headers)
}

fn body(i: u32) -> Vec<u8> {
    (0..(i * 37 % 3000)).map(|b| (b ^ i) as u8).collect()
}

async fn publish(ch: &Channel, q: &str, i: u32, persistent: bool) {
    ch.basic_publish("".into(), q.into(), BasicPublishOptions::default(), &body(i), props(i, persistent))
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_messages_survive_restarts_and_unacked_ones_come_back_redelivered() {
    let b = common::start().await;
    let (q, transient_q) = (unique("pq"), unique("tq"));
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        ch.queue_declare(q.as_str().into(), durable(), FieldTable::default()).await.unwrap();
        ch.queue_declare(transient_q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default())
            .await
            .unwrap();
        for i in 0..50 {
            publish(&ch, &q, i, i % 5 != 4).await; // every fifth is transient
            publish(&ch, &transient_q, i, true).await;
        }
        // Ack 0 and 1, leave 2 delivered but unacked when the broker stops.
        for _ in 0..2 {
            let m = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().unwrap();
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        let unacked = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().unwrap();
        assert_eq!(unacked.delivery.properties.message_id().as_ref().unwrap().as_str(), "m-2");
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    let q_now = common::passive_declare(&ch, q.as_str()).await.unwrap();
    let expected: Vec<u32> = (2..50).filter(|i| i % 5 != 4).collect();
    assert_eq!(q_now.message_count() as usize, expected.len());
    for i in expected {
        let m = tokio::time::timeout(WAIT, ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }))
            .await
            .unwrap()
            .unwrap()
            .expect("a recovered message");
        let d = m.delivery;
        assert_eq!(d.data, body(i), "body of message {i}");
        assert_eq!(d.properties.message_id().as_ref().unwrap().as_str(), format!("m-{i}"));
        assert_eq!(d.properties.headers().as_ref().unwrap().inner().get("n"), Some(&AMQPValue::LongUInt(i)));
        assert_eq!(d.redelivered, i == 2, "only the message delivered before the restart is redelivered ({i})");
    }
    let err = common::passive_declare(&ch, transient_q.as_str()).await.unwrap_err();
    assert_eq!(common::reply_code(&err), Some(404), "a transient queue's messages go with it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_after_a_queue_was_drained_and_restarted_are_not_redelivered() {
    let b = common::start().await;
    let q = unique("drained");
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        ch.queue_declare(q.as_str().into(), durable(), FieldTable::default()).await.unwrap();
        for i in 0..3 {
            publish(&ch, &q, i, true).await;
        }
        for _ in 0..3 {
            let m = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().unwrap();
            m.delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
        conn.close(200, "restart".into()).await.unwrap();
    }
    // Empty now; the queue remembers only how far its deliveries got.
    let b = b.restart().await;
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        for i in 3..5 {
            publish(&ch, &q, i, true).await;
        }
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    for i in 3..5 {
        let m = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("recovered");
        assert_eq!(m.delivery.data, body(i));
        assert!(!m.delivery.redelivered, "message {i} was never delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_and_deleted_messages_stay_gone_after_a_restart() {
    let b = common::start().await;
    let (purged, deleted) = (unique("purged"), unique("deleted"));
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        for q in [&purged, &deleted] {
            ch.queue_declare(q.as_str().into(), durable(), FieldTable::default()).await.unwrap();
            for i in 0..10 {
                publish(&ch, q, i, true).await;
            }
        }
        ch.queue_purge(purged.as_str().into(), QueuePurgeOptions::default()).await.unwrap();
        ch.queue_delete(deleted.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
        ch.queue_declare(deleted.as_str().into(), durable(), FieldTable::default()).await.unwrap();
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    for q in [&purged, &deleted] {
        let n = common::passive_declare(&ch, q.as_str()).await.unwrap().message_count();
        assert_eq!(n, 0, "{q}");
    }
}
