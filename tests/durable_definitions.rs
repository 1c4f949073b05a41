//! Durable exchanges, queues (with their arguments) and bindings survive a restart; transient
//! ones do not; a second broker on the same data directory is refused.

mod common;

use common::{reply_code, unique};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};

fn max_length(n: i32) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-max-length".into(), AMQPValue::LongInt(n));
    t
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions { passive: true, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_definitions_survive_a_restart_and_transient_ones_do_not() {
    let b = common::start().await;
    let (dx, dq, tx, tq) = (unique("dx"), unique("dq"), unique("tx"), unique("tq"));
    {
        let (conn, ch) = b.channel().await;
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(dx.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default()).await.unwrap();
        ch.exchange_declare(tx.as_str().into(), ExchangeKind::Fanout, Default::default(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_declare(dq.as_str().into(), durable_queue(), max_length(5)).await.unwrap();
        ch.queue_declare(tq.as_str().into(), Default::default(), FieldTable::default()).await.unwrap();
        ch.queue_bind(dq.as_str().into(), dx.as_str().into(), "a.#".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        // Bindings with a transient end are not kept.
        ch.queue_bind(tq.as_str().into(), dx.as_str().into(), "#".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_bind(dq.as_str().into(), tx.as_str().into(), "".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        ch.exchange_bind(
            "amq.fanout".into(),
            dx.as_str().into(),
            "b.*".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        dx.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions { passive: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .expect("durable exchange restored");
    ch.queue_declare(dq.as_str().into(), durable_queue(), max_length(5))
        .await
        .expect("same arguments still equivalent");
    ch.basic_publish(
        dx.as_str().into(),
        "a.b".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = ch.basic_get(dq.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
    assert!(got.is_some(), "the durable binding was restored");

    let err = ch.queue_declare(dq.as_str().into(), durable_queue(), max_length(6)).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406), "queue arguments were restored: {err}");
    for (name, is_queue) in [(&tq, true), (&tx, false)] {
        let ch = conn.create_channel().await.unwrap();
        let err = if is_queue {
            ch.queue_declare(name.as_str().into(), passive(), FieldTable::default()).await.unwrap_err()
        } else {
            ch.exchange_declare(
                name.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap_err()
        };
        assert_eq!(reply_code(&err), Some(404), "transient {name} is gone");
    }

    // Deleting is durable too.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(dq.as_str().into(), Default::default()).await.unwrap();
    conn.close(200, "restart".into()).await.unwrap();
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    let err = ch.queue_declare(dq.as_str().into(), passive(), FieldTable::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_is_refused() {
    let b = common::start().await;
    let config = warren::config::Config {
        port: 0,
        bind: "127.0.0.1".into(),
        data_dir: b.data_dir().to_path_buf(),
        ..Default::default()
    };
    let err = warren::server::Listener::bind(&config).await.err().expect("refused");
    assert!(err.to_string().contains("in use by another Warren"), "{err}");
}
