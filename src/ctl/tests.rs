//! Whole commands against the stub server: what is sent, what is printed, the exit code.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;

use super::stub::{Reply, Request, Stub};
use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    ctl: CtlArgs,
}

pub(super) fn parse(args: &[&str]) -> CtlArgs {
    match Cli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied())) {
        Ok(cli) => cli.ctl,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

/// Runs `args` against `stub` with `stdin`; the output and the result.
fn ctl_with_input(stub: &Stub, args: &[&str], stdin: &str) -> (String, Result<(), CtlError>) {
    let url = stub.url();
    let mut all = vec!["--uri", url.as_str()];
    all.extend_from_slice(args);
    let mut out = Vec::new();
    let result = execute(&parse(&all), &mut out, &mut stdin.as_bytes());
    (String::from_utf8(out).expect("utf-8 output"), result)
}

pub(super) fn ctl(stub: &Stub, args: &[&str]) -> (String, Result<(), CtlError>) {
    ctl_with_input(stub, args, "")
}

fn not_found() -> Reply {
    Reply::json(404, r#"{"error":"Object Not Found","reason":"Not Found"}"#)
}

fn route(req: &Request) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/queues/%2F") => Reply::json(
            200,
            r#"[{"name":"orders","vhost":"/","messages":3,"messages_ready":2,"durable":true,"arguments":{}},
                {"name":"empty","vhost":"/","messages":0,"messages_ready":0,"durable":false,"arguments":{"x-max-length":1}}]"#,
        ),
        ("GET", "/api/queues/a%2Fb") => Reply::json(200, "[]"),
        ("GET", "/api/vhosts/%2F") => Reply::json(200, r#"{"name":"/"}"#),
        ("GET", "/api/queues/%2F/orders") => Reply::json(200, r#"{"name":"orders","messages_ready":2}"#),
        ("DELETE", "/api/queues/%2F/orders?if-empty=true") => {
            Reply::json(400, r#"{"error":"bad_request","reason":"queue 'orders' in vhost '/' not empty"}"#)
        }
        ("DELETE", "/api/queues/%2F/orders") | ("DELETE", "/api/queues/%2F/orders/contents") => Reply::json(204, ""),
        ("PUT", "/api/policies/%2F/lim") | ("PUT", "/api/operator-policies/%2F/lim") => Reply::json(201, ""),
        ("DELETE", "/api/connections/127.0.0.1%3A5000%20-%3E%20127.0.0.1%3A5672") => Reply::json(204, ""),
        ("GET", "/api/definitions") => Reply::json(200, r#"{"queues":[{"name":"orders"}]}"#),
        ("POST", "/api/definitions") => Reply::json(204, ""),
        ("GET", "/api/overview") => {
            Reply::json(200, r#"{"node":"warren@h","product_name":"Warren","product_version":"0.1.0"}"#)
        }
        _ => not_found(),
    }
}

#[test]
fn list_queues_prints_a_banner_and_a_table() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["list_queues"]);
    result.unwrap();
    assert_eq!(
        out,
        "Listing queues for vhost / ...\n\
         ┌────────┬──────────┐\n\
         │ name   │ messages │\n\
         ├────────┼──────────┤\n\
         │ orders │ 3        │\n\
         │ empty  │ 0        │\n\
         └────────┴──────────┘\n"
    );
    assert_eq!(stub.requests()[0].path, "/api/queues/%2F");
}

#[test]
fn list_formats_for_scripts() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["list_queues", "-q", "--formatter", "tsv", "name", "durable,arguments"]);
    result.unwrap();
    assert_eq!(out, "name\tdurable\targuments\norders\ttrue\t{}\nempty\tfalse\t{\"x-max-length\":1}\n");
    let (out, _) = ctl(&stub, &["-s", "--formatter", "tsv", "list_queues"]);
    assert_eq!(out, "orders\t3\nempty\t0\n");
    let (out, _) = ctl(&stub, &["--formatter", "json", "list_queues", "name", "arguments"]);
    assert_eq!(
        out,
        "[\n{\"name\":\"orders\",\"arguments\":{}},\n{\"name\":\"empty\",\"arguments\":{\"x-max-length\":1}}\n]\n"
    );
}

#[test]
fn the_vhost_is_one_encoded_segment() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["list_queues", "-p", "a/b"]);
    result.unwrap();
    assert_eq!(
        out,
        "Listing queues for vhost a/b ...\n┌──────┬──────────┐\n│ name │ messages │\n└──────┴──────────┘\n"
    );
    assert_eq!(stub.requests()[0].path, "/api/queues/a%2Fb");
}

#[test]
fn a_missing_vhost_is_told_apart_from_a_missing_object() {
    let stub = Stub::start(route);
    let (_, result) = ctl(&stub, &["-p", "nope", "list_queues"]);
    assert_eq!(result, Err(CtlError::data("virtual host 'nope' does not exist")));
    let (_, result) = ctl(&stub, &["purge_queue", "ghost"]);
    assert_eq!(result, Err(CtlError::new(code::UNAVAILABLE, "queue 'ghost' in vhost '/' not found")));
    let (_, result) = ctl(&stub, &["clear_policy", "ghost"]);
    assert_eq!(result, Err(CtlError::new(code::UNAVAILABLE, "policy \"ghost\" in vhost \"/\" not found")));
    // The vhost exists and a listing cannot miss an object: the API lacks the endpoint.
    for args in [&["list_consumers"][..], &["list_connections"]] {
        let e = ctl(&stub, args).1.unwrap_err();
        assert_eq!(e.code, code::UNAVAILABLE);
        assert!(e.message.ends_with("not found; does this broker's management API have it?"), "{e}");
    }
}

#[test]
fn an_unknown_column_sends_nothing() {
    let stub = Stub::start(route);
    let (_, result) = ctl(&stub, &["list_queues", "bogus"]);
    assert_eq!(result.unwrap_err().code, code::USAGE);
    assert!(stub.requests().is_empty());
}

#[test]
fn purge_and_delete_queue() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["purge_queue", "orders"]);
    result.unwrap();
    assert_eq!(out, "Purging queue 'orders' in vhost '/' ...\n");
    assert_eq!(stub.requests()[0].method, "DELETE");
    assert_eq!(stub.requests()[0].path, "/api/queues/%2F/orders/contents");

    let (out, result) = ctl(&stub, &["delete_queue", "orders"]);
    result.unwrap();
    assert_eq!(out, "Deleting queue 'orders' on vhost '/' ...\nQueue was successfully deleted with 2 ready messages\n");

    let (out, result) = ctl(&stub, &["-q", "delete_queue", "orders", "--if-empty"]);
    assert_eq!(out, "");
    assert_eq!(result, Err(CtlError::data("queue 'orders' in vhost '/' not empty")));
}

#[test]
fn set_and_clear_policies() {
    let stub = Stub::start(route);
    let (out, result) = ctl(
        &stub,
        &["set_policy", "lim", "^orders$", r#"{"max-length":10}"#, "--priority", "5", "--apply-to", "queues"],
    );
    result.unwrap();
    assert_eq!(
        out,
        "Setting policy \"lim\" for pattern \"^orders$\" to \"{\"max-length\":10}\" with priority \"5\" for vhost \"/\" ...\n"
    );
    let sent: serde_json::Value = serde_json::from_str(&stub.requests()[0].body).unwrap();
    assert_eq!(
        sent,
        serde_json::json!({"pattern": "^orders$", "definition": {"max-length": 10}, "priority": 5, "apply-to": "queues"})
    );

    let (_, result) = ctl(&stub, &["set_operator_policy", "lim", ".*", r#"{"max-length":1}"#]);
    result.unwrap();
    let request = &stub.requests()[1];
    assert_eq!(request.path, "/api/operator-policies/%2F/lim");
    assert!(request.body.contains(r#""apply-to":"all""#), "{}", request.body);

    for bad in ["{bad", "[1]", "5"] {
        let (_, result) = ctl(&stub, &["set_policy", "lim", ".*", bad]);
        assert_eq!(result.unwrap_err().code, code::DATA, "{bad}");
    }
    assert_eq!(stub.requests().len(), 2);
}

#[test]
fn close_connection_passes_the_reason() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["close_connection", "127.0.0.1:5000 -> 127.0.0.1:5672", "maintenance"]);
    result.unwrap();
    assert_eq!(out, "Closing connection 127.0.0.1:5000 -> 127.0.0.1:5672, reason: maintenance...\n");
    assert_eq!(stub.requests()[0].header("x-reason"), Some("maintenance"));
    let (_, result) = ctl(&stub, &["close_connection", "gone", "x"]);
    assert_eq!(result.unwrap_err().code, code::UNAVAILABLE);
}

#[test]
fn definitions_round_trip_through_files_and_stdio() {
    let stub = Stub::start(route);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    let file = file.to_str().unwrap();
    let (out, result) = ctl(&stub, &["export_definitions", file]);
    result.unwrap();
    assert_eq!(out, format!("Exporting definitions in JSON to a file at \"{file}\" ...\n"));
    assert_eq!(std::fs::read_to_string(file).unwrap(), "{\"queues\":[{\"name\":\"orders\"}]}\n");
    let (out, _) = ctl(&stub, &["export_definitions", "-"]);
    assert_eq!(out, "{\"queues\":[{\"name\":\"orders\"}]}\n");

    let (_, result) = ctl(&stub, &["-q", "import_definitions", file]);
    result.unwrap();
    let (_, result) = ctl_with_input(&stub, &["-q", "import_definitions", "-"], r#"{"vhosts":[]}"#);
    result.unwrap();
    let posts: Vec<String> = stub.requests().into_iter().filter(|r| r.method == "POST").map(|r| r.body).collect();
    assert_eq!(posts, ["{\"queues\":[{\"name\":\"orders\"}]}\n", "{\"vhosts\":[]}"]);

    let (_, result) = ctl_with_input(&stub, &["import_definitions", "-"], "{nope");
    assert_eq!(result.unwrap_err().code, code::DATA);
    let (_, result) = ctl(&stub, &["import_definitions", "/nonexistent/defs.json"]);
    assert_eq!(result.unwrap_err().code, code::NO_INPUT);
    let (_, result) = ctl(&stub, &["export_definitions", "/nonexistent/dir/defs.json"]);
    assert_eq!(result.unwrap_err().code, code::CANT_CREATE);
}

#[test]
fn refused_credentials_exit_77() {
    let stub = Stub::start(|_| Reply::json(401, r#"{"error":"not_authorized","reason":"Login failed"}"#));
    let (_, result) = ctl(&stub, &["-u", "bob", "--password", "x", "list_vhosts"]);
    let e = result.unwrap_err();
    assert_eq!(e.code, code::NO_PERM);
    assert!(e.message.starts_with("authentication failed for user 'bob': Login failed"), "{e}");
    assert_eq!(stub.requests()[0].header("authorization"), Some("Basic Ym9iOng="));
}

#[test]
fn await_startup_polls_until_the_api_answers() {
    let tries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&tries);
    let stub = Stub::start(move |_| {
        if counter.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::json(503, "")
        } else {
            Reply::json(200, "{}")
        }
    });
    let (out, result) = ctl(&stub, &["await_startup", "--timeout", "20"]);
    result.unwrap();
    assert_eq!(out, "");
    assert_eq!(tries.load(Ordering::SeqCst), 3);

    let stub = Stub::start(|_| Reply::json(503, ""));
    let (_, result) = ctl(&stub, &["await_startup", "-t", "1"]);
    assert_eq!(result.unwrap_err().code, code::TEMP_FAIL);

    let stub = Stub::start(|_| Reply::json(401, ""));
    let (_, result) = ctl(&stub, &["await_startup"]);
    assert_eq!(result.unwrap_err().code, code::NO_PERM);
}

#[test]
fn ping_and_status_without_a_nodes_endpoint() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["-q", "ping"]);
    result.unwrap();
    assert_eq!(out, "Ping succeeded\n");
    let (out, result) = ctl(&stub, &["status"]);
    result.unwrap();
    assert_eq!(out, "Status of node warren@h ...\nRuntime\n\nProduct: Warren 0.1.0\nNode name: warren@h\n\n");
}

#[test]
fn options_go_before_or_after_the_command() {
    let args = parse(&["list_queues", "-p", "v", "name", "--formatter", "json", "-q"]);
    assert_eq!((args.global.vhost.as_str(), args.global.formatter, args.global.quiet), ("v", Formatter::Json, true));
    let args = parse(&["-p", "v", "delete_queue", "q", "--if-empty", "--if-unused"]);
    assert!(matches!(args.command, CtlCommand::DeleteQueue { if_empty: true, if_unused: true, .. }));
    assert_eq!(args.global.vhost, "v");
    let args = parse(&["--formatter", "pretty_table", "list_users"]);
    assert_eq!(args.global.formatter, Formatter::Table);
}

#[test]
fn check_port_connectivity_needs_no_credentials() {
    // The API is asked without credentials; its 401 is an answer, so the check passes.
    let stub = Stub::start(|req: &Request| {
        assert!(!req.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")), "credentials sent");
        Reply::json(401, r#"{"error":"not_authorized","reason":"Not_Authorized"}"#)
    });
    let amqp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = amqp.local_addr().unwrap().port().to_string();
    let (out, result) = ctl(&stub, &["check_port_connectivity", "--amqp-port", &port]);
    result.unwrap();
    assert!(out.ends_with("Successfully connected to ports AMQP and HTTP\n"), "{out}");
    // Nothing listens on the AMQP port: unavailable (69).
    drop(amqp);
    let (_, result) = ctl(&stub, &["-q", "check_port_connectivity", "--amqp-port", &port]);
    assert_eq!(result.unwrap_err().code, code::UNAVAILABLE);
}
