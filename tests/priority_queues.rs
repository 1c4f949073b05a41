//! Priority queues (`x-max-priority`): higher priorities first, FIFO within a priority, no
//! priority counting as 0 and one above the maximum as the maximum (the property delivered
//! unchanged), requeued messages back in their place, and a persistent backlog beyond the
//! memory window still delivered by priority, also after a restart.

mod common;

use std::time::Duration;

use common::lifecycle::*;
use common::unique;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::{BasicProperties, Channel, Connection};

async fn confirming(b: &common::TestBroker) -> (Connection, Channel) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

fn with_priority(p: Option<u8>) -> BasicProperties {
    match p {
        Some(p) => BasicProperties::default().with_priority(p),
        None => BasicProperties::default(),
    }
}

/// `(body, priority)` in publish order.
const MIXED: [(&str, Option<u8>); 10] = [
    ("p-none-a", None),
    ("p1", Some(1)),
    ("p9", Some(9)),
    ("p5-a", Some(5)),
    ("p3", Some(3)),
    ("p5-b", Some(5)),
    ("p0", Some(0)),
    ("p-none-b", None),
    ("p200", Some(200)),
    ("p255", Some(255)),
];

async fn queue_with(ch: &Channel, max_priority: Option<i32>) -> String {
    let q = unique("prio");
    let args = max_priority.map(|m| vec![("x-max-priority", int(m))]).unwrap_or_default();
    declare(ch, &q, table(args)).await;
    for (body, p) in MIXED {
        send(ch, &q, body.as_bytes(), with_priority(p)).await;
    }
    q
}

#[tokio::test]
async fn higher_priority_first_fifo_within_a_priority_and_none_counts_as_zero() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = queue_with(&ch, Some(10)).await;
    assert_eq!(count(&ch, &q).await, 10);
    // 200 and 255 count as 10 (in publish order); then 9, 5, 5, 3, 1; then the priority-0
    // group (none and 0) in publish order.
    let want = ["p200", "p255", "p9", "p5-a", "p5-b", "p3", "p1", "p-none-a", "p0", "p-none-b"];
    assert_eq!(bodies(drain(&ch, &q).await), want);

    let q = queue_with(&ch, Some(255)).await;
    let want = ["p255", "p200", "p9", "p5-a", "p5-b", "p3", "p1", "p-none-a", "p0", "p-none-b"];
    assert_eq!(bodies(drain(&ch, &q).await), want);
}

#[tokio::test]
async fn a_priority_above_the_maximum_counts_as_the_maximum_and_is_delivered_unchanged() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = queue_with(&ch, Some(5)).await;
    // 9, 200 and 255 count as 5 and keep their publish order among the two 5s.
    let want = ["p9", "p5-a", "p5-b", "p200", "p255", "p3", "p1", "p-none-a", "p0", "p-none-b"];
    let mut got = Vec::new();
    while let Some(d) = get(&ch, &q).await {
        let name = String::from_utf8(d.data).unwrap();
        let sent = MIXED.iter().find(|(b, _)| *b == name).unwrap().1;
        assert_eq!(*d.properties.priority(), sent, "{name}: the property is not capped");
        got.push(name);
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn without_priorities_the_queue_is_fifo() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let fifo: Vec<&str> = MIXED.iter().map(|(b, _)| *b).collect();
    for max in [None, Some(0)] {
        let q = queue_with(&ch, max).await;
        assert_eq!(bodies(drain(&ch, &q).await), fifo, "x-max-priority {max:?}");
    }
}

#[tokio::test]
async fn a_requeued_message_goes_back_to_its_place_in_its_priority() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("prio-requeue");
    declare(&ch, &q, table(vec![("x-max-priority", int(10))])).await;
    for (body, p) in [("a", 2), ("b", 7), ("c", 7), ("d", 2)] {
        send(&ch, &q, body.as_bytes(), with_priority(Some(p))).await;
    }
    let b_ = get_unacked(&ch, &q).await;
    let c = get_unacked(&ch, &q).await;
    assert_eq!((b_.data.as_slice(), c.data.as_slice()), (&b"b"[..], &b"c"[..]));
    let a = get_unacked(&ch, &q).await;
    // Requeued in reverse: each goes back to its own place, ahead of the lower priority.
    a.nack(BasicNackOptions { multiple: false, requeue: true }).await.unwrap();
    c.nack(BasicNackOptions { multiple: false, requeue: true }).await.unwrap();
    b_.reject(BasicRejectOptions { requeue: true }).await.unwrap();
    let mut got = Vec::new();
    while let Some(d) = get(&ch, &q).await {
        got.push((String::from_utf8(d.data).unwrap(), d.redelivered));
    }
    let want = [("b", true), ("c", true), ("a", true), ("d", false)].map(|(b, r)| (b.to_string(), r));
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_consumer_gets_the_backlog_in_priority_order() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("prio-consume");
    declare(&ch, &q, table(vec![("x-max-priority", int(10))])).await;
    for (body, p) in [("low", 1), ("high", 8), ("mid", 4)] {
        send(&ch, &q, body.as_bytes(), with_priority(Some(p))).await;
    }
    let (_c2, _consumer_ch, mut consumer) = one_at_a_time(&b, &q).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = next(&mut consumer).await;
        got.push(String::from_utf8(d.data.clone()).unwrap());
        if got.len() == 1 {
            // Arrives while "mid" and "low" wait: it goes ahead of both.
            send(&ch, &q, b"urgent", with_priority(Some(9))).await;
        }
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let last = next(&mut consumer).await;
    got.push(String::from_utf8(last.data.clone()).unwrap());
    last.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(got, ["high", "urgent", "mid", "low"]);
    assert!(tokio::time::timeout(Duration::from_millis(100), consumer.next()).await.is_err());
}

const BACKLOG: u32 = 300;

/// The priority of message `i` of the backlog: every level 0..=9, mixed.
fn backlog_priority(i: u32) -> u8 {
    (i * 7 % 10) as u8
}

/// Indexes of the backlog in the order a priority queue delivers them.
fn backlog_order() -> Vec<u32> {
    let mut order: Vec<u32> = (0..BACKLOG).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(backlog_priority(i))); // stable: FIFO within a level
    order
}

async fn take_in_order(ch: &Channel, q: &str, expected: &[u32]) {
    for &i in expected {
        let d = get(ch, q).await.unwrap_or_else(|| panic!("message {i} missing"));
        assert_eq!(d.data, format!("m{i}").as_bytes(), "expected m{i} (priority {})", backlog_priority(i));
        assert_eq!(*d.properties.priority(), Some(backlog_priority(i)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_memory_window_is_delivered_by_priority_also_after_a_restart() {
    let b = common::start_with(|c| c.queue_memory_window = 10).await;
    let q = unique("prio-backlog");
    let order = backlog_order();
    let (now, later) = order.split_at(100);
    {
        let (conn, ch) = confirming(&b).await;
        declare_durable(&ch, &q, table(vec![("x-max-priority", int(9))])).await;
        for i in 0..BACKLOG {
            let props = persistent().with_priority(backlog_priority(i));
            send(&ch, &q, format!("m{i}").as_bytes(), props).await;
        }
        let resident = b.queue(&q).resident_count();
        assert!(resident < 50, "the backlog is mostly on disk ({resident} bodies in memory)");
        take_in_order(&ch, &q, now).await;
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    assert!(b.queue(&q).resident_count() < 50, "recovered beyond the window onto disk");
    let (_c, ch) = b.channel().await;
    assert_eq!(count(&ch, &q).await, later.len() as u32);
    take_in_order(&ch, &q, later).await;
    assert!(get(&ch, &q).await.is_none());
}
