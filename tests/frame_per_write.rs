//! A client that writes each frame with its own syscall, as most client libraries do: while it
//! publishes fast the broker reads it a few frames at a time (its socket's low-water mark
//! raised, `src/server/coalesce.rs`), and when it stops, what is left below the mark is read
//! all the same.

mod common;

use bytes::{BufMut, BytesMut};
use common::raw::Raw;
use common::unique;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use warren::protocol::methods::*;
use warren::protocol::{encode_content_header, encode_method, BasicProperties, Method, ShortStr};

const MESSAGES: u64 = 30_000;

/// The three frames of a publish of `body` to `queue`, each on its own.
fn publish_frames(queue: &str, body: &[u8]) -> [BytesMut; 3] {
    let mut method = BytesMut::new();
    let publish = BasicPublish { routing_key: ShortStr::try_from(queue).unwrap(), ..Default::default() };
    encode_method(&mut method, 1, &Method::BasicPublish(publish));
    let mut header = BytesMut::new();
    encode_content_header(&mut header, 1, body.len() as u64, &BasicProperties::default());
    let mut frame = BytesMut::new();
    frame.put_u8(3);
    frame.put_u16(1);
    frame.put_u32(body.len() as u32);
    frame.put_slice(body);
    frame.put_u8(0xce);
    [method, header, frame]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_publisher_writing_frame_by_frame_has_every_message_read_when_it_stops() {
    let b = common::start().await;
    let q = unique("per-frame");
    let (_c, ch) = b.channel().await;
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let queue = b.queue(&q);

    let mut p = Raw::handshake(b.addr).await;
    p.sock.set_nodelay(true).unwrap();
    p.send_method(1, Method::ChannelOpen(ChannelOpen::default())).await;
    assert!(matches!(p.method().await, Method::ChannelOpenOk(_)));
    for i in 0..MESSAGES {
        for frame in publish_frames(&q, &i.to_be_bytes()) {
            p.send(&frame).await;
        }
    }
    // Nothing more is written: the last messages, fewer bytes than the mark, must come in too.
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while u64::from(queue.message_count()) < MESSAGES {
        assert!(tokio::time::Instant::now() < deadline, "{} of {MESSAGES} read", queue.message_count());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(u64::from(queue.message_count()), MESSAGES);
}
