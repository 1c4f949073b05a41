//! The HTTP side: where the management API is, how a path is spelled, and what its answers mean.
//! Blocking and one request at a time: a command makes at most a handful of calls.

use std::time::Duration;

use base64::Engine as _;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use ureq::http;

use super::error::{code, CtlError};

/// Everything but RFC 3986's unreserved characters is encoded, `/` included: a vhost or object
/// name is ONE path segment (`/` → `%2F`), exactly as RabbitMQ's API expects.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Largest answer read (the definitions of a big broker are the largest); ureq's own default,
/// 10 MiB, is too small for those.
const MAX_BODY: u64 = 512 * 1024 * 1024;

/// Joins path segments under the API root, each percent-encoded on its own.
pub fn api_path(segments: &[&str]) -> String {
    let mut path = String::new();
    for segment in segments {
        path.push('/');
        path.extend(utf8_percent_encode(segment, SEGMENT));
    }
    path
}

/// Where the API is and who asks: the base URL (always ending in `/api`, no credentials in it)
/// and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub base: String,
    pub username: String,
    pub password: String,
}

impl Endpoint {
    /// `uri` (the full base URL, possibly with `user:password@`) wins over `host`/`port`; the
    /// explicit `username`/`password` win over the URL's; guest/guest otherwise, as RabbitMQ's.
    pub fn resolve(
        uri: Option<&str>,
        host: &str,
        port: u16,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Endpoint, CtlError> {
        // An empty WARREN_MGMT_URL (`WARREN_MGMT_URL= warren ctl ...`) means unset.
        let (base, url_user, url_password) = match uri.filter(|u| !u.trim().is_empty()) {
            Some(uri) => parse_base_url(uri)?,
            None => {
                // An IPv6 literal needs brackets in a URL.
                let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.into() };
                (format!("http://{host}:{port}/api"), None, None)
            }
        };
        Ok(Endpoint {
            base,
            username: username.map(str::to_string).or(url_user).unwrap_or_else(|| "guest".into()),
            password: password.map(str::to_string).or(url_password).unwrap_or_else(|| "guest".into()),
        })
    }
}

/// Splits `http://[user[:password]@]host[:port][/prefix]` into the API base (`…/prefix/api`;
/// `/api` is appended unless the path already ends with it) and the URL's credentials.
fn parse_base_url(uri: &str) -> Result<(String, Option<String>, Option<String>), CtlError> {
    let bad = |why: &str| CtlError::usage(format!("invalid management URL {uri:?}: {why}"));
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(bad("expected http://host:port"));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(bad("https is not supported; warren ctl speaks plain HTTP (put a local TLS proxy in front)"));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(bad("the scheme must be http"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad("a base URL takes no query or fragment"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if hostport.is_empty() {
        return Err(bad("no host"));
    }
    let decode = |s: &str| {
        percent_decode_str(s).decode_utf8().map(|c| c.into_owned()).map_err(|_| bad("credentials are not UTF-8"))
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (Some(decode(u)?), Some(decode(p)?)),
            None => (Some(decode(info)?), None),
        },
    };
    let path = path.trim_end_matches('/');
    let base = if path.ends_with("/api") {
        format!("http://{hostport}{path}")
    } else {
        format!("http://{hostport}{path}/api")
    };
    Ok((base, user, password))
}

/// An answer of the API other than 2xx, as RabbitMQ words it: `{"error": .., "reason": ..}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub reason: String,
    pub username: String,
}

/// A request that failed: either the API said no (the caller may want to look at why, e.g. a
/// 404), or there was no usable answer at all (already worded for the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    Api(ApiError),
    Transport(CtlError),
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> CtlError {
        match e {
            ClientError::Transport(e) => e,
            ClientError::Api(api) => api.into(),
        }
    }
}

impl From<ApiError> for CtlError {
    fn from(e: ApiError) -> CtlError {
        let reason = if e.reason.is_empty() { e.error.clone() } else { e.reason.clone() };
        match e.status {
            401 => CtlError::new(
                code::NO_PERM,
                format!(
                    "authentication failed for user '{}': {reason} (HTTP 401; set --username and --password, \
                     or WARREN_MGMT_USERNAME and WARREN_MGMT_PASSWORD)",
                    e.username
                ),
            ),
            403 => CtlError::new(code::NO_PERM, format!("user '{}' is not allowed to do this: {reason}", e.username)),
            404 => CtlError::new(code::UNAVAILABLE, format!("not found: {reason}")),
            503 => CtlError::new(code::UNAVAILABLE, format!("the broker is unavailable: {reason}")),
            500..=599 => CtlError::new(code::SOFTWARE, format!("the API failed (HTTP {}): {reason}", e.status)),
            _ => CtlError::data(reason),
        }
    }
}

/// The management API, for one user.
pub struct Client {
    endpoint: Endpoint,
    agent: ureq::Agent,
    authorization: String,
    /// None: wait as long as it takes.
    timeout: Option<Duration>,
}

impl Client {
    pub fn new(endpoint: Endpoint, timeout: Option<Duration>) -> Client {
        let config = ureq::Agent::config_builder()
            // 4xx/5xx bodies carry the API's reason; they must come back as answers, not errors.
            .http_status_as_error(false)
            .timeout_global(timeout)
            .build();
        let credentials = format!("{}:{}", endpoint.username, endpoint.password);
        let authorization = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials));
        Client { endpoint, agent: config.into(), authorization, timeout }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The same API and time limit, as another user (`authenticate_user`).
    pub fn as_user(&self, username: &str, password: &str) -> Client {
        let endpoint = Endpoint { username: username.into(), password: password.into(), ..self.endpoint.clone() };
        Client::new(endpoint, self.timeout)
    }

    pub fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let body = self.get_text(path)?;
        serde_json::from_str(&body).map_err(|e| self.not_json(path, &e))
    }

    /// The answer's body as the API sent it (export keeps the broker's own spelling).
    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        self.send(http::Method::GET, path, None, &[])
    }

    pub fn put_json(&self, path: &str, body: &Value) -> Result<(), ClientError> {
        self.send(http::Method::PUT, path, Some(body.to_string()), &[]).map(drop)
    }

    pub fn post_json_text(&self, path: &str, body: String) -> Result<(), ClientError> {
        self.send(http::Method::POST, path, Some(body), &[]).map(drop)
    }

    pub fn delete(&self, path: &str, headers: &[(&str, &str)]) -> Result<(), ClientError> {
        self.send(http::Method::DELETE, path, None, headers).map(drop)
    }

    fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.endpoint.base);
        // No `accept: application/json`: RabbitMQ answers 406 to it on some DELETEs (a queue's
        // contents), so ureq's `*/*` stays.
        let mut request =
            http::Request::builder().method(method).uri(&url).header("authorization", &self.authorization);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sent = match body {
            Some(body) => request.header("content-type", "application/json").body(body).map(|r| self.agent.run(r)),
            None => request.body(()).map(|r| self.agent.run(r)),
        };
        let mut response = sent
            .map_err(|e| ClientError::Transport(CtlError::usage(format!("cannot build a request for {url}: {e}"))))?
            .map_err(|e| ClientError::Transport(self.transport_error(e)))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| ClientError::Transport(self.transport_error(e)))?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(ClientError::Api(api_error(status, &text, &self.endpoint.username)))
        }
    }

    fn transport_error(&self, e: ureq::Error) -> CtlError {
        let base = &self.endpoint.base;
        match e {
            ureq::Error::Timeout(_) => {
                let within = self.timeout.map(|t| format!(" within {} s", t.as_secs_f64())).unwrap_or_default();
                CtlError::new(code::TEMP_FAIL, format!("no answer from {base}{within}"))
            }
            ureq::Error::Protocol(e) => CtlError::new(
                code::SOFTWARE,
                format!(
                    "{base} did not answer in HTTP ({e}); is that the AMQP port? The management API listens on \
                     15672 by default"
                ),
            ),
            ureq::Error::HostNotFound => CtlError::new(code::UNAVAILABLE, format!("cannot resolve the host of {base}")),
            e => CtlError::new(
                code::UNAVAILABLE,
                format!("cannot reach the management API at {base}: {e}; is the broker running with its API enabled?"),
            ),
        }
    }

    fn not_json(&self, path: &str, e: &serde_json::Error) -> ClientError {
        ClientError::Transport(CtlError::new(
            code::SOFTWARE,
            format!("{}{path} did not answer JSON ({e}); is this RabbitMQ's management API?", self.endpoint.base),
        ))
    }
}

/// Reads `{"error": .., "reason": ..}`; the reason is a string or any JSON (RabbitMQ sends e.g.
/// `["no_such_vhost","x"]`), HTML-escaped by RabbitMQ. A body that is not that JSON is the
/// reason itself (a proxy's page, say), cut short.
fn api_error(status: u16, body: &str, username: &str) -> ApiError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |name: &str| match parsed.as_ref().and_then(|v| v.get(name)) {
        Some(Value::String(s)) => unescape_html(s).trim().to_string(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let (error, mut reason) = (field("error"), field("reason"));
    if parsed.is_none() {
        reason = body.trim().chars().take(200).collect();
    }
    if reason.is_empty() && error.is_empty() {
        reason = format!("HTTP {status}");
    }
    ApiError { status, error, reason, username: username.to_string() }
}

fn unescape_html(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::stub::{Reply, Stub};

    #[test]
    fn a_vhost_is_one_path_segment() {
        assert_eq!(api_path(&["queues", "/", "orders"]), "/queues/%2F/orders");
        assert_eq!(api_path(&["queues", "a/b c", "q#1?x"]), "/queues/a%2Fb%20c/q%231%3Fx");
        assert_eq!(api_path(&["policies", "ünï", "p-1_.~"]), "/policies/%C3%BCn%C3%AF/p-1_.~");
        assert_eq!(api_path(&["exchanges", "/", ""]), "/exchanges/%2F/");
    }

    #[test]
    fn host_and_port_make_the_base_url() {
        let e = Endpoint::resolve(None, "127.0.0.1", 15672, None, None).unwrap();
        assert_eq!(e.base, "http://127.0.0.1:15672/api");
        assert_eq!((e.username.as_str(), e.password.as_str()), ("guest", "guest"));
        let e = Endpoint::resolve(None, "::1", 15680, Some("admin"), Some("pw")).unwrap();
        assert_eq!(e.base, "http://[::1]:15680/api");
        assert_eq!((e.username.as_str(), e.password.as_str()), ("admin", "pw"));
    }

    #[test]
    fn a_uri_wins_and_may_carry_credentials() {
        let e = Endpoint::resolve(Some("http://bob:s%40cret@mq.local:15680"), "ignored", 1, None, None).unwrap();
        assert_eq!(e.base, "http://mq.local:15680/api");
        assert_eq!((e.username.as_str(), e.password.as_str()), ("bob", "s@cret"));
        let e = Endpoint::resolve(Some("http://bob:x@h:1/api/"), "", 0, Some("alice"), None).unwrap();
        assert_eq!(e.base, "http://h:1/api");
        assert_eq!((e.username.as_str(), e.password.as_str()), ("alice", "x"));
        let e = Endpoint::resolve(Some("HTTP://h/rabbitmq"), "", 0, None, None).unwrap();
        assert_eq!(e.base, "http://h/rabbitmq/api");
        let e = Endpoint::resolve(Some(""), "h", 2, None, None).unwrap();
        assert_eq!(e.base, "http://h:2/api");
    }

    #[test]
    fn unusable_uris_are_usage_errors() {
        for uri in ["https://h:15671", "amqp://h:5672", "h:15672", "http://", "http://h/?x=1"] {
            let e = Endpoint::resolve(Some(uri), "", 0, None, None).unwrap_err();
            assert_eq!(e.code, code::USAGE, "{uri}: {e}");
        }
    }

    #[test]
    fn api_errors_keep_rabbitmqs_reason() {
        let e = api_error(
            400,
            r#"{"error":"bad_request","reason":"Validation failed\n\n[{&lt;&lt;\"x\"&gt;&gt;,1}] are not recognised policy settings\n"}"#,
            "guest",
        );
        assert_eq!(e.reason, "Validation failed\n\n[{<<\"x\">>,1}] are not recognised policy settings");
        let e = api_error(400, r#"{"error":"bad_request","reason":["no_such_vhost","v"]}"#, "guest");
        assert_eq!(e.reason, r#"["no_such_vhost","v"]"#);
        let e = api_error(502, "<html>Bad Gateway</html>", "guest");
        assert_eq!(e.reason, "<html>Bad Gateway</html>");
        let e = api_error(401, "", "guest");
        assert_eq!(e.reason, "HTTP 401");
    }

    #[test]
    fn statuses_map_to_rabbitmqctl_exit_codes() {
        let ctl = |status| CtlError::from(api_error(status, r#"{"error":"e","reason":"r"}"#, "guest"));
        assert_eq!(ctl(400).code, code::DATA);
        assert_eq!(ctl(400).message, "r");
        assert_eq!(ctl(401).code, code::NO_PERM);
        assert!(ctl(401).message.starts_with("authentication failed for user 'guest': r"));
        assert_eq!(ctl(403).code, code::NO_PERM);
        assert_eq!(ctl(404).code, code::UNAVAILABLE);
        assert_eq!(ctl(409).code, code::DATA);
        assert_eq!(ctl(500).code, code::SOFTWARE);
        assert_eq!(ctl(503).code, code::UNAVAILABLE);
    }

    #[test]
    fn requests_carry_basic_auth_and_read_error_bodies() {
        let stub = Stub::start(|req| match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/queues/%2F") => Reply::json(200, "[]"),
            ("PUT", "/api/policies/%2F/p") => Reply::json(201, ""),
            _ => Reply::json(404, r#"{"error":"Object Not Found","reason":"Not Found"}"#),
        });
        let endpoint = Endpoint::resolve(Some(&stub.url()), "", 0, Some("u"), Some("p")).unwrap();
        let client = Client::new(endpoint, Some(Duration::from_secs(5)));
        assert_eq!(client.get_json(&api_path(&["queues", "/"])).unwrap(), serde_json::json!([]));
        client.put_json("/policies/%2F/p", &serde_json::json!({"pattern": "^a"})).unwrap();
        match client.delete("/queues/%2F/nope", &[("x-reason", "bye")]) {
            Err(ClientError::Api(e)) => assert_eq!((e.status, e.reason.as_str()), (404, "Not Found")),
            other => panic!("{other:?}"),
        }
        let seen = stub.requests();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].header("authorization"), Some("Basic dTpw"));
        assert_eq!(seen[1].header("content-type"), Some("application/json"));
        assert_eq!(seen[1].body, r#"{"pattern":"^a"}"#);
        assert_eq!(seen[2].header("x-reason"), Some("bye"));
    }

    #[test]
    fn transport_failures_are_worded_and_coded() {
        // A port nothing listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let endpoint = Endpoint::resolve(None, "127.0.0.1", port, None, None).unwrap();
        let e = CtlError::from(Client::new(endpoint, Some(Duration::from_secs(5))).get_json("/overview").unwrap_err());
        assert_eq!(e.code, code::UNAVAILABLE, "{e}");
        assert!(e.message.contains("cannot reach the management API"), "{e}");

        let stub = Stub::start(|_| Reply::raw("AMQP\0\0\x09\x01"));
        let endpoint = Endpoint::resolve(Some(&stub.url()), "", 0, None, None).unwrap();
        let e = CtlError::from(Client::new(endpoint, Some(Duration::from_secs(5))).get_json("/overview").unwrap_err());
        assert_eq!(e.code, code::SOFTWARE, "{e}");

        let stub = Stub::start(|_| Reply::json(200, "<html>"));
        let endpoint = Endpoint::resolve(Some(&stub.url()), "", 0, None, None).unwrap();
        let e = CtlError::from(Client::new(endpoint, Some(Duration::from_secs(5))).get_json("/overview").unwrap_err());
        assert_eq!(e.code, code::SOFTWARE, "{e}");
        assert!(e.message.contains("did not answer JSON"), "{e}");

        let stub = Stub::start(|_| Reply::Silence(Duration::from_secs(3)));
        let endpoint = Endpoint::resolve(Some(&stub.url()), "", 0, None, None).unwrap();
        let e =
            CtlError::from(Client::new(endpoint, Some(Duration::from_millis(300))).get_json("/overview").unwrap_err());
        assert_eq!(e.code, code::TEMP_FAIL, "{e}");
    }
}
