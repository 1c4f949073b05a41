//! The store's write path for persistent messages.
//!
//! - `store/record`: encoding a message into its stored record (`broker::record::encode`, done
//!   once per persistent publish) and decoding it back (recovery, paging in), 16 B and 1 KB
//!   bodies with the properties of `benches/codec.rs`. Elements are messages.
//! - `store/group-commit`: what a durable queue does for persistent publishes, end to end. The
//!   store is opened as the broker opens it (`StoreHandle::open` on a fresh temporary data
//!   directory, which starts the group-commit writer thread); each message is encoded and
//!   submitted as `Op::Put` with a completion, as `Queue::publish` does, and an iteration waits
//!   until the completions of all `in_flight` messages have run, i.e. until the writer has
//!   written them and synced the WAL (`fdatasync`). `in_flight` 1 is a publisher waiting for
//!   each confirm; 100 is a confirm window of 100 (scenario S2); 1,000 a bigger burst. Elements
//!   are messages, so criterion reports synced messages per second.
//!
//! After each sample (outside the timed part) the queue's range is deleted, as acks would, so
//! the data directory does not grow through the run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use warren::broker::message::Message;
use warren::broker::record as messages;
use warren::protocol::{BasicProperties, FieldTable, FieldValue, ShortStr};
use warren::store::writer::Op;
use warren::store::StoreHandle;

fn message(size: usize) -> Message {
    let mut headers = FieldTable::new();
    headers.insert(ShortStr::from_static("x-trace"), FieldValue::from("abc123"));
    Message {
        exchange: ShortStr::from_static("amq.direct"),
        routing_key: ShortStr::from_static("orders.created"),
        properties: Box::new(BasicProperties {
            content_type: Some(ShortStr::from_static("application/json")),
            delivery_mode: Some(2),
            headers: Some(headers),
            message_id: Some(ShortStr::from_static("m-1")),
            ..Default::default()
        }),
        body: Bytes::from(vec![b'x'; size]),
        timestamp_ms: 0,
    }
}

fn record(c: &mut Criterion) {
    let mut group = c.benchmark_group("store/record");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for size in [16usize, 1024] {
        let m = message(size);
        group.bench_function(BenchmarkId::new("encode", format!("{size}B")), |b| {
            b.iter(|| messages::encode(black_box(&m)))
        });
        let encoded = messages::encode(&m);
        group.bench_function(BenchmarkId::new("decode", format!("{size}B")), |b| {
            b.iter(|| messages::decode(black_box(&encoded)).expect("a record"))
        });
    }
    group.finish();
}

/// What the completions of one batch count down; the last one wakes the benchmark thread.
struct Pending {
    remaining: AtomicUsize,
    failed: AtomicBool,
    waiter: Thread,
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("store/group-commit");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    let m = message(1024);
    for in_flight in [1usize, 100, 1000] {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let (durable, _) = StoreHandle::open(dir.path()).expect("open the store");
        let queue = durable.new_queue_id();
        let mut seq = 0u64;
        let pending = Arc::new(Pending {
            remaining: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            waiter: std::thread::current(),
        });
        group.throughput(Throughput::Elements(in_flight as u64));
        group.bench_function(BenchmarkId::new("1KB-persistent", format!("{in_flight}-in-flight")), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    pending.remaining.store(in_flight, Ordering::Release);
                    for _ in 0..in_flight {
                        let record = messages::encode(&m);
                        let p = pending.clone();
                        let done = Box::new(move |result: Result<(), String>| {
                            if result.is_err() {
                                p.failed.store(true, Ordering::Release);
                            }
                            if p.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                                p.waiter.unpark();
                            }
                        });
                        durable.writer.submit(Op::Put { queue, seq, record, body: None, done: Some(done) });
                        seq += 1;
                    }
                    while pending.remaining.load(Ordering::Acquire) != 0 {
                        std::thread::park();
                    }
                }
                let elapsed = start.elapsed();
                assert!(!pending.failed.load(Ordering::Acquire), "a store write failed");
                // Acked, as it were: keep the data directory small (not timed).
                durable.writer.submit(Op::DeleteQueue { queue });
                durable.writer.flush();
                elapsed
            })
        });
        // The writer thread stops and RocksDB closes before the directory is removed.
        drop(durable);
        drop(dir);
    }
    group.finish();
}

criterion_group!(benches, record, group_commit);
criterion_main!(benches);
