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
mod measure;
mod procfs;
mod producer;
mod rate;
pub mod report;
mod setup;
pub mod stats;

use std::process::ExitCode;

pub use args::PerfArgs;
use args::{AmqpUri, Limits, Topology};
use client::Conn;
use measure::measure;
use procfs::Pid;
use report::Report;
use setup::{cleanup, declare, ADMIN_CHANNEL};

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
    if let Err(e) = declare(&mut admin, &topology, args.durable(), args.keep_queues).await {
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
