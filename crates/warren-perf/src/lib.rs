//! `warren perf`: the load generator, in the spirit of RabbitMQ's PerfTest, for measuring Warren
//! against RabbitMQ with the same client.
//!
//! A run: declare the topology on an admin connection (exchange, queues purged, bindings), open
//! idle connections if asked, start the consumers, then the producers, and measure for the
//! duration (or until the counted messages arrived). Every second a progress line goes to
//! stderr; at the end a report (and with `--json` one JSON line on stdout). The run deletes what
//! it declared and closes its connections before returning.
//!
//! The client (`client.rs`, `producer.rs`, `consumer.rs`) is written on Warren's own codec and
//! for speed: one task per connection driving a non-blocking socket, one write per batch of
//! frames, no allocation per message. Its own CPU time per message is part of the report, since
//! on a small machine load generator and broker share the CPUs.
//!
//! A crate of its own, on `warren-protocol` only: it builds in seconds, without RocksDB, and a
//! reader of the broker's `src/` does not wade through it. It ships the `warren-perf` binary;
//! the broker's `warren perf` calls [`run`] with the same flags, so scripts and docs that use
//! `warren perf` keep working. `client`, `report` and [`run_async`] are public for the broker's
//! `tests/perf_smoke.rs`, which runs whole loads against an in-process Warren.

pub mod args;
pub mod client;
mod consumer;
mod procfs;
mod producer;
mod rate;
pub mod report;
pub mod stats;

use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

pub use args::PerfArgs;
use args::{AmqpUri, Limits, Topology, WaitQueue};
use client::{short, ClientError, Conn};
use consumer::ConsumerPlan;
use procfs::Pid;
use producer::{Delays, ProducerPlan};
use report::{Latency, Report};
use stats::{collect_latencies, format_ns, ConnStats, Counts, Histogram, Latencies};

use warren_protocol::methods::*;
use warren_protocol::{FieldTable, FieldValue, Method};

/// How long a counted run waits for the last messages once nothing arrives any more.
const DRAIN_IDLE: Duration = Duration::from_secs(5);
/// How long connections get to stop and close after the run.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections opened at once.
const IDLE_OPEN_PARALLEL: usize = 50;
const ADMIN_CHANNEL: u16 = 1;

/// Runs `warren perf` to the end; the exit code is non-zero on errors or missing messages.
pub fn run(args: PerfArgs) -> ExitCode {
    let limits = match args.validate() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warren perf: {e}");
            return ExitCode::from(2);
        }
    };
    let mut builder = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        if args.threads > 1 {
            b.worker_threads(args.threads);
        }
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren perf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_async(&args, limits)) {
        Ok(report) => {
            if args.json {
                eprint!("{}", report.human());
                println!("{}", report.json());
            } else {
                print!("{}", report.human());
            }
            if report.errors > 0 || report.missing.is_some_and(|m| m > 0) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("warren perf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One run inside a runtime the caller provides, returning the report instead of printing it.
pub async fn run_async(args: &PerfArgs, limits: Limits) -> Result<Report, String> {
    let uri = AmqpUri::parse(&args.uri)?;
    let topology = Topology::plan(args);
    let broker = args.broker_pid.map(Pid::Other);
    if let Some(pid) = broker {
        if procfs::cpu_time(pid).is_none() {
            eprintln!("warren perf: warning: cannot read /proc for --broker-pid {pid:?}; no broker figures");
        }
    }
    let mut admin = Conn::open(&uri, "warren perf admin").await.map_err(|e| format!("cannot connect to {uri}: {e}"))?;
    let broker_name = format!("{} {}", admin.server.product, admin.server.version).trim().to_string();
    admin.open_channel(ADMIN_CHANNEL).await.map_err(|e| format!("admin channel: {e}"))?;
    if let Err(e) = declare(&mut admin, &topology, args.persistent, args.keep_queues).await {
        cleanup(admin, &topology, args.keep_queues).await;
        return Err(format!("declaring the topology: {e}"));
    }
    let result = measure(args, limits, &uri, &topology, broker).await;
    cleanup(admin, &topology, args.keep_queues).await;
    result.map(|mut r| {
        r.broker = broker_name;
        r
    })
}

fn exchange_declare(topology: &Topology, durable: bool) -> Result<Method, ClientError> {
    let (kind, arguments) = if topology.delayed {
        let mut args = FieldTable::new();
        args.insert(short("x-delayed-type")?, topology.exchange_type.as_str().into());
        ("x-delayed-message", args)
    } else {
        (topology.exchange_type.as_str(), FieldTable::new())
    };
    Ok(Method::ExchangeDeclare(ExchangeDeclare {
        exchange: short(&topology.exchange)?,
        kind: short(kind)?,
        passive: false,
        durable,
        auto_delete: false,
        internal: false,
        no_wait: false,
        arguments,
    }))
}

/// The arguments of a wait queue: its TTL, and dead letters to `target` by the default exchange.
fn wait_queue_arguments(wait: &WaitQueue, target: &str) -> Result<FieldTable, ClientError> {
    let mut arguments = FieldTable::new();
    // The range was checked to fit a signed 32-bit integer ('I', which RabbitMQ takes).
    let ttl = i32::try_from(wait.ttl_ms).unwrap_or(i32::MAX);
    arguments.insert(short("x-message-ttl")?, FieldValue::I32(ttl));
    arguments.insert(short("x-dead-letter-exchange")?, "".into());
    arguments.insert(short("x-dead-letter-routing-key")?, target.into());
    Ok(arguments)
}

async fn declare(admin: &mut Conn, topology: &Topology, durable: bool, keep: bool) -> Result<(), ClientError> {
    if topology.declare_exchange {
        let declare = exchange_declare(topology, durable)?;
        admin.call_expect(ADMIN_CHANNEL, declare, |m| matches!(m, Method::ExchangeDeclareOk(_))).await?;
    }
    // The consumers' queues first, then the wait queues that dead-letter into them.
    let plain = topology.queues.iter().map(|q| (q, FieldTable::new()));
    let target = topology.queues.first().map(String::as_str).unwrap_or_default();
    let mut waits = Vec::with_capacity(topology.wait_queues.len());
    for w in &topology.wait_queues {
        waits.push((&w.name, wait_queue_arguments(w, target)?));
    }
    for (queue, arguments) in plain.chain(waits) {
        let declare = Method::QueueDeclare(QueueDeclare {
            queue: short(queue)?,
            passive: false,
            durable,
            exclusive: false,
            auto_delete: false,
            no_wait: false,
            arguments,
        });
        admin.call_expect(ADMIN_CHANNEL, declare, |m| matches!(m, Method::QueueDeclareOk(_))).await?;
        if keep {
            continue;
        }
        let purge = Method::QueuePurge(QueuePurge { queue: short(queue)?, no_wait: false });
        admin.call_expect(ADMIN_CHANNEL, purge, |m| matches!(m, Method::QueuePurgeOk(_))).await?;
    }
    // Bindings are pipelined: S8 declares a thousand.
    for chunk in topology.bindings.chunks(500) {
        for (q, key) in chunk {
            let bind = QueueBind {
                queue: short(&topology.queues[*q])?,
                exchange: short(&topology.exchange)?,
                routing_key: short(key)?,
                no_wait: false,
                arguments: FieldTable::new(),
            };
            admin.send(ADMIN_CHANNEL, &Method::QueueBind(bind));
        }
        admin.flush().await?;
        for _ in chunk {
            match tokio::time::timeout(client::SETUP_TIMEOUT, admin.next_method(ADMIN_CHANNEL)).await {
                Ok(Ok(Method::QueueBindOk(_))) => {}
                Ok(Ok(other)) => {
                    return Err(ClientError::Unexpected(format!("{} in reply to queue.bind", other.name())))
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ClientError::Timeout("queue.bind")),
            }
        }
    }
    Ok(())
}

/// Deletes the queues and the exchange of the run (unless `keep`) and closes the admin
/// connection; problems are reported, not fatal.
async fn cleanup(mut admin: Conn, topology: &Topology, keep: bool) {
    if keep {
        if let Err(e) = admin.close().await {
            eprintln!("warren perf: warning: closing the admin connection: {e}");
        }
        return;
    }
    // The wait queues first, so that nothing is dead-lettered into a queue already deleted.
    let waits = topology.wait_queues.iter().map(|w| &w.name);
    for queue in waits.chain(&topology.queues) {
        let Ok(name) = short(queue) else { continue };
        let delete =
            Method::QueueDelete(QueueDelete { queue: name, if_unused: false, if_empty: false, no_wait: false });
        if let Err(e) = admin.call_expect(ADMIN_CHANNEL, delete, |m| matches!(m, Method::QueueDeleteOk(_))).await {
            eprintln!("warren perf: warning: deleting queue {queue}: {e}");
            return;
        }
    }
    if topology.declare_exchange {
        if let Ok(name) = short(&topology.exchange) {
            let delete = Method::ExchangeDelete(ExchangeDelete { exchange: name, if_unused: false, no_wait: false });
            if let Err(e) = admin.call_expect(ADMIN_CHANNEL, delete, |m| matches!(m, Method::ExchangeDeleteOk(_))).await
            {
                eprintln!("warren perf: warning: deleting exchange {}: {e}", topology.exchange);
                return;
            }
        }
    }
    if let Err(e) = admin.close().await {
        eprintln!("warren perf: warning: closing the admin connection: {e}");
    }
}

/// Opens `n` connections (with one channel each) that do nothing until the end.
async fn open_idle(uri: &AmqpUri, n: u32) -> Result<Vec<Conn>, String> {
    let mut conns = Vec::with_capacity(n as usize);
    let mut next = 0;
    while next < n {
        let batch: Vec<JoinHandle<Result<Conn, ClientError>>> = (next..n.min(next + IDLE_OPEN_PARALLEL as u32))
            .map(|i| {
                let uri = uri.clone();
                tokio::spawn(async move {
                    let mut conn = Conn::open(&uri, &format!("warren perf idle {i}")).await?;
                    conn.open_channel(producer::CHANNEL).await?;
                    conn.shrink_buffers();
                    Ok(conn)
                })
            })
            .collect();
        for (k, handle) in batch.into_iter().enumerate() {
            let i = next as usize + k;
            match handle.await {
                Ok(Ok(conn)) => conns.push(conn),
                Ok(Err(e)) => return Err(format!("idle connection {i} of {n}: {e}")),
                Err(e) => return Err(format!("idle connection {i} of {n}: {e}")),
            }
        }
        next = n.min(next + IDLE_OPEN_PARALLEL as u32);
    }
    Ok(conns)
}

async fn close_all(conns: Vec<Conn>) {
    let handles: Vec<_> = conns.into_iter().map(|c| tokio::spawn(c.close())).collect();
    for h in handles {
        let _ = h.await;
    }
}

fn describe(args: &PerfArgs, topology: &Topology) -> String {
    let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut s = if let (Some(first), Some(last)) = (topology.wait_queues.first(), topology.wait_queues.last()) {
        format!(
            "{} → default exchange → {} (x-message-ttl {}..{} ms) → dead-lettered → 1 queue → {}",
            plural(u64::from(args.producers), "producer"),
            plural(topology.wait_queues.len() as u64, "wait queue"),
            first.ttl_ms,
            last.ttl_ms,
            plural(u64::from(args.consumers), "consumer"),
        )
    } else {
        format!(
            "{} → {}{} exchange → {} → {}",
            plural(u64::from(args.producers), "producer"),
            if topology.delayed { "delayed " } else { "" },
            topology.exchange_type.as_str(),
            plural(topology.queues.len() as u64, "queue"),
            plural(u64::from(args.consumers), "consumer"),
        )
    };
    s += &format!(", {} B {}", args.size, if args.persistent { "persistent" } else { "transient" });
    if args.topic_bindings > 0 {
        s += &format!(", {} topic bindings", args.topic_bindings);
    }
    if let Some((lo, hi)) = args.delay_ms {
        s += &format!(", x-delay {lo}..{hi} ms");
    }
    s += &match args.rate {
        0 => ", unlimited rate".to_string(),
        r => format!(", {r} msg/s per producer"),
    };
    if args.confirm > 0 {
        s += &format!(", confirms (window {})", args.confirm);
    }
    if args.consumers > 0 {
        s += &if args.auto_ack {
            ", auto-ack".to_string()
        } else if args.multi_ack_every > 1 {
            format!(", ack every {}", args.multi_ack_every)
        } else {
            ", ack each".to_string()
        };
        if args.prefetch > 0 {
            s += &format!(", prefetch {}", args.prefetch);
        }
    }
    if args.idle_connections > 0 {
        s += &format!(", {} idle connections", args.idle_connections);
    }
    s
}

struct Task {
    role: String,
    handle: JoinHandle<Result<(), ClientError>>,
}

/// What a load connection does between the handshake and the start of the run.
trait Prepare: Clone + Send + Sync + 'static {
    fn prepare<'a>(&'a self, conn: &'a mut Conn) -> impl Future<Output = Result<(), ClientError>> + Send + 'a;
}

impl Prepare for ProducerPlan {
    fn prepare<'a>(&'a self, conn: &'a mut Conn) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        producer::prepare(conn, self)
    }
}

impl Prepare for ConsumerPlan {
    fn prepare<'a>(&'a self, conn: &'a mut Conn) -> impl Future<Output = Result<(), ClientError>> + Send + 'a {
        consumer::prepare(conn, self)
    }
}

/// Opens the load connections concurrently and prepares them (channel, consume, confirm mode).
async fn open_load_connections<P: Prepare>(uri: &AmqpUri, role: &str, plans: &[P]) -> Result<Vec<Conn>, String> {
    let handles: Vec<_> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let (uri, plan, name) = (uri.clone(), plan.clone(), format!("warren perf {role} {}", i + 1));
            tokio::spawn(async move {
                let mut conn = Conn::open(&uri, &name).await?;
                plan.prepare(&mut conn).await?;
                Ok::<_, ClientError>(conn)
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(handles.len());
    let mut failure = None;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(Ok(conn)) => conns.push(conn),
            Ok(Err(e)) => failure = failure.or(Some(format!("{role} {}: {e}", i + 1))),
            Err(e) => failure = failure.or(Some(format!("{role} {}: {e}", i + 1))),
        }
    }
    match failure {
        None => Ok(conns),
        Some(e) => {
            close_all(conns).await;
            Err(e)
        }
    }
}

/// Broker, own and machine CPU time at one instant.
struct Sample {
    at: Instant,
    broker_cpu: Option<Duration>,
    own_cpu: Option<Duration>,
    machine_cpu: Option<Duration>,
    /// Time in idle states summed over CPUs, and the number of CPUs (see [`procfs::cpuidle_time`]).
    cpuidle: Option<(Duration, u32)>,
}

impl Sample {
    fn take(broker: Option<Pid>) -> Sample {
        Sample {
            at: Instant::now(),
            broker_cpu: broker.and_then(procfs::cpu_time),
            own_cpu: procfs::cpu_time(Pid::Own),
            machine_cpu: procfs::machine_busy(),
            cpuidle: procfs::cpuidle_time(),
        }
    }
}

/// CPU time the whole machine used between two samples, and whether it comes from the idle
/// states' clocks (else from `/proc/stat`).
fn machine_cpu(start: &Sample, end: &Sample) -> (Option<f64>, bool) {
    match (start.cpuidle, end.cpuidle) {
        (Some((idle0, n0)), Some((idle1, n1))) if n0 == n1 => {
            let busy = procfs::busy_from_idle(end.at.duration_since(start.at), n0, idle1.saturating_sub(idle0));
            (Some(busy.as_secs_f64()), true)
        }
        _ => (cpu_delta(start.machine_cpu, end.machine_cpu), false),
    }
}

fn cpu_delta(start: Option<Duration>, end: Option<Duration>) -> Option<f64> {
    Some(end?.saturating_sub(start?).as_secs_f64())
}

async fn measure(
    args: &PerfArgs,
    limits: Limits,
    uri: &AmqpUri,
    topology: &Topology,
    broker: Option<Pid>,
) -> Result<Report, String> {
    let mut report = Report {
        label: args.label.clone(),
        scenario: describe(args, topology),
        producers: args.producers,
        consumers: args.consumers,
        queues: topology.queues.len(),
        size: args.size,
        broker_pid: args.broker_pid,
        broker_process: broker.and_then(procfs::command_name),
        idle_connections: args.idle_connections,
        ..Default::default()
    };
    let say = |msg: String| {
        if !args.quiet {
            eprintln!("warren perf: {msg}");
        }
    };

    let mut idle = Vec::new();
    if args.idle_connections > 0 {
        let before = broker.and_then(|p| procfs::status_kib(p, "VmRSS"));
        say(format!("opening {} idle connections", args.idle_connections));
        idle = open_idle(uri, args.idle_connections).await?;
        // Give the broker a moment to finish setting them up before measuring its memory.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = broker.and_then(|p| procfs::status_kib(p, "VmRSS"));
        if let (Some(b), Some(a)) = (before, after) {
            report.idle_rss_per_connection_kib = Some((a as f64 - b as f64) / f64::from(args.idle_connections));
        }
    }

    let consumer_plans: Vec<ConsumerPlan> = topology
        .consumer_queues
        .iter()
        .map(|&q| ConsumerPlan {
            queue: topology.queues[q].clone(),
            auto_ack: args.auto_ack,
            multi_ack_every: args.multi_ack_every,
            prefetch: args.prefetch,
            delayed: args.measures_lateness(),
        })
        .collect();
    let delays = match (args.delay_ms, topology.wait_queues.is_empty()) {
        (Some((lo, hi)), _) => Delays::Header { lo, hi },
        (None, false) => Delays::PerKey { ttl_ms: topology.wait_queues.iter().map(|w| w.ttl_ms).collect() },
        (None, true) => Delays::None,
    };
    let producer_plans: Vec<ProducerPlan> = topology
        .producer_keys
        .iter()
        .map(|keys| ProducerPlan {
            exchange: topology.exchange.clone(),
            keys: keys.clone(),
            size: args.size,
            persistent: args.persistent,
            rate: args.rate,
            confirm_window: args.confirm,
            max_messages: limits.pmessages,
            delays: delays.clone(),
        })
        .collect();
    let consumers = match open_load_connections(uri, "consumer", &consumer_plans).await {
        Ok(c) => c,
        Err(e) => {
            close_all(idle).await;
            return Err(e);
        }
    };
    let producers = match open_load_connections(uri, "producer", &producer_plans).await {
        Ok(p) => p,
        Err(e) => {
            close_all(consumers).await;
            close_all(idle).await;
            return Err(e);
        }
    };

    // The measured window starts here.
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    if let Some(pid) = broker {
        report.broker_peak_from_hwm = procfs::reset_peak_rss(pid);
    }
    let start = Sample::take(broker);
    let t0 = Instant::now();
    let mut producer_stats = Vec::new();
    let mut consumer_stats = Vec::new();
    let mut tasks = Vec::new();
    for (i, (conn, plan)) in consumers.into_iter().zip(consumer_plans).enumerate() {
        let stats = Arc::new(ConnStats::default());
        consumer_stats.push(stats.clone());
        let handle = tokio::spawn(consumer::run(conn, plan, stats, epoch, stop.clone()));
        tasks.push(Task { role: format!("consumer {}", i + 1), handle });
    }
    for (i, (conn, plan)) in producers.into_iter().zip(producer_plans).enumerate() {
        let stats = Arc::new(ConnStats::default());
        producer_stats.push(stats.clone());
        let handle = tokio::spawn(producer::run(conn, plan, stats, epoch, stop.clone()));
        tasks.push(Task { role: format!("producer {}", i + 1), handle });
    }
    let all_stats = || producer_stats.iter().chain(consumer_stats.iter()).map(|s| &**s);

    let deadline = limits.duration.map(|d| t0 + Duration::from_secs_f64(d));
    let expected = args.cmessages.or_else(|| limits.pmessages.map(|n| n * u64::from(args.producers) * topology.copies));
    // Held messages arrive up to the longest delay after the last one was sent.
    let drain_idle = DRAIN_IDLE + Duration::from_millis(args.longest_delay_ms());
    let (mut total, mut tick) = (Latencies::default(), Latencies::default());
    let mut last = Counts::default();
    let mut last_print = t0;
    let mut last_progress = (t0, 0u64);
    let mut peak_rss_sampled = 0u64;
    loop {
        let mut wake = Instant::now() + Duration::from_millis(100);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        tokio::time::sleep_until(wake.into()).await;
        let now = Instant::now();
        let counts = Counts::read(all_stats());
        if now.duration_since(last_print) >= Duration::from_secs(1) {
            collect_latencies(all_stats(), &mut tick);
            if !args.quiet {
                let secs = now.duration_since(last_print).as_secs_f64();
                let d = counts.minus(last);
                let mut line = format!(
                    "[{:>4.0}s] sent {:>9.0} msg/s  received {:>9.0} msg/s",
                    now.duration_since(t0).as_secs_f64(),
                    d.published as f64 / secs,
                    d.received as f64 / secs,
                );
                if args.confirm > 0 {
                    line += &format!("  confirm {}", short_latency(&tick.confirm));
                }
                if args.consumers > 0 && args.measures_lateness() {
                    line += &format!("  late {}", short_latency(&tick.lateness));
                } else if args.consumers > 0 {
                    line += &format!("  e2e {}", short_latency(&tick.e2e));
                }
                eprintln!("{line}");
            }
            total.merge(&tick);
            tick.clear();
            if let Some(kib) = broker.and_then(|p| procfs::status_kib(p, "VmRSS")) {
                peak_rss_sampled = peak_rss_sampled.max(kib);
            }
            last = counts;
            last_print = now;
        }
        if counts.received > last_progress.1 {
            last_progress = (now, counts.received);
        }
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let producers_done = tasks.iter().filter(|t| t.role.starts_with("producer")).all(|t| t.handle.is_finished());
        // Every message sent (and confirmed, with confirms): before the producers have closed.
        let all_published = limits.pmessages.is_some_and(|n| {
            let settled = if args.confirm > 0 { counts.confirmed + counts.nacked } else { counts.published };
            settled >= n * u64::from(args.producers)
        });
        if (all_published || producers_done) && args.producers > 0 && report.publish_seconds.is_none() {
            // The end of the publishing phase (to within the 100 ms of this loop).
            report.publish_seconds = Some(now.duration_since(t0).as_secs_f64());
            report.broker_cpu_publish_s = cpu_delta(start.broker_cpu, broker.and_then(procfs::cpu_time));
        }
        if let Some(expected) = expected {
            if producers_done && (counts.received >= expected || args.consumers == 0) {
                break;
            }
            if producers_done && now.duration_since(last_progress.0) >= drain_idle {
                say(format!("no message for {drain_idle:?}; giving up on the rest"));
                break;
            }
        }
        if !tasks.is_empty() && tasks.iter().all(|t| t.handle.is_finished()) {
            say("every connection has ended".to_string());
            break;
        }
    }

    // The measured window ends here.
    let end = Sample::take(broker);
    let t_end = Instant::now();
    let counts = Counts::read(all_stats());
    collect_latencies(all_stats(), &mut total);
    report.seconds = t_end.duration_since(t0).as_secs_f64();
    report.sent = counts.published;
    report.received = counts.received;
    report.confirmed = counts.confirmed;
    report.nacked = counts.nacked;
    report.returned = counts.returned;
    // Without consumers (filling a queue for a later run) nothing is meant to arrive.
    report.missing = expected.filter(|_| args.consumers > 0).map(|e| e.saturating_sub(counts.received));
    report.confirm = Latency::of(&total.confirm);
    report.e2e = Latency::of(&total.e2e);
    if args.measures_lateness() {
        report.lateness = Some(Latency::of(&total.lateness));
        report.early = total.early;
        report.early_max_ns = total.early_max;
    }
    report.broker_cpu_s = cpu_delta(start.broker_cpu, end.broker_cpu);
    report.loadgen_cpu_s = cpu_delta(start.own_cpu, end.own_cpu);
    (report.machine_cpu_s, report.machine_cpu_from_cpuidle) = machine_cpu(&start, &end);
    if let Some(pid) = broker {
        report.broker_peak_rss_kib = if report.broker_peak_from_hwm {
            procfs::status_kib(pid, "VmHWM")
        } else {
            procfs::status_kib(pid, "VmRSS").map(|k| k.max(peak_rss_sampled))
        };
    }

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let outcome = match tokio::time::timeout(STOP_TIMEOUT, task.handle).await {
            Ok(Ok(Ok(()))) => continue,
            Ok(Ok(Err(e))) => e.to_string(),
            Ok(Err(e)) => format!("task failed: {e}"),
            Err(_) => "did not stop in time".to_string(),
        };
        report.errors += 1;
        if report.error_samples.len() < 5 {
            report.error_samples.push(format!("{}: {outcome}", task.role));
        }
    }
    report.errors += report.nacked;
    close_all(idle).await;
    Ok(report)
}

fn short_latency(h: &Histogram) -> String {
    match (h.quantile(0.5), h.quantile(0.99)) {
        (Some(p50), Some(p99)) => format!("p50 {} p99 {}", format_ns(p50), format_ns(p99)),
        _ => "-".to_string(),
    }
}
