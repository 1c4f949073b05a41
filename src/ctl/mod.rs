//! `warren ctl`: a command-line client of the management HTTP API, what `lavinmqctl` is to
//! LavinMQ, with rabbitmqctl's command names, column names, messages and exit codes.
//!
//! It speaks RabbitMQ's management API (paths and JSON fields), so it works the same against
//! Warren and against RabbitMQ; it is only an HTTP client and knows nothing of the broker's
//! insides. `client` does the HTTP (base URL, basic auth, percent-encoded path segments, error
//! answers), `columns` maps rabbitmqctl's column names to API fields, `format` prints rows as a
//! table, TSV or JSON, `commands`, `access` (users, vhosts, permissions, limits) and `status` hold
//! one function per command, and `error` the exit codes (rabbitmqctl's sysexits; documented there).

mod access;
#[cfg(test)]
mod access_tests;
mod client;
mod columns;
mod commands;
mod error;
mod format;
mod health;
mod limits;
mod status;
#[cfg(test)]
mod stub;
#[cfg(test)]
mod tests;

use std::io::{self, Read, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use error::{code, CtlError};
pub use format::Formatter;

/// `warren ctl [OPTIONS] <COMMAND>`; the options may also follow the command.
#[derive(Args, Debug, Clone)]
#[command(after_help = "Exit codes (as rabbitmqctl's): 0 ok, 64 usage, 65 data error (invalid input, HTTP 400, \
no such vhost), 66 input file unreadable, 67 no such user, 69 broker unreachable or object not found, 70 unexpected answer \
(HTTP 5xx), 73 output file unwritable, 75 timeout, 77 authentication or permission refused (HTTP 401/403).")]
pub struct CtlArgs {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalOpts {
    /// Virtual host of the command (sent as one URL path segment: `/` becomes %2F)
    #[arg(short = 'p', long, global = true, default_value = "/")]
    pub vhost: String,
    /// Base URL of the management API, e.g. http://user:pass@host:15672 (`/api` is appended
    /// unless the path ends with it); wins over --host and --port
    #[arg(long, global = true, env = "WARREN_MGMT_URL", value_name = "URL")]
    pub uri: Option<String>,
    /// Host of the management API
    #[arg(long, global = true, default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the management API
    #[arg(long, global = true, env = "WARREN_MGMT_PORT", default_value_t = 15672)]
    pub port: u16,
    /// User [default: the URL's user, else guest]
    #[arg(short = 'u', long, global = true, env = "WARREN_MGMT_USERNAME")]
    pub username: Option<String>,
    /// Password [default: the URL's password, else guest]
    #[arg(long, global = true, env = "WARREN_MGMT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Output format: table (boxed, as rabbitmqctl's pretty_table), json, or tsv (tab-separated, header first)
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub formatter: Formatter,
    /// Suppress informational messages ("Listing queues for vhost / ...")
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// Suppress informational messages and the table header row
    #[arg(short = 's', long, global = true)]
    pub silent: bool,
    /// Leave out the table header row
    #[arg(long, global = true)]
    pub no_table_headers: bool,
    /// Seconds to wait for each answer of the API, 0 for no limit; for await_startup, how long
    /// to keep trying [default: 60; await_startup: 300]
    #[arg(short = 't', long, global = true, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}

#[derive(Subcommand, Debug, Clone)]
#[command(rename_all = "snake_case")]
pub enum CtlCommand {
    /// Show the broker's version, node, alarms, memory, file descriptors, disk, totals and listeners
    Status,
    /// Check that the management API answers and the credentials are accepted
    Ping,
    /// Wait until the management API answers (for healthchecks and scripts); exits 75 if it
    /// does not within --timeout seconds (default 300)
    AwaitStartup,
    /// Check that the AMQP port accepts connections and the management API answers, without
    /// credentials (a 401 counts as an answer): the container image's HEALTHCHECK
    CheckPortConnectivity {
        /// AMQP port to connect to (on --host)
        #[arg(long = "amqp-port", env = "WARREN_PORT", default_value_t = 5672)]
        amqp_port: u16,
    },
    /// List queues and their properties
    #[command(after_help = columns::QUEUES.help())]
    ListQueues(ListArgs),
    /// List exchanges
    #[command(after_help = columns::EXCHANGES.help())]
    ListExchanges(ListArgs),
    /// List the bindings of a virtual host
    #[command(after_help = columns::BINDINGS.help())]
    ListBindings(ListArgs),
    /// List AMQP connections (all virtual hosts)
    #[command(after_help = columns::CONNECTIONS.help())]
    ListConnections(ListArgs),
    /// List channels (all virtual hosts)
    #[command(after_help = columns::CHANNELS.help())]
    ListChannels(ListArgs),
    /// List the consumers of a virtual host
    #[command(after_help = columns::CONSUMERS.help())]
    ListConsumers(ListArgs),
    /// List virtual hosts
    #[command(after_help = columns::VHOSTS.help())]
    ListVhosts(ListArgs),
    /// List users and their tags
    #[command(after_help = columns::USERS.help())]
    ListUsers(ListArgs),
    /// List the user permissions in a virtual host
    #[command(after_help = columns::PERMISSIONS.help())]
    ListPermissions(ListArgs),
    /// List the policies of a virtual host
    #[command(after_help = columns::POLICIES.help())]
    ListPolicies(ListArgs),
    /// List the operator policies of a virtual host
    #[command(after_help = columns::POLICIES.help())]
    ListOperatorPolicies(ListArgs),
    /// Remove every ready message from a queue
    PurgeQueue { name: String },
    /// Delete a queue
    DeleteQueue {
        name: String,
        /// Only if the queue has no messages
        #[arg(short = 'e', long = "if-empty")]
        if_empty: bool,
        /// Only if the queue has no consumers
        #[arg(long = "if-unused")]
        if_unused: bool,
    },
    /// Close a connection, giving the client REASON (names: `list_connections name`)
    CloseConnection { name: String, reason: String },
    /// Set a policy: queues or exchanges whose name matches PATTERN get DEFINITION (JSON)
    SetPolicy(PolicyArgs),
    /// Remove a policy
    ClearPolicy { name: String },
    /// Set an operator policy (overrides users' policies where stricter)
    SetOperatorPolicy(PolicyArgs),
    /// Remove an operator policy
    ClearOperatorPolicy { name: String },
    /// Write the broker's definitions (all virtual hosts) as JSON to FILE, or to stdout with -
    ExportDefinitions {
        #[arg(value_name = "FILE|-")]
        file: String,
    },
    /// Load definitions from a JSON file (as export_definitions writes), or from stdin with -
    ImportDefinitions {
        #[arg(value_name = "FILE|-")]
        file: String,
    },
    /// Users, virtual hosts, permissions and limits (rabbitmqctl's access control commands)
    #[command(flatten)]
    Access(access::AccessCommand),
    /// Vhost and user limits (rabbitmqctl's limit commands)
    #[command(flatten)]
    Limits(limits::LimitsCommand),
}

#[derive(Args, Debug, Clone)]
pub struct ListArgs {
    /// Columns to show, space- or comma-separated (rabbitmqctl's names)
    pub columns: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    pub name: String,
    /// Regular expression matched against queue or exchange names
    pub pattern: String,
    /// JSON object, e.g. '{"max-length":1000}'
    pub definition: String,
    /// Higher wins when several policies match
    #[arg(long, default_value_t = 0)]
    pub priority: i64,
    /// What the policy applies to: queues, exchanges, all (or classic_queues, quorum_queues, streams)
    #[arg(long, default_value = "all")]
    pub apply_to: String,
}

/// Runs one command: its output on stdout, `Error: ...` on stderr, rabbitmqctl's exit codes.
pub fn run(args: CtlArgs) -> ExitCode {
    let (stdout, stdin) = (io::stdout(), io::stdin());
    let result = execute(&args, &mut stdout.lock(), &mut stdin.lock());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `warren ctl list_queues | head` closes the pipe early; that is no failure.
            if e.code == code::IO_ERR && e.message == error::BROKEN_PIPE {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(io::stderr(), "Error: {e}");
            ExitCode::from(e.code)
        }
    }
}

/// `run` with the streams passed in (the tests' way in).
pub fn execute(args: &CtlArgs, out: &mut dyn Write, input: &mut dyn Read) -> Result<(), CtlError> {
    let mut ctx = commands::Ctx::new(&args.global, out)?;
    commands::dispatch(&mut ctx, &args.command, input)
}
