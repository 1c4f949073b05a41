//! Queue length limits: `x-max-length` (messages) and `x-max-length-bytes` (body bytes only,
//! the limit itself allowed) with `x-overflow` drop-head (the oldest go, dead-lettered as
//! `maxlen`), reject-publish (the publisher is nacked, other queues still get the message) and
//! reject-publish-dlx; only ready messages count, not unacked ones.

mod common;

use common::lifecycle::*;
use common::unique;
use lapin::options::*;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

async fn confirming(b: &common::TestBroker) -> (Connection, Channel) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

async fn limited(ch: &Channel, args: Vec<(&str, AMQPValue)>) -> String {
    let q = unique("limited");
    declare(ch, &q, table(args)).await;
    q
}

/// Publishes each body through the default exchange; "ack" or "nack" for each.
async fn publish_all(ch: &Channel, q: &str, bodies: &[&str]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for body in bodies {
        let c = publish(ch, "", q, body.as_bytes(), BasicProperties::default()).await;
        out.push(if c.is_ack() { "ack" } else { "nack" });
    }
    out
}

/// `(body, reason)` of the next `n` dead letters.
async fn dead_letters(ch: &Channel, dlq: &str, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = get_one(ch, dlq).await;
        out.push((String::from_utf8(d.data.clone()).unwrap(), field(&deaths(&d)[0], "reason")));
    }
    out
}

fn maxlen(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(b, r)| (b.to_string(), r.to_string())).collect()
}

#[tokio::test]
async fn max_length_drops_the_oldest_and_dead_letters_them_as_maxlen() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    for overflow in [None, Some("drop-head")] {
        let (dlx, dlq) = sink(&ch).await;
        let mut args = vec![("x-max-length", int(2)), ("x-dead-letter-exchange", text(&dlx))];
        args.extend(overflow.map(|o| ("x-overflow", text(o))));
        let q = limited(&ch, args).await;
        assert_eq!(publish_all(&ch, &q, &["m0", "m1", "m2", "m3"]).await, ["ack"; 4], "{overflow:?}");
        assert_eq!(count(&ch, &q).await, 2);
        assert_eq!(bodies(drain(&ch, &q).await), ["m2", "m3"]);
        assert_eq!(dead_letters(&ch, &dlq, 2).await, maxlen(&[("m0", "maxlen"), ("m1", "maxlen")]));
        assert!(get(&ch, &dlq).await.is_none());
    }
}

#[tokio::test]
async fn max_length_zero_drops_every_message() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let q = limited(&ch, vec![("x-max-length", int(0)), ("x-dead-letter-exchange", text(&dlx))]).await;
    assert_eq!(publish_all(&ch, &q, &["z"]).await, ["ack"]);
    assert_eq!(count(&ch, &q).await, 0);
    assert_eq!(dead_letters(&ch, &dlq, 1).await, maxlen(&[("z", "maxlen")]));
}

#[tokio::test]
async fn max_length_bytes_counts_body_bytes_up_to_and_including_the_limit() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = limited(&ch, vec![("x-max-length-bytes", int(10))]).await;
    let padded = BasicProperties::default().with_headers(table(vec![("padding", text(&"x".repeat(500)))]));
    send(&ch, &q, b"12345", padded).await; // headers do not count
    send(&ch, &q, b"67890", BasicProperties::default()).await; // exactly 10 bytes: both kept
    assert_eq!(count(&ch, &q).await, 2);
    send(&ch, &q, b"!", BasicProperties::default()).await; // 11 bytes: the oldest goes
    assert_eq!(bodies(drain(&ch, &q).await), ["67890", "!"]);

    // A message bigger than the limit on its own goes too.
    send(&ch, &q, b"small", BasicProperties::default()).await;
    send(&ch, &q, &[b'x'; 11], BasicProperties::default()).await;
    assert_eq!(count(&ch, &q).await, 0);
}

#[tokio::test]
async fn both_limits_apply() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = limited(&ch, vec![("x-max-length", int(3)), ("x-max-length-bytes", int(6))]).await;
    for body in ["aa", "bb", "cc", "dd"] {
        send(&ch, &q, body.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(bodies(drain(&ch, &q).await), ["bb", "cc", "dd"], "3 messages, 6 bytes");
    for body in ["1234", "5678"] {
        send(&ch, &q, body.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(bodies(drain(&ch, &q).await), ["5678"], "8 bytes would be too many");
}

#[tokio::test]
async fn reject_publish_nacks_new_messages_and_keeps_the_old_ones() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let args =
        vec![("x-max-length", int(2)), ("x-overflow", text("reject-publish")), ("x-dead-letter-exchange", text(&dlx))];
    let q = limited(&ch, args).await;
    assert_eq!(publish_all(&ch, &q, &["m0", "m1", "m2", "m3"]).await, ["ack", "ack", "nack", "nack"]);
    assert_eq!(bodies(drain(&ch, &q).await), ["m0", "m1"]);
    assert!(drain(&ch, &dlq).await.is_empty(), "plain reject-publish does not dead-letter");
    assert_eq!(publish_all(&ch, &q, &["m4"]).await, ["ack"], "room again");

    let zero = limited(&ch, vec![("x-max-length", int(0)), ("x-overflow", text("reject-publish"))]).await;
    assert_eq!(publish_all(&ch, &zero, &["z"]).await, ["nack"]);

    let bytes = limited(&ch, vec![("x-max-length-bytes", int(4)), ("x-overflow", text("reject-publish"))]).await;
    assert_eq!(publish_all(&ch, &bytes, &["ab", "cd", "e"]).await, ["ack", "ack", "nack"]);
}

#[tokio::test]
async fn reject_publish_without_confirms_drops_the_message_and_keeps_the_channel() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = limited(&ch, vec![("x-max-length", int(1)), ("x-overflow", text("reject-publish"))]).await;
    let (_c2, plain) = b.channel().await;
    for body in ["m0", "m1", "m2"] {
        plain
            .basic_publish("".into(), q.as_str().into(), Default::default(), body.as_bytes(), Default::default())
            .await
            .unwrap();
    }
    assert_eq!(count(&plain, &q).await, 1, "the channel is still open");
    assert_eq!(bodies(drain(&ch, &q).await), ["m0"]);
}

#[tokio::test]
async fn reject_publish_refuses_only_for_the_full_queue() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let x = exchange(&ch, ExchangeKind::Fanout, false).await;
    let full = limited(&ch, vec![("x-max-length", int(1)), ("x-overflow", text("reject-publish"))]).await;
    let roomy = limited(&ch, vec![]).await;
    bind(&ch, &full, &x, "").await;
    bind(&ch, &roomy, &x, "").await;
    assert!(publish(&ch, &x, "", b"first", BasicProperties::default()).await.is_ack());
    // Confirmed only when every queue took it: nacked, but the other queue has it.
    assert!(publish(&ch, &x, "", b"second", BasicProperties::default()).await.is_nack());
    assert_eq!(bodies(drain(&ch, &full).await), ["first"]);
    assert_eq!(bodies(drain(&ch, &roomy).await), ["first", "second"]);
}

#[tokio::test]
async fn reject_publish_dlx_nacks_and_dead_letters() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let args = vec![
        ("x-max-length", int(2)),
        ("x-overflow", text("reject-publish-dlx")),
        ("x-dead-letter-exchange", text(&dlx)),
    ];
    let q = limited(&ch, args).await;
    assert_eq!(publish_all(&ch, &q, &["m0", "m1", "m2", "m3"]).await, ["ack", "ack", "nack", "nack"]);
    assert_eq!(bodies(drain(&ch, &q).await), ["m0", "m1"]);
    let d = get_one(&ch, &dlq).await;
    assert_eq!(d.data, b"m2");
    assert_eq!(history(&d), [(q.clone(), "maxlen".into(), 1)]);
    assert_eq!(dead_letters(&ch, &dlq, 1).await, maxlen(&[("m3", "maxlen")]));
    assert_eq!(d.routing_key.as_str(), q);
}

#[tokio::test]
async fn unacked_messages_do_not_count_towards_the_limit() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;

    // drop-head: with one of three delivered and unacked, nothing needs to go.
    let (dlx, dlq) = sink(&ch).await;
    let q = limited(&ch, vec![("x-max-length", int(2)), ("x-dead-letter-exchange", text(&dlx))]).await;
    send(&ch, &q, b"m0", BasicProperties::default()).await;
    send(&ch, &q, b"m1", BasicProperties::default()).await;
    let m0 = get_unacked(&ch, &q).await;
    send(&ch, &q, b"m2", BasicProperties::default()).await;
    assert_eq!(count(&ch, &q).await, 2);
    assert!(drain(&ch, &dlq).await.is_empty(), "nothing dropped for the unacked message");
    send(&ch, &q, b"m3", BasicProperties::default()).await; // three ready: the oldest ready goes
    assert_eq!(dead_letters(&ch, &dlq, 1).await, maxlen(&[("m1", "maxlen")]));
    m0.ack(BasicAckOptions::default()).await.unwrap();
    assert_eq!(bodies(drain(&ch, &q).await), ["m2", "m3"]);

    // reject-publish, by length and by bytes: the unacked message leaves room.
    for limit in [("x-max-length", int(1)), ("x-max-length-bytes", int(2))] {
        let q = limited(&ch, vec![limit.clone(), ("x-overflow", text("reject-publish"))]).await;
        assert_eq!(publish_all(&ch, &q, &["m0"]).await, ["ack"]);
        let m0 = get_unacked(&ch, &q).await;
        assert_eq!(publish_all(&ch, &q, &["m1", "m2"]).await, ["ack", "nack"], "{limit:?}");
        m0.ack(BasicAckOptions::default()).await.unwrap();
        assert_eq!(bodies(drain(&ch, &q).await), ["m1"]);
    }
}
