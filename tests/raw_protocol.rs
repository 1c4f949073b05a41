//! Raw-socket tests: what a broken or hostile client gets back, byte for byte.

mod common;

use common::raw::Raw;

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use warren::protocol::methods::*;
use warren::protocol::{Frame, Method, ShortStr, PROTOCOL_HEADER};

#[tokio::test]
async fn wrong_protocol_header_gets_ours_back_and_the_socket_closed() {
    let b = common::start().await;
    let mut r = Raw::connect(b.addr).await;
    r.send(b"AMQP\x00\x01\x00\x00").await;
    let mut got = Vec::new();
    tokio::time::timeout(common::WAIT, r.sock.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, PROTOCOL_HEADER);
}

#[tokio::test]
async fn start_announces_rabbitmq_capabilities() {
    let b = common::start().await;
    let mut r = Raw::connect(b.addr).await;
    r.send(PROTOCOL_HEADER).await;
    let Method::ConnectionStart(start) = r.method().await else { panic!("expected start") };
    let Some(warren::protocol::FieldValue::Table(caps)) = start.server_properties.get("capabilities") else {
        panic!("no capabilities table")
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(caps.get(cap), Some(&warren::protocol::FieldValue::Bool(true)), "{cap}");
    }
    let mechs = start.mechanisms.as_str().unwrap().to_string();
    assert!(mechs.contains("PLAIN") && mechs.contains("AMQPLAIN"), "{mechs}");
}

#[tokio::test]
async fn method_on_unopened_channel_is_504() {
    let b = common::start().await;
    let mut r = Raw::handshake(b.addr).await;
    r.send_method(5, Method::BasicQos(BasicQos { prefetch_size: 0, prefetch_count: 1, global: false })).await;
    r.expect_connection_close(504).await;
}

#[tokio::test]
async fn bad_frame_end_is_501_and_other_connections_keep_working() {
    let b = common::start().await;
    let mut bad = Raw::handshake(b.addr).await;
    let mut good = Raw::handshake(b.addr).await;
    bad.send(&[1, 0, 1, 0, 0, 0, 4, 0, 20, 0, 10, 0x00]).await;
    bad.expect_connection_close(501).await;
    good.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(good.method().await, Method::ChannelOpenOk(_)));
}

#[tokio::test]
async fn oversized_frame_is_501() {
    let b = common::start().await;
    let mut r = Raw::handshake(b.addr).await;
    // frame_max is 4096 for this connection: announce a 100 000-octet body frame.
    r.send(&[3, 0, 1, 0, 0x01, 0x86, 0xa0]).await;
    r.expect_connection_close(501).await;
}

#[tokio::test]
async fn content_out_of_order_is_505() {
    let b = common::start().await;
    let mut r = Raw::handshake(b.addr).await;
    r.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(r.method().await, Method::ChannelOpenOk(_)));
    // A body frame with no publish before it.
    r.send(&[3, 0, 1, 0, 0, 0, 2, b'h', b'i', 0xce]).await;
    let close = r.expect_connection_close(505).await;
    assert!(close.reply_text.to_string().starts_with("UNEXPECTED_FRAME"), "{}", close.reply_text);
}

#[tokio::test]
async fn method_where_a_content_header_belongs_is_505() {
    let b = common::start().await;
    let mut r = Raw::handshake(b.addr).await;
    r.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(r.method().await, Method::ChannelOpenOk(_)));
    r.send_method(1, Method::BasicPublish(BasicPublish::default())).await;
    r.send_method(1, Method::BasicQos(BasicQos::default())).await;
    r.expect_connection_close(505).await;
}

#[tokio::test]
async fn unknown_method_is_540() {
    let b = common::start().await;
    let mut r = Raw::handshake(b.addr).await;
    r.send(&[1, 0, 0, 0, 0, 0, 4, 0, 99, 0, 1, 0xce]).await;
    r.expect_connection_close(540).await;
}

#[tokio::test]
async fn client_vanishing_mid_message_disturbs_no_one() {
    let b = common::start().await;
    {
        let mut r = Raw::handshake(b.addr).await;
        r.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
        r.send_method(1, Method::BasicPublish(BasicPublish::default())).await;
        r.send(&[2, 0, 1, 0, 0, 0]).await; // half a content header
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut r = Raw::handshake(b.addr).await;
    r.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(r.method().await, Method::ChannelOpenOk(_)));
}

#[tokio::test]
async fn a_consumer_that_stops_reading_gets_back_pressure_not_an_unbounded_buffer() {
    let b = common::start().await;
    let queue = ShortStr::from_static("bp");
    let mut consumer = Raw::handshake(b.addr).await;
    consumer.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(consumer.method().await, Method::ChannelOpenOk(_)));
    let declare = QueueDeclare { queue: queue.clone(), ..Default::default() };
    consumer.send_method(1, Method::QueueDeclare(declare.clone())).await;
    assert!(matches!(consumer.method().await, Method::QueueDeclareOk(_)));
    consumer
        .send_method(1, Method::BasicConsume(BasicConsume { queue: queue.clone(), no_ack: true, ..Default::default() }))
        .await;
    assert!(matches!(consumer.method().await, Method::BasicConsumeOk(_)));
    // From here on the consumer never reads its socket.

    let mut producer = Raw::handshake(b.addr).await;
    producer.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(producer.method().await, Method::ChannelOpenOk(_)));
    let (count, size) = (20_000u32, 4096usize);
    let body = vec![7u8; size];
    let publish = Method::BasicPublish(BasicPublish { routing_key: queue.clone(), ..Default::default() });
    let mut batch = BytesMut::new();
    for _ in 0..count {
        warren::protocol::encode_content(&mut batch, 1, &publish, &Default::default(), &body, 4096);
    }
    producer.send(&batch).await;
    // A passive declare after the publishes: the broker keeps serving, and most of the 80 MB is
    // still in the queue rather than in the stalled consumer's outbound buffer.
    producer.send_method(1, Method::QueueDeclare(QueueDeclare { passive: true, ..declare })).await;
    let Method::QueueDeclareOk(ok) = producer.method().await else { panic!("expected declare-ok") };
    let buffered_for_consumer = (count - ok.message_count) as usize * size;
    assert!(
        buffered_for_consumer < 40 * 1024 * 1024,
        "{} of {count} messages left the queue for a consumer that reads nothing",
        count - ok.message_count
    );
    drop(consumer);
}

#[tokio::test]
async fn the_server_sends_heartbeats_and_drops_a_silent_client() {
    let b = common::start().await;
    let mut r = Raw::handshake_with_heartbeat(b.addr, 1).await;
    // Idle: the server's heartbeats arrive (it sends one per half interval).
    match tokio::time::timeout(Duration::from_secs(3), r.frame()).await {
        Ok(Some(Frame::Heartbeat)) => {}
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    // We send nothing back: after two missed intervals the server closes the socket.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), r.frame()).await {
            Ok(None) => break,
            Ok(Some(Frame::Heartbeat)) => assert!(std::time::Instant::now() < deadline, "still connected after 10 s"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_disk_alarm_a_publisher_that_ignores_blocking_is_not_read() {
    let b = common::start_with(|c| c.disk_free_limit = 0).await;
    let queue = ShortStr::from_static("alarmed");
    let mut p = Raw::handshake(b.addr).await;
    p.send_method(1, Method::ChannelOpen(ChannelOpen {})).await;
    assert!(matches!(p.method().await, Method::ChannelOpenOk(_)));
    p.send_method(1, Method::QueueDeclare(QueueDeclare { queue: queue.clone(), ..Default::default() })).await;
    assert!(matches!(p.method().await, Method::QueueDeclareOk(_)));

    b.broker.set_disk_free_limit(u64::MAX);
    let deadline = std::time::Instant::now() + common::WAIT;
    while !b.broker.alarms.current().disk_free {
        assert!(std::time::Instant::now() < deadline, "the disk alarm is raised");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let publish = Method::BasicPublish(BasicPublish { routing_key: queue.clone(), ..Default::default() });
    let one = |n: u8| {
        let mut frames = BytesMut::new();
        warren::protocol::encode_content(&mut frames, 1, &publish, &Default::default(), &[n], 4096);
        frames
    };
    // The publish that meets the alarm is read and routed; then reading stops. This client did
    // not announce the connection.blocked capability, so it is not told.
    p.send(&one(0)).await;
    let q = b.queue("alarmed");
    let deadline = std::time::Instant::now() + common::WAIT;
    while q.message_count() < 1 {
        assert!(std::time::Instant::now() < deadline, "the first publish is routed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for n in 1..=10 {
        p.send(&one(n)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(q.message_count(), 1, "nothing more is read from a blocked publisher");
    assert!(
        tokio::time::timeout(Duration::from_millis(100), p.frame()).await.is_err(),
        "no connection.blocked for a client without the capability"
    );

    b.broker.set_disk_free_limit(0);
    let deadline = std::time::Instant::now() + common::WAIT;
    while q.message_count() < 11 {
        assert!(std::time::Instant::now() < deadline, "the held-back publishes arrive once the alarm clears");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
