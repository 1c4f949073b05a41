//! Disk trouble: below the free-space limit publishers are blocked while consumers keep going;
//! when the disk is really full, failed writes are nacked (never confirmed), publishers are
//! blocked until the store writes again, and every confirmed message survives a restart.

mod common;

use std::time::Duration;

use common::{unique, WAIT};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use warren::config::Config;
use warren::server::Listener;

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn durable_queue(ch: &Channel, q: &str) {
    let opts = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare(q.into(), opts, FieldTable::default()).await.unwrap();
}

async fn eventually(what: &str, cond: impl FnMut() -> bool) {
    eventually_within(WAIT, what, cond).await
}

async fn eventually_within(wait: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + wait;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_disk_free_limit_publishers_block_and_consumers_keep_going() {
    let b = common::start_with(|c| c.disk_free_limit = 0).await;
    let q = unique("alarm");
    let (pub_conn, publisher) = b.channel().await;
    publisher.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    durable_queue(&publisher, &q).await;
    for i in 0..5u8 {
        let payload = [i];
        let confirm = publisher.basic_publish("".into(), q.as_str().into(), Default::default(), &payload, persistent());
        assert!(confirm.await.unwrap().await.unwrap().is_ack());
    }

    // No file system has this much free space: the alarm goes up.
    b.broker.set_disk_free_limit(u64::MAX);
    eventually("the disk alarm is raised", || b.broker.alarms.current().disk_free).await;
    // The publish that meets the alarm is still read (as in RabbitMQ); then the connection is
    // blocked and nothing more is read from it.
    let trigger = publisher
        .basic_publish("".into(), q.as_str().into(), Default::default(), b"trigger", persistent())
        .await
        .unwrap();
    eventually("the publisher is told connection.blocked", || pub_conn.status().blocked()).await;
    // (lapin itself holds this one back while blocked; a client that ignores connection.blocked
    // is simply not read from, as raw_protocol.rs's back-pressure test shows for reads.)
    let late = {
        let (publisher, q) = (publisher.clone(), q.clone());
        tokio::spawn(async move {
            let sent = publisher.basic_publish("".into(), q.as_str().into(), Default::default(), b"late", persistent());
            sent.await.unwrap().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!late.is_finished(), "a publish was confirmed while the connection was blocked");
    assert!(pub_conn.status().blocked());

    // Another connection drains the backlog meanwhile.
    let (_c, consumer) = b.channel().await;
    for i in 0..5u8 {
        let m = consumer.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().expect("a message");
        assert_eq!(m.delivery.data, vec![i]);
        m.delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert!(trigger.await.unwrap().is_ack());

    b.broker.set_disk_free_limit(0);
    eventually("the publisher is unblocked", || !pub_conn.status().blocked()).await;
    assert_eq!(next_message(&consumer, &q).await, b"trigger");
    assert!(tokio::time::timeout(WAIT, late).await.unwrap().unwrap().is_ack());
    assert_eq!(next_message(&consumer, &q).await, b"late", "held back by the alarm, then read and routed");
}

async fn next_message(ch: &Channel, q: &str) -> Vec<u8> {
    let wait = async {
        loop {
            if let Some(m) = ch.basic_get(q.into(), BasicGetOptions { no_ack: true }).await.unwrap() {
                return m.delivery.data;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, wait).await.expect("a message arrives")
}

/// A tmpfs mounted on a temporary directory; unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// None where mounting is not allowed (not root, or no CAP_SYS_ADMIN).
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(SmallDisk { dir })
    }

    fn grow(&self, megabytes: u32) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={megabytes}m")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount the tmpfs larger");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

async fn start_on(dir: &std::path::Path) -> (Listener, String) {
    let config = Config {
        bind: "127.0.0.1".into(),
        port: 0,
        data_dir: dir.to_path_buf(),
        log_level: "warn".into(),
        disk_free_limit: 0, // only real write failures raise an alarm here
        ..Config::default()
    };
    let listener = Listener::bind(&config).await.expect("start on the small disk");
    let uri = format!("amqp://guest:guest@{}/%2f", listener.local_addr().unwrap());
    (listener, uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_nacks_blocks_recovers_and_loses_nothing_confirmed() {
    let Some(disk) = SmallDisk::mount(48) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CAP_SYS_ADMIN); CI runs this test as root");
        return;
    };
    let data = disk.dir.path().join("data");
    let (listener, uri) = start_on(&data).await;
    let broker = listener.broker().clone();
    let server = tokio::spawn(listener.run());
    let q = unique("full");
    let conn = Connection::connect(&uri, Default::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    durable_queue(&ch, &q).await;

    // 256 KiB bodies, numbered, until the disk refuses one (48 MB cannot hold 400 of them).
    let body = |i: u32| -> Vec<u8> { (0..256 * 1024).map(|b: u32| (b.wrapping_mul(31) ^ i) as u8).collect() };
    let mut confirmed = Vec::new();
    let mut nacked = 0;
    for i in 0..400u32 {
        let payload = body(i);
        let sent = ch.basic_publish("".into(), q.as_str().into(), Default::default(), &payload, persistent());
        match tokio::time::timeout(WAIT, sent.await.unwrap()).await {
            Ok(Ok(c)) if c.is_ack() => confirmed.push(i),
            Ok(Ok(c)) if c.is_nack() => {
                nacked += 1;
                break;
            }
            other => panic!("publish {i}: unexpected outcome {other:?}"),
        }
    }
    assert!(nacked == 1, "the full disk made a publish fail (confirmed {})", confirmed.len());
    assert!(!confirmed.is_empty());
    eventually("the store alarm is raised", || broker.alarms.current().store_failed).await;

    // Reads keep working while writes fail.
    let (reader_conn, reader) = {
        let c = Connection::connect(&uri, Default::default()).await.unwrap();
        let ch = c.create_channel().await.unwrap();
        (c, ch)
    };
    let first = reader.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().expect("a message");
    assert_eq!(first.delivery.data, body(confirmed[0]));
    first.delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.unwrap();

    // Space comes back: the probe sees it, the alarm clears, publishes are confirmed again.
    disk.grow(512);
    // RocksDB resumes by itself after a no-space error once its space check passes (it polls
    // every few seconds).
    let t = std::time::Instant::now();
    eventually_within(Duration::from_secs(60), "the store alarm clears", || !broker.alarms.current().store_failed)
        .await;
    eprintln!("store writes again {:?} after space came back", t.elapsed());
    let after = 1_000_000u32;
    let payload = body(after);
    let sent = ch.basic_publish("".into(), q.as_str().into(), Default::default(), &payload, persistent());
    assert!(tokio::time::timeout(WAIT, sent.await.unwrap()).await.unwrap().unwrap().is_ack());
    confirmed.push(after);
    conn.close(200, "".into()).await.unwrap();
    reader_conn.close(200, "".into()).await.unwrap();
    drop(broker);
    server.abort();
    let _ = server.await;

    // Every confirmed message is there after a restart, in order, byte for byte.
    let (listener, uri) = loop {
        match Listener::bind(&Config { data_dir: data.clone(), port: 0, bind: "127.0.0.1".into(), ..Config::default() })
            .await
        {
            Ok(l) => {
                let uri = format!("amqp://guest:guest@{}/%2f", l.local_addr().unwrap());
                break (l, uri);
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let server = tokio::spawn(listener.run());
    let conn = Connection::connect(&uri, Default::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut want = confirmed.iter().peekable();
    while let Some(m) = ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
        // A nacked publish may be there too (at least once); confirmed ones must all be.
        if want.peek().is_some_and(|&&i| m.delivery.data == body(i)) {
            want.next();
        }
    }
    assert!(want.peek().is_none(), "confirmed messages missing after restart from {:?}", want.peek());
    conn.close(200, "".into()).await.unwrap();
    server.abort();
}
