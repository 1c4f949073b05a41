//! Bounded memory under a backlog: beyond `queue_memory_window` persistent messages, or once
//! the queues hold `transient_memory_limit` bytes of transient ones, a queue keeps only their
//! places in memory; bodies wait in the store (persistent ones where they are durable anyway,
//! transient ones paged out) and come back, in order, as consumers reach them.

mod common;

use common::{unique, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use warren::broker::memory::MIN_RESIDENT;

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

fn props(i: u32, persistent: bool) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(if persistent { 2 } else { 1 })
        .with_message_id(format!("m-{i}").into())
}

fn body(i: u32) -> Vec<u8> {
    (0..(200 + i % 700)).map(|b| (b ^ i) as u8).collect()
}

async fn publish_confirmed(ch: &Channel, q: &str, total: u32, persistent: bool) {
    let mut confirms = Vec::new();
    for i in 0..total {
        let c = ch
            .basic_publish("".into(), q.into(), BasicPublishOptions::default(), &body(i), props(i, persistent))
            .await
            .unwrap();
        confirms.push(c);
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
}

async fn consume_in_order(ch: &Channel, q: &str, range: std::ops::Range<u32>) {
    ch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(q.into(), unique("c").as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    for i in range {
        let d = tokio::time::timeout(WAIT, consumer.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(d.properties.message_id().as_ref().unwrap().as_str(), format!("m-{i}"));
        assert_eq!(d.data, body(i), "body of message {i}");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_backlog_is_paged_out_and_delivered_in_order() {
    // 2000 messages of 200-900 octets: about 1.3 MB; the budget takes a few hundred.
    let b = common::start_with(|c| c.transient_memory_limit = 300_000).await;
    let q = unique("transient-backlog");
    let (_conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    publish_confirmed(&ch, &q, 2000, false).await;
    let resident = b.queue(&q).resident_count();
    assert!(resident <= 600, "{resident} transient bodies in memory with a budget of 300 kB");
    assert!(resident >= MIN_RESIDENT, "{resident} in memory: the budget was not used");
    assert!(b.broker.transient_memory_used() <= 300_000 + 2 * 1024);
    consume_in_order(&ch, &q, 0..2000).await;
    assert_eq!(b.queue(&q).message_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_memory_window_stays_on_disk_and_is_delivered_in_order() {
    let b = common::start_with(|c| c.queue_memory_window = 100).await;
    let q = unique("backlog");
    let total = 2000u32;
    {
        let (conn, ch) = b.channel().await;
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        ch.queue_declare(q.as_str().into(), durable(), FieldTable::default()).await.unwrap();
        publish_confirmed(&ch, &q, total, true).await;
        let resident = b.queue(&q).resident_count();
        assert!(resident <= 100, "{resident} bodies in memory with a window of 100");
        assert_eq!(b.queue(&q).message_count(), total);
        consume_in_order(&ch, &q, 0..total / 2).await;
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    assert!(b.queue(&q).resident_count() <= 100, "recovery keeps only the window in memory");
    let (_c, ch) = b.channel().await;
    for i in total / 2..total {
        let m = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("recovered");
        assert_eq!(m.delivery.data, body(i), "message {i}");
    }
    assert!(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().is_none());
}
