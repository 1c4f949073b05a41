//! The `warren` command: thin on purpose; everything lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use warren::config::{Config, Overrides};

#[derive(Parser)]
#[command(name = "warren", version, about = "An AMQP 0-9-1 message broker that RabbitMQ clients use unchanged")]
#[command(after_help = "Settings are layered: defaults < config file < WARREN_* environment variables < flags.\n\
Environment: WARREN_BIND, WARREN_PORT, WARREN_MGMT_BIND, WARREN_MGMT_PORT, WARREN_PROMETHEUS_BIND, WARREN_PROMETHEUS_PORT,
WARREN_DATA_DIR, WARREN_LOAD_DEFINITIONS, WARREN_LOG_LEVEL, WARREN_MAX_MESSAGE_SIZE,
WARREN_DEFAULT_USER, WARREN_DEFAULT_PASS, WARREN_DEFAULT_VHOST (or RabbitMQ's RABBITMQ_DEFAULT_*), WARREN_LOOPBACK_USERS,
WARREN_PLAIN_LISTENER, WARREN_TLS_PORT, WARREN_TLS_BIND, WARREN_TLS_CERT, WARREN_TLS_KEY, WARREN_TLS_CA,
WARREN_TLS_VERIFY_PEER, WARREN_TLS_FAIL_IF_NO_PEER_CERT, WARREN_TLS_CERT_LOGIN_FROM, WARREN_MGMT_TLS, WARREN_MGMT_TLS_PORT
(RUST_LOG overrides the log filter).\n\
With no subcommand, warren runs `serve`.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve(ServeArgs),
    /// Load generator: publish and consume against a broker (Warren or RabbitMQ) and report
    /// throughput, latency and the broker's CPU and memory.
    // The `warren-perf` crate's tool (also its own binary, built without RocksDB); kept here so
    // that `warren perf` in scripts (bench/compare.sh) and docs keeps working.
    Perf(warren_perf::PerfArgs),
    /// Manage a running broker through its management HTTP API (rabbitmqctl's commands:
    /// list_queues, purge_queue, set_policy, export_definitions, ...). Works against RabbitMQ too.
    Ctl(warren::ctl::CtlArgs),
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Config file [default: ./warren.toml if present]
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address for the AMQP listener [default: 0.0.0.0; env WARREN_BIND]
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// AMQP port, 0 for any free port [default: 5672; env WARREN_PORT]
    #[arg(short, long)]
    port: Option<u16>,
    /// Address for the management HTTP API [default: 0.0.0.0; env WARREN_MGMT_BIND]
    #[arg(long, value_name = "ADDR")]
    mgmt_bind: Option<String>,
    /// Management HTTP API port, 0 for any free port [default: 15672; env WARREN_MGMT_PORT]
    #[arg(long)]
    mgmt_port: Option<u16>,
    /// Address for the Prometheus metrics endpoint [default: 0.0.0.0; env WARREN_PROMETHEUS_BIND]
    #[arg(long, value_name = "ADDR")]
    prometheus_bind: Option<String>,
    /// Prometheus metrics port, 0 for any free port [default: 15692; env WARREN_PROMETHEUS_PORT]
    #[arg(long)]
    prometheus_port: Option<u16>,
    /// Data directory (RocksDB) [default: ./data; env WARREN_DATA_DIR]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Definitions file (RabbitMQ's JSON format) to import at start-up [env WARREN_LOAD_DEFINITIONS]
    #[arg(long, value_name = "FILE")]
    load_definitions: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or tracing directives [default: info; env WARREN_LOG_LEVEL]
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Largest message body accepted, in octets [default: 16777216; env WARREN_MAX_MESSAGE_SIZE]
    #[arg(long, value_name = "OCTETS")]
    max_message_size: Option<u64>,
    /// Resident memory above which publishers are blocked: a fraction of RAM (or the cgroup
    /// limit) or a size such as 512MiB [default: 0.6; env WARREN_MEMORY_HIGH_WATERMARK]
    #[arg(long, value_name = "FRACTION|SIZE")]
    memory_high_watermark: Option<String>,
    /// Do not run the plain AMQP listener (TLS only) [env WARREN_PLAIN_LISTENER=false]
    #[arg(long)]
    no_plain: bool,
    /// AMQPS port, 0 for any free port; the listener runs only with --tls-cert and --tls-key
    /// [default: 5671; env WARREN_TLS_PORT]
    #[arg(long)]
    tls_port: Option<u16>,
    /// Address for the AMQPS listener [default: as --bind; env WARREN_TLS_BIND]
    #[arg(long, value_name = "ADDR")]
    tls_bind: Option<String>,
    /// Server certificate chain, PEM [env WARREN_TLS_CERT]
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Server private key, PEM [env WARREN_TLS_KEY]
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates are verified against [env WARREN_TLS_CA]
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify it against --tls-ca (RabbitMQ's verify_peer)
    /// [env WARREN_TLS_VERIFY_PEER]
    #[arg(long)]
    tls_verify_peer: bool,
    /// With --tls-verify-peer, refuse clients without a certificate [env WARREN_TLS_FAIL_IF_NO_PEER_CERT]
    #[arg(long)]
    tls_fail_if_no_peer_cert: bool,
    /// SASL EXTERNAL's user name: the certificate subject (RFC 2253) or its CN
    /// [default: distinguished_name; env WARREN_TLS_CERT_LOGIN_FROM]
    #[arg(long, value_name = "SOURCE", value_parser = ["distinguished_name", "common_name"])]
    tls_cert_login_from: Option<String>,
    /// Also serve the management HTTP API over HTTPS, with --tls-cert and --tls-key
    /// [env WARREN_MGMT_TLS]
    #[arg(long)]
    mgmt_tls: bool,
    /// HTTPS management port, 0 for any free port [default: 15671; env WARREN_MGMT_TLS_PORT]
    #[arg(long)]
    mgmt_tls_port: Option<u16>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Perf(args)) => return warren_perf::run(args),
        Some(Command::Ctl(args)) => return warren::ctl::run(args),
        None => cli.serve,
    };
    let overrides = Overrides {
        bind: args.bind,
        port: args.port,
        mgmt_bind: args.mgmt_bind,
        mgmt_port: args.mgmt_port,
        prometheus_bind: args.prometheus_bind,
        prometheus_port: args.prometheus_port,
        data_dir: args.data_dir,
        load_definitions: args.load_definitions,
        log_level: args.log_level,
        max_message_size: args.max_message_size,
        memory_high_watermark: args.memory_high_watermark,
        plain_listener: args.no_plain.then_some(false),
        tls_port: args.tls_port,
        tls_bind: args.tls_bind,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        tls_ca: args.tls_ca,
        tls_verify_peer: args.tls_verify_peer.then_some(true),
        tls_fail_if_no_peer_cert: args.tls_fail_if_no_peer_cert.then_some(true),
        tls_cert_login_from: args.tls_cert_login_from,
        mgmt_tls: args.mgmt_tls.then_some(true),
        mgmt_tls_port: args.mgmt_tls_port,
    };
    let config = match Config::load(args.config.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(warren::node::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "warren stopped");
            ExitCode::FAILURE
        }
    }
}

/// clap's own exit (2 for a usage error, 0 for --help), except under `warren ctl`, whose usage
/// errors exit 64 as rabbitmqctl's do: scripts ported from rabbitmqctl test for that.
fn usage_error(e: clap::Error) -> ExitCode {
    let under_ctl = std::env::args().nth(1).as_deref() == Some("ctl");
    if !under_ctl || !e.use_stderr() {
        e.exit();
    }
    let _ = e.print();
    ExitCode::from(warren::ctl::code::USAGE)
}
