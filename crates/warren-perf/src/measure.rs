//! The measured part of a run: start the consumers, then the producers, sample CPU and memory
//! at the start and the end, print a progress line every second, stop on the duration or the
//! message count, and fill in the [`Report`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::args::{AmqpUri, Limits, PerfArgs, Topology};
use crate::client::ClientError;
use crate::consumer::{self, ConsumerPlan};
use crate::procfs::{self, Pid};
use crate::producer::{self, Delays, ProducerPlan};
use crate::report::{describe, Latency, Report};
use crate::setup::{close_all, open_idle, open_load_connections};
use crate::stats::{collect_latencies, format_ns, ConnStats, Counts, Histogram, Latencies};

/// How long a counted run waits for the last messages once nothing arrives any more.
const DRAIN_IDLE: Duration = Duration::from_secs(5);
/// How long connections get to stop and close after the run.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

struct Task {
    role: String,
    handle: JoinHandle<Result<(), ClientError>>,
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

pub(crate) async fn measure(
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
            stream_offset: args.stream_offset.clone(),
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
    let consumers = match open_load_connections(uri, "consumer", &consumer_plans, args.write_per).await {
        Ok(c) => c,
        Err(e) => {
            close_all(idle).await;
            return Err(e);
        }
    };
    let producers = match open_load_connections(uri, "producer", &producer_plans, args.write_per).await {
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
    let expected = args.cmessages.or_else(|| limits.pmessages.map(|n| n * topology.deliveries_per_round()));
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
