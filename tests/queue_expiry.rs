//! Queue expiry (`x-expires`): a queue unused for that long is deleted with its messages (not
//! dead-lettered); consumers keep it alive, and declares and gets start the time over. The
//! queue is looked for inside the broker while waiting: a passive declare would be a use.

mod common;

use std::time::{Duration, Instant};

use common::lifecycle::*;
use common::{reply_code, reply_text, unique};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

fn expires(ms: i32) -> FieldTable {
    table(vec![("x-expires", int(ms))])
}

#[tokio::test]
async fn an_unused_queue_is_deleted_with_its_messages() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let (dlx, dlq) = sink(&ch).await;
    let q = unique("expires");
    let declared = Instant::now();
    declare(&ch, &q, table(vec![("x-expires", int(300)), ("x-dead-letter-exchange", text(&dlx))])).await;
    send(&ch, &q, b"goes with the queue", BasicProperties::default()).await;
    wait_for("the unused queue to be deleted", || !exists(&b, &q)).await;
    assert!(declared.elapsed() >= Duration::from_millis(300), "deleted early: {:?}", declared.elapsed());
    let err = common::passive_declare(&ch, &q).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(reply_text(&err), format!("NOT_FOUND - no queue '{q}' in vhost '/'"));
    let (_c2, ch) = b.channel().await;
    assert!(drain(&ch, &dlq).await.is_empty(), "an expired queue's messages are not dead-lettered");
}

#[tokio::test]
async fn a_consumer_keeps_the_queue_alive() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("expires-consumed");
    declare(&ch, &q, expires(300)).await;
    let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let consumer = ch.basic_consume(q.as_str().into(), "c".into(), opts, FieldTable::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(exists(&b, &q), "deleted while it had a consumer");
    assert_eq!(b.queue(&q).consumer_count(), 1);
    let cancelled = Instant::now();
    ch.basic_cancel("c".into(), BasicCancelOptions::default()).await.unwrap();
    drop(consumer);
    wait_for("the queue to go once its consumer did", || !exists(&b, &q)).await;
    assert!(cancelled.elapsed() >= Duration::from_millis(250), "the time counts from the cancel");
}

#[tokio::test]
async fn declares_and_gets_start_the_time_over() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("expires-used");
    declare(&ch, &q, expires(600)).await;
    // 1.5 s in all, never 600 ms without a use.
    for round in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        common::passive_declare(&ch, &q).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if round % 2 == 0 {
            assert!(get(&ch, &q).await.is_none());
        } else {
            declare(&ch, &q, expires(600)).await;
        }
    }
    assert!(exists(&b, &q), "deleted although used all along");
    let last_use = Instant::now();
    wait_for("the queue to expire once unused", || !exists(&b, &q)).await;
    assert!(last_use.elapsed() >= Duration::from_millis(550), "the time counts from the last use");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_queue_starts_its_time_over_at_recovery_and_stays_deleted() {
    let b = common::start().await;
    let q = unique("expires-durable");
    {
        let (conn, ch) = b.channel().await;
        declare_durable(&ch, &q, expires(400)).await;
        conn.close(200, "restart".into()).await.unwrap();
    }
    // Down for longer than x-expires: the time starts over when the broker is back, as in
    // RabbitMQ.
    let b = b.restart_after(Duration::from_millis(600)).await;
    let recovered = Instant::now();
    assert!(exists(&b, &q), "recovered");
    wait_for("the recovered queue to expire", || !exists(&b, &q)).await;
    assert!(recovered.elapsed() >= Duration::from_millis(300), "{:?}", recovered.elapsed());
    let b = b.restart().await;
    assert!(!exists(&b, &q), "an expired durable queue does not come back");
}
