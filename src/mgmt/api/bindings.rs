//! `/api/bindings` in all its forms, plus the bindings of one exchange or queue. A binding is
//! named in a path by its `properties_key`: `~` for an empty routing key without arguments,
//! else the percent-encoded routing key, followed by `~<hash>` when it has arguments. Clients
//! take it from a listing; it only has to be stable and unique per (key, arguments).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Value};

use super::{exchange_name, object_name, vhost, vhost_for_change, vhosts_of, AppState};
use crate::auth::access::Resource;
use crate::broker::exchange::{Binding, Destination};
use crate::broker::VHost;
use crate::mgmt::auth::Caller;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{arguments_field, body_object, short_str, str_field, table_to_json};
use crate::mgmt::listing::{self, ListQuery};
use crate::protocol::{FieldTable, ShortStr};

/// What a `Location` header escapes of a destination and a properties key (`~` stays).
const SEGMENT_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// RabbitMQ's quoting of a routing key inside a properties key: bytes outside
/// `[A-Za-z0-9._-]` as `%XX` (upper-case hex), a space as `+` (so `~` is always `%7E`).
fn quote_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The inverse of [`quote_key`], lenient: a plain routing key comes back unchanged.
fn unquote_key(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    out
}

pub fn properties_key(routing_key: &[u8], arguments: &FieldTable) -> String {
    if routing_key.is_empty() && arguments.is_empty() {
        return "~".to_string();
    }
    let key = quote_key(routing_key);
    if arguments.is_empty() {
        return key;
    }
    format!("{key}~{}", arguments_hash(arguments))
}

/// Whether a properties key from a path names this binding. RabbitMQ unquotes the (already
/// percent-decoded) segment once more, so both the quoted key from a listing, quoted again by
/// the client, and a plain routing key quoted once reach the binding.
fn names_binding(segment: &str, routing_key: &[u8], arguments: &FieldTable) -> bool {
    if segment == properties_key(routing_key, arguments) {
        return true;
    }
    match segment.split_once('~') {
        Some((key, hash)) if !arguments.is_empty() => {
            unquote_key(key) == routing_key && hash == arguments_hash(arguments)
        }
        _ => arguments.is_empty() && unquote_key(segment) == routing_key,
    }
}

/// FNV-1a over the arguments' wire encoding: stable across restarts and processes (unlike the
/// process-seeded hashers), and short.
fn arguments_hash(arguments: &FieldTable) -> String {
    let mut buf = bytes::BytesMut::new();
    crate::protocol::wire::put_table(&mut buf, arguments);
    let h = buf.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(h.to_be_bytes())
}

fn binding_json(vhost: &VHost, source: &ShortStr, b: &Binding) -> Value {
    let (destination, kind) = match &b.destination {
        Destination::Queue(q) => (q.name.to_string_lossy(), "queue"),
        Destination::Exchange(x) => (x.name.to_string_lossy(), "exchange"),
    };
    json!({
        "source": source.to_string_lossy(),
        "vhost": vhost.name.to_string_lossy(),
        "destination": destination,
        "destination_type": kind,
        "routing_key": b.routing_key.to_string_lossy(),
        "arguments": table_to_json(&b.arguments),
        "properties_key": properties_key(b.routing_key.as_bytes(), &b.arguments),
    })
}

/// The default exchange's implicit binding to a queue, which RabbitMQ lists too.
fn default_binding_json(vhost: &VHost, queue: &ShortStr) -> Value {
    json!({
        "source": "",
        "vhost": vhost.name.to_string_lossy(),
        "destination": queue.to_string_lossy(),
        "destination_type": "queue",
        "routing_key": queue.to_string_lossy(),
        "arguments": {},
        "properties_key": properties_key(queue.as_bytes(), &FieldTable::new()),
    })
}

/// Every binding of a vhost (the implicit default-exchange ones first, as RabbitMQ lists them).
pub fn vhost_bindings(vhost: &VHost) -> Vec<Value> {
    let mut queues = vhost.queues();
    queues.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut out: Vec<Value> = queues.iter().map(|q| default_binding_json(vhost, &q.name)).collect();
    let mut exchanges = vhost.exchanges();
    exchanges.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    for x in exchanges {
        let mut bindings = x.bindings();
        bindings.sort_by_key(binding_order);
        out.extend(bindings.iter().map(|b| binding_json(vhost, &x.name, b)));
    }
    out
}

/// RabbitMQ lists a source's bindings in the order of its binding records: routing key, then
/// destination (exchanges before queues, then by name); arguments last.
fn binding_order(b: &Binding) -> (Vec<u8>, u8, Vec<u8>, String) {
    let (kind, name) = match &b.destination {
        Destination::Exchange(x) => (0, x.name.as_bytes().to_vec()),
        Destination::Queue(q) => (1, q.name.as_bytes().to_vec()),
    };
    (b.routing_key.as_bytes().to_vec(), kind, name, format!("{:?}", b.arguments))
}

/// Bindings keep their order (RabbitMQ's default sort by vhost and name leaves them as listed).
fn respond(items: Vec<Value>, q: &ListQuery) -> ApiResult<Json<Value>> {
    Ok(Json(listing::respond(items, q)?))
}

pub async fn list_all(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    respond(vhosts_of(&m, None)?.iter().flat_map(|v| vhost_bindings(v)).collect(), &q)
}

pub async fn list_vhost(
    State(m): State<AppState>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    respond(vhost_bindings(&*vhost(&m, &v)?), &q)
}

pub async fn of_source(
    State(m): State<AppState>,
    Path((v, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    let name = exchange_name(&name)?;
    vh.exchange(&name).map_err(|_| ApiError::not_found())?;
    let all = vhost_bindings(&vh);
    respond(all.into_iter().filter(|b| b["source"] == name.to_string_lossy()).collect(), &q)
}

/// The bindings that lead to one queue or exchange of vhost `v` (404 when it does not exist).
fn to_destination(
    m: &crate::mgmt::Mgmt,
    v: &str,
    name: &ShortStr,
    to_queue: bool,
    q: &ListQuery,
) -> ApiResult<Json<Value>> {
    let vh = vhost(m, v)?;
    let exists = if to_queue { vh.queue(name).is_ok() } else { vh.exchange(name).is_ok() };
    if !exists {
        return Err(ApiError::not_found());
    }
    let kind = if to_queue { "queue" } else { "exchange" };
    let all = vhost_bindings(&vh);
    respond(
        all.into_iter()
            .filter(|b| b["destination_type"] == kind && b["destination"] == name.to_string_lossy())
            .collect(),
        q,
    )
}

pub async fn of_exchange_destination(
    State(m): State<AppState>,
    Path((v, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    to_destination(&m, &v, &exchange_name(&name)?, false, &q)
}

pub async fn of_queue(
    State(m): State<AppState>,
    Path((v, name)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    to_destination(&m, &v, &object_name(&name)?, true, &q)
}

/// The two ends of `/bindings/{v}/e/{source}/{q|e}/{destination}`.
struct Ends {
    vhost: Arc<VHost>,
    source: ShortStr,
    destination: Destination,
}

/// A missing end: RabbitMQ's `not_found` with the AMQP text (`no queue 'q' in vhost '/'`).
fn missing(e: crate::protocol::AmqpError) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", e.message.into_owned())
}

fn ends(vh: Arc<VHost>, source: &str, kind: &str, destination: &str) -> ApiResult<Ends> {
    let source = exchange_name(source)?;
    vh.exchange(&source).map_err(missing)?;
    let destination = match kind {
        "q" => Destination::Queue(vh.queue(&object_name(destination)?).map_err(missing)?),
        "e" => Destination::Exchange(vh.exchange(&exchange_name(destination)?).map_err(missing)?),
        _ => return Err(ApiError::not_found()),
    };
    Ok(Ends { vhost: vh, source, destination })
}

fn between_ends(e: &Ends) -> Vec<Value> {
    let Ok(x) = e.vhost.exchange(&e.source) else { return Vec::new() };
    let mut bindings: Vec<Binding> = x.bindings().into_iter().filter(|b| b.destination == e.destination).collect();
    bindings.sort_by_key(binding_order);
    bindings.iter().map(|b| binding_json(&e.vhost, &x.name, b)).collect()
}

pub async fn between(
    State(m): State<AppState>,
    Path((v, source, kind, destination)): Path<(String, String, String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    // Between objects that do not exist there are no bindings: `[]`, as RabbitMQ answers.
    match ends(vhost(&m, &v)?, &source, &kind, &destination) {
        Ok(e) => respond(between_ends(&e), &q),
        Err(_) => respond(Vec::new(), &q),
    }
}

/// POST: 201 with a `Location` relative to the request (`<destination>/<properties_key>`).
/// A binding's permissions: write on its destination, read on its source.
fn allow_binding(m: &crate::mgmt::Mgmt, caller: &Caller, e: &Ends) -> ApiResult<()> {
    let (kind, name) = match &e.destination {
        Destination::Queue(q) => (Resource::Queue, q.name.as_bytes()),
        Destination::Exchange(x) => (Resource::Exchange, x.name.as_bytes()),
    };
    caller.check(m, &e.vhost.name, |a| a.check_binding(kind, name, e.source.as_bytes()))
}

pub async fn create(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, source, kind, destination)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let vh = vhost_for_change(&m, &v)?;
    let body = body_object(&body)?;
    let e = ends(vh, &source, &kind, &destination)?;
    allow_binding(&m, &caller, &e)?;
    let routing_key = short_str(str_field(&body, "routing_key")?.unwrap_or(""))?;
    let arguments = arguments_field(&body)?;
    let props = properties_key(routing_key.as_bytes(), &arguments);
    e.vhost.bind(&e.source, e.destination.clone(), routing_key, arguments)?;
    let location = format!(
        "{}/{}",
        utf8_percent_encode(&destination, SEGMENT_ESCAPE),
        utf8_percent_encode(&props, SEGMENT_ESCAPE)
    );
    let mut response = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

fn find(e: &Ends, props: &str) -> ApiResult<Binding> {
    let x = e.vhost.exchange(&e.source).map_err(|_| ApiError::not_found())?;
    x.bindings()
        .into_iter()
        .find(|b| b.destination == e.destination && names_binding(props, b.routing_key.as_bytes(), &b.arguments))
        .ok_or_else(ApiError::not_found)
}

pub async fn show(
    State(m): State<AppState>,
    Path((v, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let e = ends(vhost(&m, &v)?, &source, &kind, &destination)?;
    let b = find(&e, &props)?;
    Ok(Json(binding_json(&e.vhost, &e.source, &b)))
}

pub async fn delete(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let e = ends(vhost(&m, &v)?, &source, &kind, &destination)?;
    allow_binding(&m, &caller, &e)?;
    let b = find(&e, &props)?;
    e.vhost.unbind(&e.source, b.destination, b.routing_key, b.arguments)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldValue;

    #[test]
    fn properties_keys_as_rabbitmq_shapes_them() {
        assert_eq!(properties_key(b"", &FieldTable::new()), "~");
        assert_eq!(properties_key(b"a.b", &FieldTable::new()), "a.b");
        assert_eq!(
            properties_key("a#b~c d.e-f_g*h/i%j+ké".as_bytes(), &FieldTable::new()),
            "a%23b%7Ec+d.e-f_g%2Ah%2Fi%25j%2Bk%C3%A9"
        );
        assert!(names_binding("x.%2A", b"x.*", &FieldTable::new()));
        assert!(names_binding("x.*", b"x.*", &FieldTable::new()));
        assert!(names_binding("~", b"", &FieldTable::new()));
        assert!(!names_binding("y", b"x", &FieldTable::new()));
        let mut args = FieldTable::new();
        args.insert(ShortStr::from_static("x"), FieldValue::I64(1));
        let with = properties_key(b"k", &args);
        assert!(with.starts_with("k~") && with.len() > 3);
        assert!(names_binding(&with, b"k", &args));
        assert!(!names_binding("k", b"k", &args));
        assert_eq!(with, properties_key(b"k", &args), "stable");
    }
}
