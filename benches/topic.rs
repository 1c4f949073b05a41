//! Topic exchange routing: matching a routing key against 1,000 and 10,000 wildcard bindings,
//! and the cost of adding and removing a binding.
//!
//! Two levels are measured. `TopicTrie<u32>` is the bare trie (`broker::exchange::topic`), its
//! values counted and nothing else. `route` is what a publish does: `VHost::route` on a topic
//! exchange whose bindings lead to distinct queues (read lock, trie walk, destinations deduped,
//! the `Vec<Arc<Queue>>` the channel then publishes to).
//!
//! The binding set (see `patterns`) mixes the shapes RabbitMQ users bind with: 40 % PerfTest-style
//! `perf.<i>.*` / `perf.<i>.#` (one per binding, as in scenario S8), `stock.<sym>.*`,
//! `stock.*.<exchange>` (the same pattern bound by many queues), `logs.<app>.<level>`,
//! `logs.<app>.#`, `logs.*.error`, `a.b<j>.*`, and suffix patterns `#.x<j>` and `#.audit.#`
//! under the root `#`, which every routing key has to walk. Routing keys come in four classes
//! (256 keys each, cycled so lookups do not hit one warm path only):
//!
//! - `none`: `orders.eu<k>.created`, matches nothing;
//! - `one`: `perf.<i>.x`, matches exactly one binding (S8);
//! - `many`: `stock.s<j>.<exchange>`, matches `stock.*.<exchange>` of every queue bound to it and
//!   `stock.s<j>.*` (about n / 40 + n / 1000 bindings);
//! - `deep`: seven words ending in `.audit.x<j>`, which the root `#` retries at every suffix.
//!
//! The average number of matches per key of each class, and of heap allocations per lookup, is
//! printed (stderr) before the runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::time::Duration;

use warren::broker::exchange::topic::TopicTrie;
use warren::broker::exchange::{Binding, Destination, Exchange, ExchangeKind};
use warren::broker::message::Message;
use warren::broker::queue::Queue;
use warren::broker::VHost;
use warren::protocol::{FieldTable, ShortStr};

/// The system allocator, counting allocations while `COUNTING` is set (only around the
/// lookups whose allocations are reported, not while criterion measures).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Heap allocations (and reallocations) `f` makes, on average over `runs` calls.
fn allocations(runs: usize, mut f: impl FnMut(usize)) -> f64 {
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for i in 0..runs {
        f(i);
    }
    COUNTING.store(false, Ordering::Relaxed);
    ALLOCATIONS.load(Ordering::Relaxed) as f64 / runs as f64
}

const SIZES: [usize; 2] = [1_000, 10_000];
const EXCHANGES: [&str; 4] = ["nyse", "nasdaq", "lse", "tse"];
const LEVELS: [&str; 3] = ["info", "warn", "error"];
const KEYS_PER_CLASS: usize = 256;

/// The binding key of binding `i` of a set of `n`; deterministic.
fn pattern(i: usize) -> String {
    let g = i / 10;
    match i % 10 {
        0..=3 if i.is_multiple_of(2) => format!("perf.{i}.*"),
        0..=3 => format!("perf.{i}.#"),
        4 => format!("stock.s{}.*", g % 100),
        5 => format!("stock.*.{}", EXCHANGES[g % 4]),
        6 => format!("logs.a{}.{}", g % 200, LEVELS[g % 3]),
        7 if g.is_multiple_of(5) => "logs.*.error".to_string(),
        7 => format!("logs.a{}.#", g % 200),
        8 => format!("a.b{}.*", g % 500),
        _ if g.is_multiple_of(20) => "#.audit.#".to_string(),
        _ => format!("#.x{}", g % 100),
    }
}

fn patterns(n: usize) -> Vec<String> {
    (0..n).map(pattern).collect()
}

/// Routing keys of one class for a binding set of `n`.
fn keys(class: &str, n: usize) -> Vec<Vec<u8>> {
    (0..KEYS_PER_CLASS)
        .map(|k| {
            match class {
                "none" => format!("orders.eu{k}.created"),
                "one" => {
                    // A bound `perf.<i>` id: i % 10 in 0..4, spread over the whole set.
                    let i = 10 * ((k * 37) % (n / 10)) + k % 4;
                    format!("perf.{i}.x")
                }
                "many" => format!("stock.s{}.{}", k % 100, EXCHANGES[k % 4]),
                "deep" => format!("eu.west.svc{k}.v2.audit.x{}.x{}", k % 7, k % 100),
                _ => unreachable!(),
            }
            .into_bytes()
        })
        .collect()
}

const CLASSES: [&str; 4] = ["none", "one", "many", "deep"];

fn trie(n: usize) -> TopicTrie<u32> {
    let mut t = TopicTrie::default();
    for (i, p) in patterns(n).iter().enumerate() {
        t.insert(p.as_bytes(), i as u32);
    }
    t
}

fn name(s: String) -> ShortStr {
    ShortStr::try_from(s).expect("short string")
}

fn queue(i: usize) -> Arc<Queue> {
    Arc::new(Queue::new(name(format!("q{i}")), ShortStr::from_static("/"), false, None, false, FieldTable::new()))
}

fn binding(i: usize, pattern: &str) -> Binding {
    Binding {
        destination: Destination::Queue(queue(i)),
        routing_key: name(pattern.to_string()),
        arguments: FieldTable::new(),
    }
}

/// A vhost whose `amq.topic` has `n` bindings, binding `i` to its own queue `q<i>`.
fn vhost(n: usize) -> (Arc<VHost>, Arc<Exchange>) {
    let v = VHost::standalone(ShortStr::from_static("/"));
    let x = v.exchange(&ShortStr::from_static("amq.topic")).expect("amq.topic");
    for (i, p) in patterns(n).iter().enumerate() {
        x.bind(binding(i, p));
    }
    (v, x)
}

fn message(key: &[u8]) -> Message {
    Message {
        exchange: ShortStr::from_static("amq.topic"),
        routing_key: ShortStr::try_from(std::str::from_utf8(key).unwrap()).unwrap(),
        properties: Default::default(),
        body: bytes::Bytes::from_static(b"x"),
        timestamp_ms: 0,
    }
}

fn matching(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic/match");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        let t = trie(n);
        let (v, x) = vhost(n);
        for class in CLASSES {
            let keys = keys(class, n);
            let total: usize = keys
                .iter()
                .map(|k| {
                    let mut count = 0;
                    t.matches(k, &mut |_| count += 1);
                    count
                })
                .sum();
            let queues: usize = keys.iter().map(|k| v.route(&x, &message(k), &[]).queues.len()).sum();
            let messages: Vec<Message> = keys.iter().map(|k| message(k)).collect();
            let trie_allocs = allocations(keys.len(), |i| {
                t.matches(&keys[i], &mut |v| {
                    black_box(v);
                })
            });
            let route_allocs = allocations(keys.len(), |i| drop(black_box(v.route(&x, &messages[i], &[]))));
            eprintln!(
                "{n} bindings, keys '{class}': {:.1} trie matches, {:.1} queues per key; \
                 allocations per lookup: trie {trie_allocs:.1}, route {route_allocs:.1}",
                total as f64 / keys.len() as f64,
                queues as f64 / keys.len() as f64
            );

            group.bench_function(BenchmarkId::new(format!("trie/{n}"), class), |b| {
                let mut at = 0;
                b.iter(|| {
                    let key = &keys[at % KEYS_PER_CLASS];
                    at += 1;
                    let mut count = 0u32;
                    t.matches(black_box(key), &mut |v| count = count.wrapping_add(*v));
                    black_box(count)
                })
            });

            group.bench_function(BenchmarkId::new(format!("route/{n}"), class), |b| {
                let mut at = 0;
                b.iter(|| {
                    let m = &messages[at % KEYS_PER_CLASS];
                    at += 1;
                    black_box(v.route(&x, black_box(m), &[]))
                })
            });
        }
    }
    group.finish();
}

fn binding_changes(c: &mut Criterion) {
    let mut group = c.benchmark_group("topic/bind");
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(1));
    for n in SIZES {
        // Trie: a pattern on a new branch (nodes allocated, then pruned) and a new value on a
        // pattern that many values share already (`stock.*.nyse`: the values list is scanned).
        let mut t = trie(n);
        let fresh: Vec<String> = (0..1024).map(|k| format!("new.k{k}.*")).collect();
        group.bench_function(BenchmarkId::new(format!("trie-insert-remove/{n}"), "new-branch"), |b| {
            let mut at = 0;
            b.iter(|| {
                let p = fresh[at % fresh.len()].as_bytes();
                at += 1;
                assert!(t.insert(black_box(p), u32::MAX));
                assert!(t.remove(black_box(p), &u32::MAX));
            })
        });
        group.bench_function(BenchmarkId::new(format!("trie-insert-remove/{n}"), "shared-pattern"), |b| {
            b.iter(|| {
                assert!(t.insert(b"stock.*.nyse", u32::MAX));
                assert!(t.remove(b"stock.*.nyse", &u32::MAX));
            })
        });

        // Exchange: queue.bind then queue.unbind of one more queue (in memory, no store).
        let (_v, x) = vhost(n);
        let extra = binding(n, "new.k.*");
        group.bench_function(BenchmarkId::new(format!("exchange-bind-unbind/{n}"), "new-queue"), |b| {
            b.iter(|| {
                assert!(x.bind(extra.clone()));
                assert!(x.unbind(&extra));
            })
        });
    }
    group.finish();

    // Every binding of a set added to an empty exchange, as on start-up or recovery.
    let mut group = c.benchmark_group("topic/bind-all");
    // Flat sampling: at 10,000 bindings one iteration takes a tenth of a second.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for n in SIZES {
        let bindings: Vec<Binding> = patterns(n).iter().enumerate().map(|(i, p)| binding(i, p)).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("exchange", n), |b| {
            b.iter_batched(
                || {
                    let x = Exchange::new(
                        ShortStr::from_static("t"),
                        ExchangeKind::Topic,
                        false,
                        false,
                        false,
                        FieldTable::new(),
                    );
                    (x, bindings.clone())
                },
                |(x, bindings)| {
                    for b in bindings {
                        x.bind(b);
                    }
                    x
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, matching, binding_changes);
criterion_main!(benches);
