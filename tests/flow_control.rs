//! Publisher flow control: a publisher that outruns a consumer whose client reads too slowly is
//! held back (its connection is not read, and shows `flow`) so the queue's backlog stays
//! bounded, and everything arrives. A queue without consumers, or whose consumers are at their
//! prefetch limit, or whose consumer's client reads nothing at all, takes a backlog without
//! holding anyone back for long.

mod common;

use std::time::Duration;

use common::http::Http;
use common::raw::Raw;
use common::unique;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tokio::io::AsyncReadExt;
use warren::broker::queue::flow::{FLOW_HIGH, STALL_MS};
use warren::protocol::methods::*;
use warren::protocol::{decode_frame, Frame, Method, ShortStr};

// Large enough that the socket buffers between broker and consumer hold few of them.
const MESSAGES: usize = 10_000;
const BODY: [u8; 8192] = [7; 8192];

/// A no-ack consumer on `queue` over a raw socket, not reading yet.
async fn raw_consumer(b: &common::TestBroker, queue: &str) -> Raw {
    let mut consumer = Raw::handshake(b.addr).await;
    consumer.send_method(1, Method::ChannelOpen(ChannelOpen::default())).await;
    assert!(matches!(consumer.method().await, Method::ChannelOpenOk(_)));
    let consume = BasicConsume { queue: ShortStr::try_from(queue).unwrap(), no_ack: true, ..Default::default() };
    consumer.send_method(1, Method::BasicConsume(consume)).await;
    assert!(matches!(consumer.method().await, Method::BasicConsumeOk(_)));
    consumer
}

/// Publishes MESSAGES to `queue` through the default exchange, in a task.
fn publish_all(publisher: lapin::Channel, queue: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for _ in 0..MESSAGES {
            let props = BasicProperties::default();
            publisher.basic_publish("".into(), queue.as_str().into(), Default::default(), &BODY, props).await.unwrap();
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_slower_than_its_publisher_holds_the_publisher_back() {
    let b = common::start().await;
    let q = unique("flow");
    let (_pc, publisher) = b.channel().await;
    publisher.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let queue = b.queue(&q);
    let mut consumer = raw_consumer(&b, &q).await;
    // It reads, but slowly: 64 KiB every 5 ms (some 1,600 deliveries a second), where even a
    // debug build publishes faster.
    let reader = tokio::spawn(async move {
        let mut delivered = 0;
        while delivered < MESSAGES {
            consumer.buf.reserve(64 * 1024);
            let n = (&mut consumer.sock).take(64 * 1024).read_buf(&mut consumer.buf).await.unwrap();
            assert!(n > 0, "the consumer's connection stays open");
            while let Some(frame) = decode_frame(&mut consumer.buf, 0).unwrap() {
                if let Frame::Method { method: Method::BasicDeliver(_), .. } = frame {
                    delivered += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let sender = publish_all(publisher, q.clone());
    let http = Http::new(b.mgmt);
    let (mut seen_flow, mut most) = (false, 0);
    while !sender.is_finished() {
        most = most.max(queue.info().ready as usize);
        if !seen_flow && queue.flow.is_on() {
            let conns = http.get("/connections").await.body;
            seen_flow = conns.as_array().unwrap().iter().any(|c| c["state"] == "flow");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen_flow, "the publishing connection showed state flow (largest backlog {most})");
    // One read batch of the publisher's may land after the high mark.
    assert!((FLOW_HIGH..FLOW_HIGH + 512).contains(&most), "largest backlog {most}");
    tokio::time::timeout(common::WAIT * 3, reader).await.expect("everything arrives").unwrap();
    assert!(!queue.flow.is_on());
    assert_eq!(queue.info().ready, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_reads_nothing_holds_nobody_back_for_long() {
    let b = common::start().await;
    let q = unique("stuck");
    let (_pc, publisher) = b.channel().await;
    publisher.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let _consumer = raw_consumer(&b, &q).await;
    let sender = publish_all(publisher, q.clone());
    let wait = common::WAIT + Duration::from_millis(STALL_MS);
    tokio::time::timeout(wait, sender).await.expect("the publisher is not held back by a stuck consumer").unwrap();
    let queue = b.queue(&q);
    assert!(queue.info().ready as usize > FLOW_HIGH * 2, "the backlog stays in the queue");
    assert!(!queue.flow.is_on());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_without_consumers_or_at_their_prefetch_holds_nobody_back() {
    let b = common::start().await;
    let q = unique("backlog");
    let (_pc, publisher) = b.channel().await;
    publisher.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    publisher.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    // A consumer at its prefetch limit (one unacked message, never acked).
    let (_cc, consumer) = b.channel().await;
    consumer.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let _consumer = consumer
        .basic_consume(q.as_str().into(), "slow".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let n = FLOW_HIGH * 3;
    for _ in 0..n {
        publisher
            .basic_publish("".into(), q.as_str().into(), Default::default(), b"m", BasicProperties::default())
            .await
            .unwrap();
    }
    publisher.wait_for_confirms().await.unwrap();
    let queue = b.queue(&q);
    assert_eq!(queue.info().ready as usize, n - 1, "all taken; one is with the consumer");
    assert!(!queue.flow.is_on());
}
