//! The memory alarm: above the high watermark (measured from the process's resident memory)
//! publishers are blocked — told `connection.blocked` with RabbitMQ's reason `low on memory` —
//! while consumers keep going, until memory is back under it.

mod common;

use common::raw::Raw;
use common::{eventually, unique};
use lapin::options::*;
use lapin::types::FieldTable;
use warren::broker::vm_memory::Watermark;
use warren::protocol::methods::*;
use warren::protocol::{FieldTable as WireTable, FieldValue, Method, ShortStr};

/// A watermark every process is above.
const TINY: Watermark = Watermark::Absolute(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn above_the_watermark_publishers_block_and_consumers_keep_going() {
    let b = common::start().await;
    let q = unique("mem");
    let (pub_conn, publisher) = b.channel().await;
    publisher.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publisher.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let (_c, consumer) = b.channel().await;
    let confirm =
        publisher.basic_publish("".into(), q.as_str().into(), Default::default(), b"before", Default::default());
    assert!(confirm.await.unwrap().await.unwrap().is_ack());

    b.broker.set_memory_high_watermark(TINY);
    eventually("the memory alarm is raised", || b.broker.alarms.current().memory.then_some(())).await;
    assert_eq!(b.broker.alarms.current().reason(), "low on memory");
    // The publish that meets the alarm is read; then the connection is blocked.
    let trigger =
        publisher.basic_publish("".into(), q.as_str().into(), Default::default(), b"trigger", Default::default());
    let trigger = trigger.await.unwrap();
    eventually("the publisher is told connection.blocked", || pub_conn.status().blocked().then_some(())).await;
    // A consumer on another connection is still served.
    let got = consumer.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
    assert_eq!(got.map(|m| m.delivery.data), Some(b"before".to_vec()));

    b.broker.set_memory_high_watermark(Watermark::Relative(0.9));
    eventually("the alarm clears", || (!b.broker.alarms.current().memory).then_some(())).await;
    eventually("the publisher is unblocked", || (!pub_conn.status().blocked()).then_some(())).await;
    assert!(trigger.await.unwrap().is_ack());
}

#[tokio::test]
async fn the_blocked_reason_is_low_on_memory_and_the_api_shows_the_alarm() {
    let b = common::start().await;
    let mut caps = WireTable::new();
    caps.insert(ShortStr::from_static("connection.blocked"), FieldValue::Bool(true));
    let mut props = WireTable::new();
    props.insert(ShortStr::from_static("capabilities"), FieldValue::Table(caps));
    let mut r = Raw::handshake_with(b.addr, 0, props).await;
    r.send_method(1, Method::ChannelOpen(ChannelOpen::default())).await;
    assert!(matches!(r.method().await, Method::ChannelOpenOk(_)));

    b.broker.set_memory_high_watermark(TINY);
    eventually("the memory alarm is raised", || b.broker.alarms.current().memory.then_some(())).await;
    let http = common::http::Http::new(b.mgmt);
    let node = http.get("/nodes").await.body[0].clone();
    assert_eq!((node["mem_alarm"].as_bool(), node["mem_limit"].as_u64()), (Some(true), Some(1)));
    assert!(node["mem_used"].as_u64().unwrap() > 1 << 20, "resident memory: {node}");
    assert_eq!(http.get("/health/checks/alarms").await.body["alarms"][0]["resource"], "memory");

    // Publishing is what gets a connection blocked.
    let publish = BasicPublish { routing_key: ShortStr::from_static("nowhere"), ..Default::default() };
    let mut frames = bytes::BytesMut::new();
    warren::protocol::encode_content(&mut frames, 1, &Method::BasicPublish(publish), &Default::default(), b"x", 0);
    r.send(&frames).await;
    match r.method().await {
        Method::ConnectionBlocked(blocked) => assert_eq!(blocked.reason.as_str(), Some("low on memory")),
        other => panic!("expected connection.blocked, got {other:?}"),
    }
    b.broker.set_memory_high_watermark(Watermark::Relative(0.9));
    assert!(matches!(r.method().await, Method::ConnectionUnblocked(_)));
}
