//! One function per command. Informational lines ("Listing queues for vhost / ...") are
//! rabbitmqctl's wording and go to stdout, as its do; `-q`/`-s` and the JSON formatter leave
//! them out so that the output can be parsed.

use std::fs;
use std::io::{self, Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::client::{api_path, ApiError, Client, ClientError, Endpoint};
use super::columns::{self, Column, Kind};
use super::error::{code, CtlError, BROKEN_PIPE};
use super::format::{render, Formatter};
use super::{access, health, status, CtlCommand, GlobalOpts, PolicyArgs};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const AWAIT_STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

/// What every command works with: the options, the API, and where output goes.
pub struct Ctx<'a> {
    pub opts: &'a GlobalOpts,
    pub client: Client,
    out: &'a mut dyn Write,
}

impl<'a> Ctx<'a> {
    pub fn new(opts: &'a GlobalOpts, out: &'a mut dyn Write) -> Result<Ctx<'a>, CtlError> {
        let endpoint = Endpoint::resolve(
            opts.uri.as_deref(),
            &opts.host,
            opts.port,
            opts.username.as_deref(),
            opts.password.as_deref(),
        )?;
        let timeout = match opts.timeout {
            // A zero limit would fail every request, so 0 means none.
            Some(0) => None,
            Some(s) => Some(Duration::from_secs(s)),
            None => Some(DEFAULT_TIMEOUT),
        };
        Ok(Ctx { opts, client: Client::new(endpoint, timeout), out })
    }

    pub(super) fn vhost(&self) -> &'a str {
        &self.opts.vhost
    }

    pub(super) fn json(&self) -> bool {
        self.opts.formatter == Formatter::Json
    }

    pub fn headers(&self) -> bool {
        !self.opts.silent && !self.opts.no_table_headers
    }

    /// An informational line, unless quiet or printing JSON.
    pub fn info(&mut self, line: &str) -> Result<(), CtlError> {
        if self.opts.quiet || self.opts.silent || self.json() {
            return Ok(());
        }
        self.print(&format!("{line}\n"))
    }

    pub fn print(&mut self, text: &str) -> Result<(), CtlError> {
        self.out.write_all(text.as_bytes()).and_then(|()| self.out.flush()).map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => CtlError::new(code::IO_ERR, BROKEN_PIPE),
            _ => CtlError::new(code::IO_ERR, format!("cannot write the output: {e}")),
        })
    }

    /// A 404 of a command in a virtual host says `message` (exit 69, as rabbitmqctl's for a
    /// missing object), unless the virtual host itself is what is missing: that gets its own
    /// message and rabbitmqctl's code for it (65). Other errors as they are.
    pub(super) fn not_found(&self, e: ClientError, message: &str) -> CtlError {
        match e {
            ClientError::Api(ApiError { status: 404, .. }) if self.vhost_missing() => {
                CtlError::data(format!("virtual host '{}' does not exist", self.vhost()))
            }
            ClientError::Api(ApiError { status: 404, .. }) => CtlError::new(code::UNAVAILABLE, message),
            e => e.into(),
        }
    }

    /// For a 404 where no object can be missing (a listing, a PUT): the API lacks the path.
    pub(super) fn no_such_endpoint(&self, path: &str) -> String {
        format!("{}{path} not found; does this broker's management API have it?", self.client.endpoint().base)
    }

    pub(super) fn vhost_missing(&self) -> bool {
        matches!(
            self.client.get_json(&api_path(&["vhosts", self.vhost()])),
            Err(ClientError::Api(ApiError { status: 404, .. }))
        )
    }
}

pub fn dispatch(ctx: &mut Ctx<'_>, command: &CtlCommand, input: &mut dyn Read) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    match command {
        CtlCommand::Status => status::status(ctx),
        CtlCommand::Ping => ping(ctx),
        CtlCommand::AwaitStartup => await_startup(ctx),
        CtlCommand::CheckPortConnectivity { amqp_port } => health::check_port_connectivity(ctx, *amqp_port),
        CtlCommand::ListQueues(a) => {
            list(ctx, &columns::QUEUES, &["queues", vh], &format!("Listing queues for vhost {vh} ..."), &a.columns)
        }
        CtlCommand::ListExchanges(a) => list(
            ctx,
            &columns::EXCHANGES,
            &["exchanges", vh],
            &format!("Listing exchanges for vhost {vh} ..."),
            &a.columns,
        ),
        CtlCommand::ListBindings(a) => {
            list(ctx, &columns::BINDINGS, &["bindings", vh], &format!("Listing bindings for vhost {vh}..."), &a.columns)
        }
        CtlCommand::ListConnections(a) => {
            list(ctx, &columns::CONNECTIONS, &["connections"], "Listing connections ...", &a.columns)
        }
        CtlCommand::ListChannels(a) => list(ctx, &columns::CHANNELS, &["channels"], "Listing channels ...", &a.columns),
        CtlCommand::ListConsumers(a) => list(
            ctx,
            &columns::CONSUMERS,
            &["consumers", vh],
            &format!("Listing consumers in vhost {vh} ..."),
            &a.columns,
        ),
        CtlCommand::ListVhosts(a) => list(ctx, &columns::VHOSTS, &["vhosts"], "Listing vhosts ...", &a.columns),
        CtlCommand::ListUsers(a) => list(ctx, &columns::USERS, &["users"], "Listing users ...", &a.columns),
        CtlCommand::ListPermissions(a) => list(
            ctx,
            &columns::PERMISSIONS,
            &["vhosts", vh, "permissions"],
            &format!("Listing permissions for vhost \"{vh}\" ..."),
            &a.columns,
        ),
        CtlCommand::ListPolicies(a) => list(
            ctx,
            &columns::POLICIES,
            &["policies", vh],
            &format!("Listing policies for vhost \"{vh}\" ..."),
            &a.columns,
        ),
        CtlCommand::ListOperatorPolicies(a) => list(
            ctx,
            &columns::POLICIES,
            &["operator-policies", vh],
            &format!("Listing operator policy overrides for vhost \"{vh}\" ..."),
            &a.columns,
        ),
        CtlCommand::PurgeQueue { name } => purge_queue(ctx, name),
        CtlCommand::DeleteQueue { name, if_empty, if_unused } => delete_queue(ctx, name, *if_empty, *if_unused),
        CtlCommand::CloseConnection { name, reason } => close_connection(ctx, name, reason),
        CtlCommand::SetPolicy(p) => set_policy(ctx, PolicyKind::User, p),
        CtlCommand::SetOperatorPolicy(p) => set_policy(ctx, PolicyKind::Operator, p),
        CtlCommand::ClearPolicy { name } => clear_policy(ctx, PolicyKind::User, name),
        CtlCommand::ClearOperatorPolicy { name } => clear_policy(ctx, PolicyKind::Operator, name),
        CtlCommand::ExportDefinitions { file } => export_definitions(ctx, file),
        CtlCommand::ImportDefinitions { file } => import_definitions(ctx, file, input),
        CtlCommand::Access(c) => access::dispatch(ctx, c),
        CtlCommand::Limits(c) => super::limits::dispatch(ctx, c),
    }
}

/// GET a list and print it in the chosen columns. `segments[1]`, when there, is the vhost.
pub(super) fn list(
    ctx: &mut Ctx<'_>,
    kind: &Kind,
    segments: &[&str],
    banner: &str,
    requested: &[String],
) -> Result<(), CtlError> {
    // A wrong column is a usage error before anything is sent, as in rabbitmqctl.
    let columns = kind.select(requested)?;
    ctx.info(banner)?;
    let path = api_path(segments);
    let answer = ctx.client.get_json(&path).map_err(|e| match e {
        _ if segments.len() > 1 => ctx.not_found(e, &ctx.no_such_endpoint(&path)),
        ClientError::Api(ApiError { status: 404, .. }) => CtlError::new(code::UNAVAILABLE, ctx.no_such_endpoint(&path)),
        e => e.into(),
    })?;
    print_rows(ctx, &columns, &path, answer)
}

/// Prints `answer` (what `path` answered: a JSON list) in `columns`.
pub(super) fn print_rows(ctx: &mut Ctx<'_>, columns: &[Column], path: &str, answer: Value) -> Result<(), CtlError> {
    let Value::Array(objects) = answer else {
        return Err(CtlError::new(code::SOFTWARE, format!("{path} answered something other than a JSON list")));
    };
    let rows = columns::project(&objects, columns);
    let headers = ctx.headers();
    ctx.print(&render(ctx.opts.formatter, &rows, headers))
}

fn ping(ctx: &mut Ctx<'_>) -> Result<(), CtlError> {
    let base = ctx.client.endpoint().base.clone();
    ctx.info(&format!(
        "Will ping the management API at {base}. This checks that it answers and accepts the credentials."
    ))?;
    ctx.client.get_json("/overview")?;
    if ctx.json() {
        ctx.print("{\"message\":\"Ping succeeded\"}\n")
    } else {
        ctx.print("Ping succeeded\n")
    }
}

/// Polls `/overview` until it answers, for scripts that start a broker and go on once it is up.
/// Refused credentials end the wait at once: waiting longer would not change them.
fn await_startup(ctx: &mut Ctx<'_>) -> Result<(), CtlError> {
    let limit = ctx.opts.timeout.map_or(AWAIT_STARTUP_TIMEOUT, Duration::from_secs);
    let deadline = Instant::now() + limit;
    let endpoint = ctx.client.endpoint().clone();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Each try is short so that a broker that accepts but hangs does not eat the whole wait.
        let try_limit = left.clamp(Duration::from_millis(100), Duration::from_secs(5));
        let client = Client::new(endpoint.clone(), Some(try_limit));
        let last = match client.get_json("/overview") {
            Ok(_) => return Ok(()),
            Err(ClientError::Api(e)) if matches!(e.status, 401 | 403) => return Err(e.into()),
            Err(e) => CtlError::from(e),
        };
        if Instant::now() >= deadline {
            return Err(CtlError::new(
                code::TEMP_FAIL,
                format!(
                    "the management API at {} did not answer within {} s (last: {last})",
                    endpoint.base,
                    limit.as_secs()
                ),
            ));
        }
        thread::sleep(deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(500)));
    }
}

fn purge_queue(ctx: &mut Ctx<'_>, name: &str) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    ctx.info(&format!("Purging queue '{name}' in vhost '{vh}' ..."))?;
    let path = api_path(&["queues", vh, name, "contents"]);
    ctx.client.delete(&path, &[]).map_err(|e| ctx.not_found(e, &format!("queue '{name}' in vhost '{vh}' not found")))
}

fn delete_queue(ctx: &mut Ctx<'_>, name: &str, if_empty: bool, if_unused: bool) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    let mut conditions = Vec::new();
    let mut query = Vec::new();
    if if_empty {
        conditions.push("if queue is empty ");
        query.push("if-empty=true");
    }
    if if_unused {
        conditions.push("if queue is unused ");
        query.push("if-unused=true");
    }
    ctx.info(&format!("Deleting queue '{name}' on vhost '{vh}' {}...", conditions.join("and ")))?;
    let path = api_path(&["queues", vh, name]);
    let what = format!("queue '{name}' in vhost '{vh}' not found");
    // The API's DELETE says nothing of what it dropped; rabbitmqctl reports the ready messages,
    // so they are read first.
    let queue = ctx.client.get_json(&path).map_err(|e| ctx.not_found(e, &what))?;
    let url = if query.is_empty() { path } else { format!("{path}?{}", query.join("&")) };
    ctx.client.delete(&url, &[]).map_err(|e| ctx.not_found(e, &what))?;
    match queue.get("messages_ready").and_then(Value::as_u64) {
        Some(ready) if !ctx.json() => {
            ctx.print(&format!("Queue was successfully deleted with {ready} ready messages\n"))
        }
        _ => Ok(()),
    }
}

fn close_connection(ctx: &mut Ctx<'_>, name: &str, reason: &str) -> Result<(), CtlError> {
    ctx.info(&format!("Closing connection {name}, reason: {reason}..."))?;
    let path = api_path(&["connections", name]);
    ctx.client.delete(&path, &[("x-reason", reason)]).map_err(|e| match e {
        ClientError::Api(ApiError { status: 404, .. }) => {
            CtlError::new(code::UNAVAILABLE, format!("connection '{name}' not found (names: list_connections name)"))
        }
        e => e.into(),
    })
}

#[derive(Clone, Copy)]
enum PolicyKind {
    User,
    Operator,
}

impl PolicyKind {
    fn path(self) -> &'static str {
        match self {
            PolicyKind::User => "policies",
            PolicyKind::Operator => "operator-policies",
        }
    }

    fn label(self) -> &'static str {
        match self {
            PolicyKind::User => "policy",
            PolicyKind::Operator => "operator policy",
        }
    }
}

fn set_policy(ctx: &mut Ctx<'_>, kind: PolicyKind, p: &PolicyArgs) -> Result<(), CtlError> {
    let definition: Value = serde_json::from_str(&p.definition).ok().filter(Value::is_object).ok_or_else(|| {
        CtlError::data(format!(
            "the definition must be a JSON object, e.g. '{{\"max-length\":1000}}', not {}",
            p.definition
        ))
    })?;
    let vh = ctx.vhost();
    let label = match kind {
        PolicyKind::User => "policy",
        PolicyKind::Operator => "operator policy override",
    };
    ctx.info(&format!(
        "Setting {label} \"{}\" for pattern \"{}\" to \"{}\" with priority \"{}\" for vhost \"{vh}\" ...",
        p.name, p.pattern, p.definition, p.priority
    ))?;
    let body = json!({"pattern": p.pattern, "definition": definition, "priority": p.priority, "apply-to": p.apply_to});
    let path = api_path(&[kind.path(), vh, &p.name]);
    ctx.client.put_json(&path, &body).map_err(|e| ctx.not_found(e, &ctx.no_such_endpoint(&path)))
}

fn clear_policy(ctx: &mut Ctx<'_>, kind: PolicyKind, name: &str) -> Result<(), CtlError> {
    let vh = ctx.vhost();
    ctx.info(&format!("Clearing {} \"{name}\" on vhost \"{vh}\" ...", kind.label()))?;
    let path = api_path(&[kind.path(), vh, name]);
    ctx.client
        .delete(&path, &[])
        .map_err(|e| ctx.not_found(e, &format!("{} \"{name}\" in vhost \"{vh}\" not found", kind.label())))
}

/// All virtual hosts, as rabbitmqctl's export; written as the broker sent it.
fn export_definitions(ctx: &mut Ctx<'_>, file: &str) -> Result<(), CtlError> {
    if file != "-" {
        ctx.info(&format!("Exporting definitions in JSON to a file at \"{file}\" ..."))?;
    }
    let mut text = ctx.client.get_text("/definitions")?;
    if let Err(e) = serde_json::from_str::<Value>(&text) {
        return Err(CtlError::new(code::SOFTWARE, format!("/definitions did not answer JSON: {e}")));
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if file == "-" {
        return ctx.print(&text);
    }
    fs::write(file, text).map_err(|e| CtlError::new(code::CANT_CREATE, format!("cannot write {file}: {e}")))
}

fn import_definitions(ctx: &mut Ctx<'_>, file: &str, input: &mut dyn Read) -> Result<(), CtlError> {
    let text = if file == "-" {
        ctx.info("Importing definitions in JSON from standard input ...")?;
        let mut text = String::new();
        input
            .read_to_string(&mut text)
            .map_err(|e| CtlError::new(code::NO_INPUT, format!("cannot read standard input: {e}")))?;
        text
    } else {
        ctx.info(&format!("Importing definitions in JSON from a file at \"{file}\" ..."))?;
        fs::read_to_string(file).map_err(|e| CtlError::new(code::NO_INPUT, format!("cannot read {file}: {e}")))?
    };
    // Checked here so a wrong file gets a line and column, not the API's bare "not_json".
    let source = if file == "-" { "standard input" } else { file };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(_)) => {}
        Ok(_) => return Err(CtlError::data(format!("{source}: definitions must be a JSON object"))),
        Err(e) => return Err(CtlError::data(format!("{source} is not valid JSON: {e}"))),
    }
    ctx.client.post_json_text("/definitions", text)?;
    Ok(())
}
