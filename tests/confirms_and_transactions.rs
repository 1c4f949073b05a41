//! Publisher confirms and transactions.

mod common;

use common::{reply_code, unique};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn every_publish_is_confirmed_in_order() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("confirm");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let mut pending = Vec::new();
    for i in 0..500u32 {
        let c = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        pending.push(c);
    }
    // Unroutable messages are confirmed too.
    pending.push(
        ch.basic_publish(
            "amq.direct".into(),
            "nowhere".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .unwrap(),
    );
    for c in pending {
        assert!(c.await.unwrap().is_ack());
    }
    let n = common::passive_declare(&ch, q.as_str()).await.unwrap().message_count();
    assert_eq!(n, 500);
}

#[tokio::test]
async fn transactions_defer_publishes_and_acks_until_commit() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let (_c2, observer) = b.channel().await;
    let q = unique("tx");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let count = || async { common::passive_declare(&observer, q.as_str()).await.unwrap().message_count() };
    ch.tx_select().await.unwrap();
    ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"a", BasicProperties::default())
        .await
        .unwrap();
    ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"b", BasicProperties::default())
        .await
        .unwrap();
    assert_eq!(count().await, 0, "nothing visible before commit");
    ch.tx_rollback().await.unwrap();
    assert_eq!(count().await, 0, "rolled back");
    ch.basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"c", BasicProperties::default())
        .await
        .unwrap();
    ch.tx_commit().await.unwrap();
    assert_eq!(count().await, 1);

    let m = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().unwrap();
    m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    ch.tx_rollback().await.unwrap();
    ch.basic_recover(BasicRecoverOptions { requeue: true }).await.unwrap();
    assert_eq!(count().await, 1, "a rolled-back ack leaves the message unacked; recover requeues it");
}

#[tokio::test]
async fn tx_and_confirm_modes_exclude_each_other() {
    let b = common::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    let err = ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let err = ch.tx_select().await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
}
