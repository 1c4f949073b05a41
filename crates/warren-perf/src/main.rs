//! The `warren-perf` command: the same load generator as `warren perf`, without building the
//! broker (and RocksDB) to get it.

use std::process::ExitCode;

use clap::Parser;

use warren_perf::PerfArgs;

#[derive(Parser)]
#[command(
    name = "warren-perf",
    version,
    about = "Load generator: publish and consume against a broker (Warren or RabbitMQ) and report \
             throughput, latency and the broker's CPU and memory"
)]
struct Cli {
    #[command(flatten)]
    perf: PerfArgs,
}

fn main() -> ExitCode {
    warren_perf::run(Cli::parse().perf)
}
