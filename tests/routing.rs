//! Exchanges: direct, fanout, topic, headers, exchange-to-exchange, alternate exchanges,
//! sender-selected distribution, mandatory returns, and declare equivalence errors.

mod common;

use common::{reply_code, reply_text, unique};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};

async fn queue(ch: &Channel) -> String {
    let q = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    q.name().to_string()
}

async fn publish(ch: &Channel, exchange: &str, key: &str, headers: Option<FieldTable>) {
    let mut props = BasicProperties::default();
    if let Some(h) = headers {
        props = props.with_headers(h);
    }
    ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), key.as_bytes(), props).await.unwrap();
}

async fn count(ch: &Channel, q: &str) -> u32 {
    common::passive_declare(ch, q).await.unwrap().message_count()
}

#[tokio::test]
async fn topic_wildcards() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("topic");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let cases = [("*.orange.*", 2), ("lazy.#", 3), ("#", 6), ("*.*.rabbit", 1), ("a.#.b", 2)];
    let mut queues = Vec::new();
    for (pattern, _) in cases {
        let q = queue(&ch).await;
        ch.queue_bind(
            q.as_str().into(),
            x.as_str().into(),
            pattern.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        queues.push(q);
    }
    for key in ["quick.orange.rabbit", "lazy.orange.elephant", "lazy.brown.fox", "lazy", "a.b", "a.x.y.b"] {
        publish(&ch, &x, key, None).await;
    }
    for ((pattern, want), q) in cases.iter().zip(&queues) {
        assert_eq!(count(&ch, q).await, *want, "pattern {pattern}");
    }
}

#[tokio::test]
async fn fanout_direct_and_the_default_exchange() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let (q1, q2) = (queue(&ch).await, queue(&ch).await);
    for q in [&q1, &q2] {
        ch.queue_bind(
            q.as_str().into(),
            "amq.fanout".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    ch.queue_bind(
        q1.as_str().into(),
        "amq.direct".into(),
        "red".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, "amq.fanout", "anything", None).await;
    publish(&ch, "amq.direct", "red", None).await;
    publish(&ch, "amq.direct", "blue", None).await;
    publish(&ch, "", &q2, None).await;
    assert_eq!((count(&ch, &q1).await, count(&ch, &q2).await), (2, 2));
}

#[tokio::test]
async fn headers_exchange_all_and_any() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let (all, any) = (queue(&ch).await, queue(&ch).await);
    let mut args = FieldTable::default();
    args.insert("format".into(), AMQPValue::LongString("pdf".into()));
    args.insert("type".into(), AMQPValue::LongString("report".into()));
    ch.queue_bind(all.as_str().into(), "amq.headers".into(), "".into(), QueueBindOptions::default(), args.clone())
        .await
        .unwrap();
    args.insert("x-match".into(), AMQPValue::LongString("any".into()));
    ch.queue_bind(any.as_str().into(), "amq.headers".into(), "".into(), QueueBindOptions::default(), args)
        .await
        .unwrap();
    let mut both = FieldTable::default();
    both.insert("format".into(), AMQPValue::LongString("pdf".into()));
    both.insert("type".into(), AMQPValue::LongString("report".into()));
    let mut one = FieldTable::default();
    one.insert("format".into(), AMQPValue::LongString("pdf".into()));
    publish(&ch, "amq.headers", "", Some(both)).await;
    publish(&ch, "amq.headers", "", Some(one)).await;
    assert_eq!((count(&ch, &all).await, count(&ch, &any).await), (1, 2));
}

#[tokio::test]
async fn exchange_to_exchange_and_alternate_exchange() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let (src, ae) = (unique("src"), unique("ae"));
    ch.exchange_declare(
        ae.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut args = FieldTable::default();
    args.insert("alternate-exchange".into(), AMQPValue::LongString(ae.as_str().into()));
    ch.exchange_declare(src.as_str().into(), ExchangeKind::Direct, ExchangeDeclareOptions::default(), args)
        .await
        .unwrap();
    let (routed, unrouted) = (queue(&ch).await, queue(&ch).await);
    ch.exchange_bind(
        "amq.topic".into(),
        src.as_str().into(),
        "k".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        routed.as_str().into(),
        "amq.topic".into(),
        "#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        unrouted.as_str().into(),
        ae.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish(&ch, &src, "k", None).await;
    publish(&ch, &src, "nobody", None).await;
    assert_eq!((count(&ch, &routed).await, count(&ch, &unrouted).await), (1, 1));
}

#[tokio::test]
async fn cc_and_bcc_route_and_bcc_is_stripped() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let (main, cc, bcc) = (queue(&ch).await, queue(&ch).await, queue(&ch).await);
    let mut headers = FieldTable::default();
    headers.insert(
        "CC".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(LongString::from(cc.as_str()))])),
    );
    headers.insert(
        "BCC".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(LongString::from(bcc.as_str()))])),
    );
    publish(&ch, "", &main, Some(headers)).await;
    for q in [&main, &cc, &bcc] {
        let m = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap().expect("routed");
        let h = m.delivery.properties.headers().clone().unwrap_or_default();
        assert!(h.inner().contains_key("CC"));
        assert!(!h.inner().contains_key("BCC"), "BCC must not reach consumers");
    }
}

#[tokio::test]
async fn mandatory_unroutable_is_returned_with_312() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let confirm = ch
        .basic_publish(
            "amq.direct".into(),
            "nowhere".into(),
            BasicPublishOptions { mandatory: true, ..Default::default() },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let returned = confirm.take_message().expect("basic.return before the ack");
    assert_eq!(returned.reply_code, 312);
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.data, b"lost");
}

#[tokio::test]
async fn declare_errors_carry_rabbitmqs_codes_and_texts() {
    let b = common::start().await;
    let conn = b.connect().await;
    let q = unique("eq");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let err = ch
        .queue_declare(
            q.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert!(reply_text(&err).starts_with("PRECONDITION_FAILED - inequivalent arg 'durable'"), "{}", reply_text(&err));

    let ch = conn.create_channel().await.unwrap();
    let err = common::passive_declare(&ch, "no-such-queue").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
    assert_eq!(reply_text(&err), "NOT_FOUND - no queue 'no-such-queue' in vhost '/'");

    let ch = conn.create_channel().await.unwrap();
    let err = ch
        .exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(403));

    let ch = conn.create_channel().await.unwrap();
    let x = unique("x");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = ch
        .exchange_declare(
            x.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    assert!(reply_text(&err).contains("inequivalent arg 'type'"), "{}", reply_text(&err));
    // The connection survives channel errors.
    let ch = conn.create_channel().await.unwrap();
    common::passive_declare(&ch, q.as_str()).await.unwrap();
}

#[tokio::test]
async fn exclusive_queues_belong_to_their_connection() {
    let b = common::start().await;
    let (c1, ch1) = b.channel().await;
    let q = queue(&ch1).await;
    let (_c2, ch2) = b.channel().await;
    let err = ch2.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(405));
    c1.close(200, "bye".into()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (_c3, ch3) = b.channel().await;
    let err = common::passive_declare(&ch3, q.as_str()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404), "exclusive queue deleted with its connection");
}
