//! Closes that cross on the wire, seen from a raw socket: the broker and the client closing the
//! same channel at once, and a connection closed while the client's input is still unread.
//! RabbitMQ keeps the connection in the first case and answers `close-ok` cleanly in the second.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::raw::Raw;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren::protocol::methods::*;
use warren::protocol::{encode_content, encode_method, BasicProperties, FieldTable, Method, ShortStr};

fn frame(channel: u16, m: Method) -> BytesMut {
    let mut b = BytesMut::new();
    encode_method(&mut b, channel, &m);
    b
}

fn channel_close() -> Method {
    Method::ChannelClose(ChannelClose {
        reply_code: 200,
        reply_text: ShortStr::from_static("bye"),
        class_id: 0,
        method_id: 0,
    })
}

fn declare_server_named() -> Method {
    Method::QueueDeclare(QueueDeclare { exclusive: true, arguments: FieldTable::new(), ..Default::default() })
}

async fn open(r: &mut Raw, channel: u16) {
    r.send_method(channel, Method::ChannelOpen(ChannelOpen::default())).await;
    assert!(matches!(r.method().await, Method::ChannelOpenOk(_)));
}

#[tokio::test]
async fn a_client_close_crossing_the_brokers_keeps_the_connection() {
    let b = common::start().await;
    let mut r = Raw::handshake(b.addr).await;
    open(&mut r, 1).await;
    open(&mut r, 2).await;
    // A publish the broker refuses (no such exchange) and, before the client has read that
    // refusal, its own channel.close: both in one write, so they surely cross.
    let publish = BasicPublish { exchange: ShortStr::from_static("no-such-exchange"), ..Default::default() };
    let mut both = BytesMut::new();
    encode_content(&mut both, 1, &Method::BasicPublish(publish), &BasicProperties::default(), b"x", 0);
    both.extend_from_slice(&frame(1, channel_close()));
    r.send(&both).await;
    match r.method().await {
        Method::ChannelClose(c) => assert_eq!(c.reply_code, 404, "{}", c.reply_text),
        other => panic!("expected the broker's channel.close, got {other:?}"),
    }
    assert!(matches!(r.method().await, Method::ChannelCloseOk(_)), "the client's close is answered");
    // The client answers the broker's close too, as the protocol says it must.
    r.send_method(1, Method::ChannelCloseOk(ChannelCloseOk {})).await;
    r.send_method(2, declare_server_named()).await;
    assert!(matches!(r.method().await, Method::QueueDeclareOk(_)), "the other channel still works");
    open(&mut r, 1).await;
    r.send_method(1, declare_server_named()).await;
    assert!(matches!(r.method().await, Method::QueueDeclareOk(_)), "and channel 1 opens again");

    // A close-ok for a channel that was never closed is still an error, as in RabbitMQ.
    r.send_method(7, Method::ChannelCloseOk(ChannelCloseOk {})).await;
    let close = r.expect_connection_close(504).await;
    assert_eq!(close.reply_text.as_str(), Some("CHANNEL_ERROR - expected 'channel.open'"));
    assert_eq!((close.class_id, close.method_id), (20, 41));
}

#[tokio::test]
async fn close_ok_is_not_lost_when_the_clients_input_is_still_unread() {
    let b = common::start().await;
    let mut r = Raw::handshake(b.addr).await;
    // connection.close and, behind it in the same write, more input the broker never reads
    // (heartbeats, 8 octets each): 256 KiB of it.
    let mut all = frame(0, Method::ConnectionClose(ConnectionClose { reply_code: 200, ..Default::default() }));
    for _ in 0..32 * 1024 {
        all.put_slice(&[8, 0, 0, 0, 0, 0, 0, 0xce]);
    }
    r.send(&all).await;
    assert!(matches!(r.method().await, Method::ConnectionCloseOk(_)));
    assert!(r.frame().await.is_none(), "then a clean end of stream");
    // The broker reads the rest instead of resetting the socket: a write after its FIN is
    // accepted (a closed socket would answer it with RST, failing the read below).
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.sock.write_all(b"late").await.expect("the socket is not reset");
    r.sock.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(common::WAIT, r.sock.read_to_end(&mut rest)).await.expect("timely");
    assert!(read.is_ok(), "no reset: {read:?}");
}
