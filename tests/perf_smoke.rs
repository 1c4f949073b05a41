//! Whole runs of the load generator (`warren-perf`) against an in-process Warren on a free port:
//! the load generator and the broker agree on what was sent and received. Counts only; no
//! timing is asserted. Here rather than in the perf crate, which does not depend on the broker.

use std::time::{Duration, Instant};

use clap::Parser;

use warren::config::Config;
use warren::protocol::methods::QueueDeclare;
use warren::protocol::{FieldTable, FieldValue, Method};
use warren::server::Listener;
use warren_perf::args::AmqpUri;
use warren_perf::client::{short, ClientError, Conn};
use warren_perf::report::Report;
use warren_perf::{run_async, PerfArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    perf: PerfArgs,
}

async fn broker() -> (String, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("tempdir");
    let config = Config { bind: "127.0.0.1".into(), port: 0, data_dir: data.path().to_path_buf(), ..Config::default() };
    let listener = Listener::bind(&config).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(listener.run());
    (format!("amqp://guest:guest@{addr}/%2F"), data)
}

async fn perf(uri: &str, flags: &[&str]) -> Report {
    let base = ["perf", "--uri", uri, "--quiet"];
    let args = Cli::try_parse_from(base.iter().chain(flags).copied()).expect("flags parse").perf;
    let limits = args.validate().expect("valid flags");
    run_async(&args, limits).await.expect("run completes")
}

#[tokio::test]
async fn counted_run_with_confirms_and_acks() {
    let (uri, _data) = broker().await;
    let r = perf(&uri, &["-x", "2", "-y", "2", "-C", "500", "-c", "20", "-q", "50", "-A", "10", "-s", "100"]).await;
    assert_eq!((r.sent, r.received, r.confirmed), (1000, 1000, 1000));
    assert_eq!((r.errors, r.missing), (0, Some(0)), "{:?}", r.error_samples);
    assert_eq!((r.confirm.count, r.e2e.count), (1000, 1000));
    assert!(r.broker.starts_with("Warren"), "{}", r.broker);
}

#[tokio::test]
async fn fanout_delivers_every_message_to_every_queue() {
    let (uri, _data) = broker().await;
    let r = perf(&uri, &["--fanout-queues", "3", "-y", "3", "-C", "200", "--auto-ack"]).await;
    assert_eq!((r.sent, r.received, r.queues), (200, 600, 3));
    assert_eq!((r.errors, r.missing), (0, Some(0)), "{:?}", r.error_samples);
}

#[tokio::test]
async fn delayed_messages_all_arrive_and_their_lateness_is_measured() {
    let (uri, _data) = broker().await;
    let flags = ["--delayed-exchange", "--delay-ms", "20..300", "-s", "24", "-C", "300", "-c", "50", "--persistent"];
    let r = perf(&uri, &[&flags[..], &["--auto-ack"]].concat()).await;
    assert_eq!((r.sent, r.received, r.confirmed, r.returned), (300, 300, 300, 0));
    assert_eq!((r.errors, r.missing), (0, Some(0)), "{:?}", r.error_samples);
    assert_eq!(r.lateness.map(|l| l.count), Some(300));
    assert!(r.scenario.contains("delayed direct exchange") && r.scenario.contains("x-delay 20..300 ms"));
}

#[tokio::test]
async fn ttl_retry_messages_are_dead_lettered_to_the_consumers_and_the_wait_queues_go_at_the_end() {
    let (uri, _data) = broker().await;
    let flags = ["--ttl-queues", "3", "--ttl-ms", "50..250", "-s", "24", "-C", "300", "-c", "50", "--persistent"];
    let r = perf(&uri, &[&flags[..], &["--auto-ack", "-u", "retry"]].concat()).await;
    assert_eq!((r.sent, r.received, r.confirmed, r.returned), (300, 300, 300, 0));
    assert_eq!((r.errors, r.missing), (0, Some(0)), "{:?}", r.error_samples);
    let lateness = r.lateness.expect("lateness measured");
    assert_eq!(lateness.count, 300);
    // Every message waited about its queue's TTL (no message is delivered before ~50 ms).
    assert!(r.e2e.p50.is_some_and(|ns| ns >= 40_000_000), "{:?}", r.e2e);
    assert!(r.publish_seconds.is_some_and(|p| p <= r.seconds));
    assert!(r.scenario.contains("3 wait queues (x-message-ttl 50..250 ms)"), "{}", r.scenario);
    assert_queue_gone(&uri, "retry-wait-2-150ms").await;
}

#[tokio::test]
async fn ttl_retry_wait_queues_stay_with_keep_queues_and_hold_their_messages() {
    let (uri, _data) = broker().await;
    // No consumers: the messages wait, then are dead-lettered into 'kept' and stay there.
    let r = perf(
        &uri,
        &["--ttl-queues", "2", "--ttl-ms", "10..20", "-s", "24", "-C", "20", "-y", "0", "--keep-queues", "-u", "kept"],
    )
    .await;
    assert_eq!((r.sent, r.errors), (20, 0), "{:?}", r.error_samples);
    let mut conn = Conn::open(&AmqpUri::parse(&uri).unwrap(), "check").await.unwrap();
    conn.open_channel(1).await.unwrap();
    let mut args = FieldTable::new();
    args.insert(short("x-message-ttl").unwrap(), FieldValue::I32(20));
    args.insert(short("x-dead-letter-exchange").unwrap(), "".into());
    args.insert(short("x-dead-letter-routing-key").unwrap(), "kept".into());
    // The same declaration again is accepted: the wait queue is there with these arguments.
    let again = Method::QueueDeclare(QueueDeclare {
        queue: short("kept-wait-2-20ms").unwrap(),
        passive: false,
        durable: false,
        exclusive: false,
        auto_delete: false,
        no_wait: false,
        arguments: args,
    });
    assert!(matches!(conn.call(1, again).await, Ok(Method::QueueDeclareOk(_))));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let passive =
            Method::QueueDeclare(QueueDeclare { queue: short("kept").unwrap(), passive: true, ..Default::default() });
        match conn.call(1, passive).await {
            Ok(Method::QueueDeclareOk(ok)) if ok.message_count == 20 => break,
            Ok(Method::QueueDeclareOk(ok)) => {
                assert!(Instant::now() < deadline, "only {} dead-lettered into 'kept'", ok.message_count)
            }
            other => panic!("passive declare of 'kept': {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_stream_filled_by_one_run_is_read_whole_by_three_consumers_of_the_next() {
    let (uri, _data) = broker().await;
    let stream = ["--queue-type", "stream", "-u", "log", "-s", "1024", "--keep-queues"];
    let r = perf(&uri, &[&stream[..], &["-y", "0", "-C", "300", "-c", "50"]].concat()).await;
    assert_eq!((r.sent, r.confirmed, r.errors), (300, 300, 0), "{:?}", r.error_samples);
    assert!(r.scenario.contains("1 stream"), "{}", r.scenario);
    let read = ["-x", "0", "-y", "3", "-q", "100", "--stream-offset", "first", "-D", "900"];
    let r = perf(&uri, &[&stream[..], &read[..]].concat()).await;
    assert_eq!((r.received, r.errors, r.missing), (900, 0, Some(0)), "{:?}", r.error_samples);
    assert!(r.scenario.contains("from offset first"), "{}", r.scenario);
    // Publishing and reading at once, the stream deleted at the end: every consumer gets all.
    let both = ["--queue-type", "stream", "-u", "both", "-y", "2", "-q", "50", "--stream-offset", "first", "-C", "200"];
    let r = perf(&uri, &both).await;
    assert_eq!((r.sent, r.received, r.missing, r.errors), (200, 400, Some(0), 0), "{:?}", r.error_samples);
    assert_queue_gone(&uri, "both").await;
}

#[tokio::test]
async fn topic_bindings_route_each_message_once_and_large_bodies_span_frames() {
    let (uri, _data) = broker().await;
    let flags = ["-t", "topic", "--topic-bindings", "50", "--queues", "2", "-y", "2", "-x", "2", "-C", "100"];
    let r = perf(&uri, &[&flags[..], &["-s", "300000", "--auto-ack"]].concat()).await;
    assert_eq!((r.sent, r.received, r.returned), (200, 200, 0));
    assert_eq!((r.errors, r.missing), (0, Some(0)), "{:?}", r.error_samples);
}

#[tokio::test]
async fn rate_limited_timed_run_and_idle_connections_end_by_themselves() {
    let (uri, _data) = broker().await;
    let r = perf(
        &uri,
        &["-r", "200", "-z", "0.5", "--idle-connections", "5", "--broker-pid", &std::process::id().to_string()],
    )
    .await;
    assert_eq!(r.errors, 0, "{:?}", r.error_samples);
    // The schedule allows one message at the start and then 200 per second of the run, however
    // long the run really took.
    assert!(r.sent > 0 && r.sent as f64 <= 200.0 * r.seconds + 1.0, "{} in {} s", r.sent, r.seconds);
    assert!(r.idle_rss_per_connection_kib.is_some());
    assert!(r.broker_cpu_s.is_some());
}

#[tokio::test]
async fn the_run_cleans_up_what_it_declared() {
    let (uri, _data) = broker().await;
    perf(&uri, &["-C", "10", "--auto-ack", "--queue", "cleanup-check"]).await;
    // A passive declare of the run's queue now fails: it was deleted.
    assert_queue_gone(&uri, "cleanup-check").await;
}

/// A passive declare of `queue` fails with 404: the run deleted it.
async fn assert_queue_gone(uri: &str, queue: &str) {
    let mut conn = Conn::open(&AmqpUri::parse(uri).unwrap(), "check").await.unwrap();
    conn.open_channel(1).await.unwrap();
    let passive =
        Method::QueueDeclare(QueueDeclare { queue: short(queue).unwrap(), passive: true, ..Default::default() });
    match conn.call(1, passive).await {
        Err(ClientError::Closed { code: 404, .. }) => {}
        other => panic!("expected 404 for the deleted queue {queue}, got {other:?}"),
    }
}
