//! The access control commands against the stub: what each sends, prints and exits with.

use serde_json::{json, Value};

use super::stub::{Reply, Request, Stub};
use super::tests::{ctl, parse};
use super::{code, CtlError};

const ALICE: &str = r#"{"name":"alice","password_hash":"HASH","hashing_algorithm":"rabbit_password_hashing_sha256",
                        "tags":["monitoring","management"],"limits":{}}"#;

fn not_found() -> Reply {
    Reply::json(404, r#"{"error":"Object Not Found","reason":"Not Found"}"#)
}

fn vhost_or_user_not_found() -> Reply {
    Reply::json(400, r#"{"error":"bad_request","reason":"vhost_or_user_not_found"}"#)
}

/// alice exists (with permissions and topic permissions), bob exists with none and no
/// management tag; ghost does not exist; vhosts / and v1 exist, nope does not; / has limits.
fn route(req: &Request) -> Reply {
    let auth = req.header("authorization").unwrap_or("");
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/users/alice") => Reply::json(200, ALICE),
        ("GET", "/api/users/bob") => Reply::json(200, r#"{"name":"bob","password_hash":"","tags":[]}"#),
        ("PUT", "/api/users/new") => Reply::json(201, ""),
        ("PUT", "/api/users/alice") | ("DELETE", "/api/users/alice") => Reply::json(204, ""),
        // alice:pw is accepted; bob:pw too, but bob has no management tag.
        ("GET", "/api/whoami") if auth == "Basic YWxpY2U6cHc=" => Reply::json(200, r#"{"name":"alice","tags":[]}"#),
        ("GET", "/api/whoami") if auth == "Basic Ym9iOnB3" => {
            Reply::json(401, r#"{"error":"not_authorised","reason":"Not management user"}"#)
        }
        ("GET", "/api/whoami") => Reply::json(401, r#"{"error":"not_authorized","reason":"Login failed"}"#),
        ("GET", "/api/vhosts/%2F") | ("GET", "/api/vhosts/v1") => Reply::json(200, r#"{"name":"v"}"#),
        ("PUT", "/api/vhosts/v1") => Reply::json(201, ""),
        ("DELETE", "/api/vhosts/v1") => Reply::json(204, ""),
        ("PUT", "/api/permissions/%2F/alice") | ("PUT", "/api/topic-permissions/%2F/alice") => Reply::json(201, ""),
        (_, p) if p.starts_with("/api/permissions/") && req.method == "PUT" => vhost_or_user_not_found(),
        (_, p) if p.starts_with("/api/topic-permissions/") && req.method == "PUT" => vhost_or_user_not_found(),
        ("DELETE", "/api/permissions/%2F/alice") | ("DELETE", "/api/topic-permissions/%2F/alice") => {
            Reply::json(204, "")
        }
        ("GET", "/api/users/alice/permissions") => {
            Reply::json(200, r#"[{"user":"alice","vhost":"/","configure":".*","write":".*","read":"^amq"}]"#)
        }
        ("GET", "/api/topic-permissions/%2F/alice") | ("GET", "/api/vhosts/%2F/topic-permissions") => Reply::json(
            200,
            r#"[{"user":"alice","vhost":"/","exchange":"amq.topic","write":"^a","read":".*"},
                {"user":"alice","vhost":"/","exchange":"logs","write":"x","read":"y"}]"#,
        ),
        ("GET", "/api/vhost-limits/%2F") => {
            Reply::json(200, r#"[{"vhost":"/","value":{"max-connections":10,"max-queues":5}}]"#)
        }
        ("PUT", "/api/vhost-limits/%2F/bogus") => Reply::json(
            400,
            r#"{"error":"bad_request","reason":"Validation failed\n\nUnrecognised terms [{&lt;&lt;\"bogus\"&gt;&gt;,1}] in limits\n"}"#,
        ),
        ("PUT", p) | ("DELETE", p) if p.starts_with("/api/vhost-limits/%2F/") => Reply::json(204, ""),
        _ => not_found(),
    }
}

/// Method, path and (parsed) body of each request the stub saw.
fn sent(stub: &Stub) -> Vec<(String, String, Value)> {
    stub.requests()
        .into_iter()
        .map(|r| {
            let body = if r.body.is_empty() { Value::Null } else { serde_json::from_str(&r.body).expect("JSON body") };
            (r.method, r.path, body)
        })
        .collect()
}

fn req(method: &str, path: &str, body: Value) -> (String, String, Value) {
    (method.to_string(), path.to_string(), body)
}

fn get(path: &str) -> (String, String, Value) {
    req("GET", path, Value::Null)
}

fn delete(path: &str) -> (String, String, Value) {
    req("DELETE", path, Value::Null)
}

#[test]
fn arguments_are_not_taken_for_the_global_options() {
    // A positional named like a global option (username, password, vhost) would set that option.
    let args = parse(&["add_user", "alice", "pw"]);
    assert_eq!((args.global.username, args.global.password), (None, None));
    let args = parse(&["authenticate_user", "-u", "admin", "alice", "pw"]);
    assert_eq!((args.global.username.as_deref(), args.global.password), (Some("admin"), None));
    assert_eq!(parse(&["add_vhost", "v1"]).global.vhost, "/");
    assert_eq!(parse(&["delete_vhost", "v1"]).global.vhost, "/");
    let stub = Stub::start(route);
    ctl(&stub, &["delete_user", "alice"]).1.unwrap();
    assert_eq!(stub.requests()[0].header("authorization"), Some("Basic Z3Vlc3Q6Z3Vlc3Q="));
}

#[test]
fn add_user_refuses_an_existing_user() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["add_user", "new", "-s3cret"]);
    result.unwrap();
    assert_eq!(
        out,
        "Adding user \"new\" ...\nDone. Don't forget to grant the user permissions to some virtual hosts! \
         See 'warren ctl help set_permissions' to learn more.\n"
    );
    assert_eq!(
        sent(&stub),
        [get("/api/users/new"), req("PUT", "/api/users/new", json!({"password": "-s3cret", "tags": ""}))]
    );
    let (out, result) = ctl(&stub, &["-q", "add_user", "alice", "x"]);
    assert_eq!(out, "");
    assert_eq!(result, Err(CtlError::new(code::SOFTWARE, "User \"alice\" already exists")));
    assert_eq!(stub.requests().len(), 3, "no PUT for an existing user");
    let (_, result) = ctl(&stub, &["add_user", "", "x"]);
    assert_eq!(result.unwrap_err().code, code::DATA);
    assert_eq!(stub.requests().len(), 3);
}

#[test]
fn delete_user() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["delete_user", "alice"]);
    result.unwrap();
    assert_eq!(out, "Deleting user \"alice\" ...\n");
    let (_, result) = ctl(&stub, &["delete_user", "ghost"]);
    assert_eq!(result, Err(CtlError::new(code::NO_USER, "User \"ghost\" does not exist")));
    assert_eq!(sent(&stub), [delete("/api/users/alice"), delete("/api/users/ghost")]);
}

#[test]
fn change_and_clear_password_keep_the_tags() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["change_password", "alice", "n3w"]);
    result.unwrap();
    assert_eq!(out, "Changing password for user \"alice\" ...\n");
    let (out, result) = ctl(&stub, &["clear_password", "alice"]);
    result.unwrap();
    assert_eq!(out, "Clearing password for user \"alice\" ...\n");
    let tags = "monitoring,management";
    assert_eq!(
        sent(&stub),
        [
            get("/api/users/alice"),
            req("PUT", "/api/users/alice", json!({"password": "n3w", "tags": tags})),
            get("/api/users/alice"),
            req("PUT", "/api/users/alice", json!({"password_hash": "", "tags": tags})),
        ]
    );
    for command in ["change_password", "clear_password"] {
        let args: &[&str] = if command == "clear_password" { &[command, "ghost"] } else { &[command, "ghost", "x"] };
        assert_eq!(ctl(&stub, args).1.unwrap_err().code, code::NO_USER, "{command}");
    }
    assert!(stub.requests().iter().all(|r| r.path != "/api/users/ghost" || r.method == "GET"));
}

#[test]
fn authenticate_user_logs_in_as_the_user() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["authenticate_user", "alice", "pw"]);
    result.unwrap();
    assert_eq!(out, "Authenticating user \"alice\" ...\nSuccess\n");
    assert_eq!(stub.requests()[0].path, "/api/whoami");
    assert_eq!(stub.requests()[0].header("authorization"), Some("Basic YWxpY2U6cHc="));
    // Refused the API for want of a management tag, but the password was right.
    let (out, result) = ctl(&stub, &["-q", "authenticate_user", "bob", "pw"]);
    result.unwrap();
    assert_eq!(out, "Success\n");
    let (out, result) = ctl(&stub, &["authenticate_user", "alice", "wrong"]);
    assert_eq!(out, "Authenticating user \"alice\" ...\n");
    assert_eq!(
        result,
        Err(CtlError::data("failed to authenticate user \"alice\"\nuser 'alice' - invalid credentials"))
    );
}

#[test]
fn set_user_tags_keeps_the_password() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["set_user_tags", "alice", "administrator", "management"]);
    result.unwrap();
    assert_eq!(out, "Setting tags for user \"alice\" to [administrator, management] ...\n");
    let (out, result) = ctl(&stub, &["set_user_tags", "alice"]);
    result.unwrap();
    assert_eq!(out, "Setting tags for user \"alice\" to [] ...\n");
    let with = |tags: &str| json!({"tags": tags, "password_hash": "HASH", "hashing_algorithm": "rabbit_password_hashing_sha256"});
    let puts: Vec<_> = sent(&stub).into_iter().filter(|r| r.0 == "PUT").collect();
    assert_eq!(
        puts,
        [req("PUT", "/api/users/alice", with("administrator,management")), req("PUT", "/api/users/alice", with(""))]
    );
    assert_eq!(ctl(&stub, &["set_user_tags", "ghost", "x"]).1.unwrap_err().code, code::NO_USER);
}

#[test]
fn add_and_delete_vhost() {
    let stub = Stub::start(route);
    let args = ["add_vhost", "v1", "--description", "QA", "--tags", "qa,project-x", "--default-queue-type", "quorum"];
    let (out, result) = ctl(&stub, &args);
    result.unwrap();
    assert_eq!(out, "Adding vhost \"v1\" ...\n");
    let (_, result) = ctl(&stub, &["-q", "add_vhost", "v1"]);
    result.unwrap();
    let (out, result) = ctl(&stub, &["delete_vhost", "v1"]);
    result.unwrap();
    assert_eq!(out, "Deleting vhost \"v1\" ...\n");
    assert_eq!(
        sent(&stub),
        [
            req(
                "PUT",
                "/api/vhosts/v1",
                json!({"description": "QA", "tags": "qa,project-x", "default_queue_type": "quorum"})
            ),
            req("PUT", "/api/vhosts/v1", json!({})),
            delete("/api/vhosts/v1"),
        ]
    );
    assert_eq!(ctl(&stub, &["delete_vhost", "nope"]).1, Err(CtlError::data("virtual host 'nope' does not exist")));
    let (_, result) = ctl(&stub, &["add_vhost", "v2", "--default-queue-type", "lazy"]);
    assert_eq!(result.unwrap_err().code, code::USAGE);
    assert_eq!(stub.requests().len(), 4);
}

#[test]
fn set_and_clear_permissions() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["set_permissions", "alice", "^alice-.*", "", ".*"]);
    result.unwrap();
    assert_eq!(out, "Setting permissions for user \"alice\" in vhost \"/\" ...\n");
    assert_eq!(
        sent(&stub),
        [req("PUT", "/api/permissions/%2F/alice", json!({"configure": "^alice-.*", "write": "", "read": ".*"}))]
    );
    let (_, result) = ctl(&stub, &["set_permissions", "ghost", ".*", ".*", ".*"]);
    assert_eq!(result, Err(CtlError::new(code::NO_USER, "User \"ghost\" does not exist")));
    let (_, result) = ctl(&stub, &["-p", "nope", "set_permissions", "alice", ".*", ".*", ".*"]);
    assert_eq!(result, Err(CtlError::data("virtual host 'nope' does not exist")));

    let (out, result) = ctl(&stub, &["clear_permissions", "alice"]);
    result.unwrap();
    assert_eq!(out, "Clearing permissions for user \"alice\" in vhost \"/\" ...\n");
    // Nothing to clear is no failure; a missing user or vhost is.
    ctl(&stub, &["clear_permissions", "bob"]).1.unwrap();
    assert_eq!(ctl(&stub, &["clear_permissions", "ghost"]).1.unwrap_err().code, code::NO_USER);
    assert_eq!(ctl(&stub, &["-p", "nope", "clear_permissions", "alice"]).1.unwrap_err().code, code::DATA);
}

#[test]
fn list_user_permissions() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["--formatter", "tsv", "list_user_permissions", "alice"]);
    result.unwrap();
    assert_eq!(out, "Listing permissions for user \"alice\" ...\nvhost\tconfigure\twrite\tread\n/\t.*\t.*\t^amq\n");
    assert_eq!(stub.requests()[0].path, "/api/users/alice/permissions");
    assert_eq!(ctl(&stub, &["list_user_permissions", "ghost"]).1.unwrap_err().code, code::NO_USER);
}

#[test]
fn topic_permissions() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["set_topic_permissions", "alice", "amq.topic", "^alice\\.", ".*"]);
    result.unwrap();
    assert_eq!(out, "Setting topic permissions on \"amq.topic\" for user \"alice\" in vhost \"/\" ...\n");
    assert_eq!(
        sent(&stub),
        [req(
            "PUT",
            "/api/topic-permissions/%2F/alice",
            json!({"exchange": "amq.topic", "write": "^alice\\.", "read": ".*"})
        )]
    );
    let (_, result) = ctl(&stub, &["set_topic_permissions", "ghost", "amq.topic", ".*", ".*"]);
    assert_eq!(result.unwrap_err().code, code::NO_USER);

    let (out, result) = ctl(&stub, &["-q", "--formatter", "tsv", "list_topic_permissions"]);
    result.unwrap();
    assert_eq!(out, "user\texchange\twrite\tread\nalice\tamq.topic\t^a\t.*\nalice\tlogs\tx\ty\n");
    let (out, _) = ctl(&stub, &["list_topic_permissions"]);
    assert!(out.starts_with("Listing topic permissions for vhost \"/\" ...\n"), "{out}");
}

#[test]
fn clear_topic_permissions_of_one_exchange_puts_the_others_back() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["clear_topic_permissions", "alice"]);
    result.unwrap();
    assert_eq!(out, "Clearing topic permissions for user \"alice\" in vhost \"/\" ...\n");
    assert_eq!(sent(&stub), [delete("/api/topic-permissions/%2F/alice")]);

    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["clear_topic_permissions", "alice", "amq.topic"]);
    result.unwrap();
    assert_eq!(out, "Clearing topic permissions on \"amq.topic\" for user \"alice\" in vhost \"/\" ...\n");
    let path = "/api/topic-permissions/%2F/alice";
    assert_eq!(
        sent(&stub),
        [get(path), delete(path), req("PUT", path, json!({"exchange": "logs", "write": "x", "read": "y"}))]
    );

    let stub = Stub::start(route);
    ctl(&stub, &["clear_topic_permissions", "alice", "amq.direct"]).1.unwrap();
    assert_eq!(sent(&stub), [get(path)], "nothing on that exchange: nothing to do");
    ctl(&stub, &["clear_topic_permissions", "bob"]).1.unwrap();
    assert_eq!(ctl(&stub, &["clear_topic_permissions", "ghost"]).1.unwrap_err().code, code::NO_USER);
}

#[test]
fn set_vhost_limits_replaces_them() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["set_vhost_limits", r#"{"max-connections":64}"#]);
    result.unwrap();
    assert_eq!(out, "Setting vhost limits to \"{\"max-connections\":64}\" for vhost \"/\" ...\n");
    assert_eq!(
        sent(&stub),
        [
            get("/api/vhost-limits/%2F"),
            req("PUT", "/api/vhost-limits/%2F/max-connections", json!({"value": 64})),
            delete("/api/vhost-limits/%2F/max-queues"),
        ]
    );
    let (_, result) = ctl(&stub, &["set_vhost_limits", r#"{"bogus":1}"#]);
    let e = result.unwrap_err();
    assert_eq!(e.code, code::DATA);
    assert!(e.message.contains("Unrecognised terms"), "{e}");
    assert_eq!(stub.requests().len(), 5, "a refused limit deletes nothing");
    for bad in ["{nope", "[1]", "64"] {
        assert_eq!(ctl(&stub, &["set_vhost_limits", bad]).1.unwrap_err().code, code::DATA, "{bad}");
    }
    assert_eq!(stub.requests().len(), 5);
}

#[test]
fn clear_vhost_limits_deletes_each() {
    let stub = Stub::start(route);
    let (out, result) = ctl(&stub, &["clear_vhost_limits"]);
    result.unwrap();
    assert_eq!(out, "Clearing vhost \"/\" limits ...\n");
    assert_eq!(
        sent(&stub),
        [
            get("/api/vhost-limits/%2F"),
            delete("/api/vhost-limits/%2F/max-connections"),
            delete("/api/vhost-limits/%2F/max-queues"),
        ]
    );
    // A broker whose API lacks vhost-limits, and a vhost that does not exist.
    let e = ctl(&stub, &["-p", "v1", "clear_vhost_limits"]).1.unwrap_err();
    assert_eq!(e.code, code::UNAVAILABLE);
    assert!(e.message.ends_with("/vhost-limits/v1 not found; does this broker's management API have it?"), "{e}");
    assert_eq!(ctl(&stub, &["-p", "nope", "set_vhost_limits", "{}"]).1.unwrap_err().code, code::DATA);
}
