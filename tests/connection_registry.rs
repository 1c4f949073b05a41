//! The broker's registry of live connections and channels (what the management API lists and
//! closes), seen through lapin clients: what a connection and its channels show, when they
//! disappear, and closing a connection from the broker's side with 320 CONNECTION_FORCED.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::{eventually, reply_code, reply_text, unique, TestBroker, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::broker::connections::{ChannelSnapshot, ConnectionSnapshot, PROTOCOL};
use warren::broker::errors::FORCED_CLOSE_DEFAULT_REASON;
use warren::protocol::FieldValue;

async fn connect_named(b: &TestBroker, name: &str) -> Connection {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(&b.uri(), props).await.expect("connect")
}

/// The registered connection whose client called itself `name` (lapin's `connection_name`).
fn named(b: &TestBroker, name: &str) -> Option<ConnectionSnapshot> {
    b.broker.connections().list().into_iter().find(|c| {
        matches!(c.info.client_properties.get("connection_name"), Some(FieldValue::LongStr(n)) if n.as_bytes() == name.as_bytes())
    })
}

fn channels_of(b: &TestBroker, conn: u64) -> Vec<ChannelSnapshot> {
    b.broker.connections().channels().into_iter().filter(|c| c.connection == conn).collect()
}

fn channel(b: &TestBroker, conn: u64, number: u16) -> Option<ChannelSnapshot> {
    channels_of(b, conn).into_iter().find(|c| c.number == number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_listed_with_its_handshake_and_its_channels_settings() {
    let b = common::start().await;
    let name = unique("listed");
    let conn = connect_named(&b, &name).await;
    let c = eventually("the connection to be listed", || named(&b, &name)).await;

    let info = &c.info;
    assert_eq!(info.user, "guest");
    assert_eq!(info.vhost.as_bytes(), b"/");
    assert_eq!(info.protocol, PROTOCOL);
    assert_eq!(info.local, b.addr);
    assert!(info.peer.ip().is_loopback());
    assert_eq!(info.name, format!("{} -> {}", info.peer, b.addr));
    match info.client_properties.get("product") {
        Some(FieldValue::LongStr(p)) => assert_eq!(p.as_bytes(), b"lapin"),
        other => panic!("lapin's product property, got {other:?}"),
    }
    assert!(matches!(info.client_properties.get("capabilities"), Some(FieldValue::Table(_))));
    assert!(info.frame_max >= 4096 && info.channel_max > 0, "{info:?}");
    let now = warren::broker::timer::now_ms();
    assert!(info.connected_at <= now && info.connected_at + 60_000 > now, "{} vs {now}", info.connected_at);
    assert_eq!(c.channels, 0);
    let id = info.id;

    // A channel: qos for consumers and for the channel, confirm mode, a consumer with a
    // delivery it has not acked.
    let ch = conn.create_channel().await.unwrap();
    let number = ch.id();
    let opened = eventually("the channel to be listed", || channel(&b, id, number)).await;
    assert_eq!(
        (opened.prefetch_count, opened.global_prefetch_count, opened.consumer_count, opened.confirm),
        (0, 0, 0, false)
    );
    ch.basic_qos(10, BasicQosOptions::default()).await.unwrap();
    ch.basic_qos(50, BasicQosOptions { global: true }).await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let q = unique("listed-q");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(q.as_str().into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"m", BasicProperties::default())
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack());
    let delivery = tokio::time::timeout(WAIT, consumer.next()).await.expect("a delivery").unwrap().unwrap();
    let s = channel(&b, id, number).expect("the channel");
    assert_eq!(s.prefetch_count, 10);
    assert_eq!(s.global_prefetch_count, 50);
    assert!(s.confirm);
    assert!(!s.transactional);
    assert_eq!(s.consumer_count, 1);
    assert_eq!(s.messages_unacknowledged, 1);
    assert_eq!(s.messages_delivered, 1);

    // A second channel, transactional.
    let tx = conn.create_channel().await.unwrap();
    tx.tx_select().await.unwrap();
    let t = channel(&b, id, tx.id()).expect("the second channel");
    assert!(t.transactional && !t.confirm);
    assert_eq!(named(&b, &name).unwrap().channels, 2);

    delivery.ack(BasicAckOptions::default()).await.unwrap();
    eventually("the ack", || (channel(&b, id, number)?.messages_unacknowledged == 0).then_some(())).await;
    let stats = eventually("the counters", || {
        let s = named(&b, &name)?.stats;
        (s.messages_published == 1).then_some(s)
    })
    .await;
    assert!(stats.recv_oct > 0 && stats.send_oct > 0 && stats.recv_cnt > 0, "{stats:?}");

    // Closing a channel removes it; closing the connection removes the rest.
    tx.close(200, "".into()).await.unwrap();
    eventually("the closed channel to go", || channel(&b, id, tx.id()).is_none().then_some(())).await;
    assert_eq!(named(&b, &name).unwrap().channels, 1);
    conn.close(200, "".into()).await.unwrap();
    eventually("the closed connection to go", || named(&b, &name).is_none().then_some(())).await;
    assert!(channels_of(&b, id).is_empty());
    assert!(b.broker.connections().get(id).is_none());
}

/// A minimal client: the handshake over a raw socket, so the test can drop the socket without
/// a `connection.close`.
async fn raw_handshake(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    use warren::protocol::methods::*;
    use warren::protocol::{
        decode_frame, encode_method, FieldTable, Frame, LongStr, Method, ShortStr, PROTOCOL_HEADER,
    };
    async fn send(sock: &mut tokio::net::TcpStream, m: Method) {
        let mut b = BytesMut::new();
        encode_method(&mut b, 0, &m);
        sock.write_all(&b).await.unwrap();
    }
    async fn method(sock: &mut tokio::net::TcpStream, buf: &mut BytesMut) -> Method {
        loop {
            if let Some(Frame::Method { method, .. }) = decode_frame(buf, 0).unwrap() {
                return method;
            }
            let n = tokio::time::timeout(WAIT, sock.read_buf(buf)).await.unwrap().unwrap();
            assert!(n > 0, "the server closed the socket during the handshake");
        }
    }
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = BytesMut::new();
    sock.write_all(PROTOCOL_HEADER).await.unwrap();
    assert!(matches!(method(&mut sock, &mut buf).await, Method::ConnectionStart(_)));
    let mut props = FieldTable::new();
    props.insert(ShortStr::from_static("product"), FieldValue::from("raw"));
    let start_ok = ConnectionStartOk {
        client_properties: props,
        mechanism: ShortStr::from_static("PLAIN"),
        response: LongStr::from("\0guest\0guest"),
        locale: ShortStr::from_static("en_US"),
    };
    send(&mut sock, Method::ConnectionStartOk(start_ok)).await;
    let Method::ConnectionTune(tune) = method(&mut sock, &mut buf).await else { panic!("expected tune") };
    let tune_ok = ConnectionTuneOk { channel_max: tune.channel_max, frame_max: 4096, heartbeat: 0 };
    send(&mut sock, Method::ConnectionTuneOk(tune_ok)).await;
    send(&mut sock, Method::ConnectionOpen(ConnectionOpen { virtual_host: ShortStr::from_static("/") })).await;
    assert!(matches!(method(&mut sock, &mut buf).await, Method::ConnectionOpenOk(_)));
    sock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_socket_drops_is_removed() {
    let b = common::start().await;
    let sock = raw_handshake(b.addr).await;
    let local = sock.local_addr().unwrap();
    let listed = eventually("the raw connection to be listed", || {
        b.broker.connections().list().into_iter().find(|c| c.info.peer == local)
    })
    .await;
    assert_eq!(listed.info.frame_max, 4096);
    assert_eq!(listed.info.heartbeat, 0);
    match listed.info.client_properties.get("product") {
        Some(FieldValue::LongStr(p)) => assert_eq!(p.as_bytes(), b"raw"),
        other => panic!("the raw client's product, got {other:?}"),
    }
    assert!(b.broker.connection_count() >= 1);
    drop(sock);
    eventually("the dropped connection to go", || b.broker.connections().get(listed.info.id).is_none().then_some(()))
        .await;
    eventually("the connection task to end", || (b.broker.connection_count() == 0).then_some(())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_through_the_registry_forces_320_requeues_and_leaves_others_serving() {
    let b = common::start().await;
    let q = unique("forced");
    let (other, publisher) = b.channel().await;
    publisher.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();

    // The connection to close: a consumer holding one unacked message, and an exclusive queue.
    let name = unique("victim");
    let victim = connect_named(&b, &name).await;
    let seen = common::first_error(&victim);
    let vch = victim.create_channel().await.unwrap();
    vch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let exclusive = unique("forced-exclusive");
    vch.queue_declare(
        exclusive.as_str().into(),
        QueueDeclareOptions { exclusive: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut held = vch
        .basic_consume(q.as_str().into(), "held".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    publisher
        .basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"m1", BasicProperties::default())
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, held.next()).await.expect("a delivery").unwrap().unwrap();
    assert_eq!(first.data, b"m1");
    assert!(!first.redelivered);

    // Another consumer on the same queue gets nothing while the message is unacked.
    let mut successor = publisher
        .basic_consume(q.as_str().into(), "successor".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(100), successor.next()).await.is_err());

    let id = eventually("the victim to be listed", || named(&b, &name)).await.info.id;
    assert_eq!(channels_of(&b, id).first().map(|c| c.messages_unacknowledged), Some(1));
    assert!(!b.broker.connections().close(u64::MAX, "no such connection"));
    assert!(b.broker.connections().close(id, FORCED_CLOSE_DEFAULT_REASON));

    // The client is told why.
    let err = eventually("the client to see the close", || seen.lock().unwrap().take()).await;
    assert_eq!(reply_code(&err), Some(320), "{err}");
    assert_eq!(reply_text(&err), "CONNECTION_FORCED - Closed via management plugin");
    eventually("the closed connection to go", || named(&b, &name).is_none().then_some(())).await;

    // Its unacked message goes to the other consumer, redelivered.
    let again = tokio::time::timeout(WAIT, successor.next()).await.expect("the redelivery").unwrap().unwrap();
    assert_eq!(again.data, b"m1");
    assert!(again.redelivered);
    again.ack(BasicAckOptions::default()).await.unwrap();

    // Its exclusive queue is gone, and the broker keeps serving the other connection.
    let check = other.create_channel().await.unwrap();
    let gone = common::passive_declare(&check, &exclusive).await.unwrap_err();
    assert_eq!(reply_code(&gone), Some(404), "{gone}");
    let confirm_ch = other.create_channel().await.unwrap();
    confirm_ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let confirm = confirm_ch
        .basic_publish("".into(), q.as_str().into(), BasicPublishOptions::default(), b"m2", BasicProperties::default())
        .await
        .unwrap();
    assert!(confirm.await.unwrap().is_ack());
    let next = tokio::time::timeout(WAIT, successor.next()).await.expect("a delivery").unwrap().unwrap();
    assert_eq!(next.data, b"m2");
    assert!(other.status().connected());
    assert!(named(&b, &name).is_none());
}
