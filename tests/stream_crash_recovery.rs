//! kill -9 in the middle of confirmed publishing to a stream, a few rounds on one data
//! directory: afterwards every confirmed message is in the log, in publish order, byte for
//! byte, with offsets from 0 and no gap; and a second restart gives each message the same
//! offset again.

mod common;

use common::crash::{confirmed_across_kills, Load};
use common::{connect_port, free_port, spawn_warren, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;

const STREAM: &str = "stream-crash-recovery";
const ROUNDS: usize = 3;

fn body(id: u32) -> Vec<u8> {
    let mut b = id.to_be_bytes().to_vec();
    b.extend((0..(50 + id * 7919 % 500)).map(|i| (i ^ id) as u8));
    b
}

fn stream_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("stream")));
    t
}

/// Reads the whole stream from the first offset: (offset, id) in order.
async fn read_all(port: u16) -> Vec<(i64, u32)> {
    let conn = connect_port(port).await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-stream-offset".into(), AMQPValue::LongString(LongString::from("first")));
    let mut c = ch.basic_consume(STREAM.into(), "r".into(), BasicConsumeOptions::default(), args).await.unwrap();
    let mut out = Vec::new();
    // The log's length is what the queue says (every entry there is committed after start-up).
    let declared = ch
        .queue_declare(STREAM.into(), QueueDeclareOptions { durable: true, ..Default::default() }, stream_args())
        .await
        .unwrap();
    while out.len() < declared.message_count() as usize {
        let d = tokio::time::timeout(WAIT, c.next()).await.expect("a delivery").unwrap().unwrap();
        let offset = match d.properties.headers().as_ref().and_then(|h| h.inner().get("x-stream-offset").cloned()) {
            Some(AMQPValue::LongLongInt(n)) => n,
            other => panic!("no offset header: {other:?}"),
        };
        let id = u32::from_be_bytes(d.data[..4].try_into().unwrap());
        assert_eq!(d.data, body(id), "message {id} came back altered");
        out.push((offset, id));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confirmed_append_survives_kill_9_at_the_same_offset() {
    let data = tempfile::tempdir().unwrap();
    let load = Load { queue: STREAM, arguments: stream_args(), properties: BasicProperties::default(), body };
    let confirmed = confirmed_across_kills(data.path(), ROUNDS, &load).await;

    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    let log = read_all(port).await;
    warren.kill().unwrap();
    warren.wait().unwrap();

    let offsets: Vec<i64> = log.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..log.len() as i64).collect::<Vec<_>>(), "offsets from 0 without a gap");
    let ids: Vec<u32> = log.iter().map(|(_, id)| *id).collect();
    if let Some(w) = ids.windows(2).find(|w| w[0] >= w[1]) {
        panic!("out of publish order or twice: {} then {}", w[0], w[1]);
    }
    let missing: Vec<u32> = confirmed.iter().copied().filter(|id| ids.binary_search(id).is_err()).collect();
    assert!(
        missing.is_empty(),
        "{} of {} confirmed appends lost, first {:?}",
        missing.len(),
        confirmed.len(),
        &missing[..missing.len().min(10)]
    );

    // Again after a second (clean-slate) start: the same message at every offset.
    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    assert_eq!(read_all(port).await, log, "offsets changed across a restart");
    warren.kill().unwrap();
    warren.wait().unwrap();
    eprintln!("{} confirmed, {} in the log over {ROUNDS} kill -9 rounds", confirmed.len(), log.len());
}
