//! The node as a whole: `/api/overview`, `whoami`, `nodes`, `cluster-name`, `extensions`,
//! `aliveness-test` and the `health/checks` monitoring systems call.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::{vhost, AppState};
use crate::broker::definitions::QueueSpec;
use crate::broker::message::Message;
use crate::broker::publish::Publish;
use crate::broker::timer::now_ms;
use crate::metrics::process;
use crate::mgmt::auth::Caller;
use crate::mgmt::error::ApiResult;
use crate::mgmt::listing;
use crate::mgmt::Mgmt;
use crate::protocol::{BasicProperties, ShortStr};

/// The RabbitMQ version Warren answers as: the API it mirrors (tags as lists, `/api/queues/detailed`).
pub const RABBITMQ_COMPAT_VERSION: &str = "3.13.7";
pub const PRODUCT_NAME: &str = "Warren";
pub const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");

const EXCHANGE_TYPES: [(&str, &str); 7] = [
    ("direct", "AMQP direct exchange, as per the AMQP specification"),
    ("fanout", "AMQP fanout exchange, as per the AMQP specification"),
    ("headers", "AMQP headers exchange, as per the AMQP specification"),
    ("topic", "AMQP topic exchange, as per the AMQP specification"),
    ("x-consistent-hash", "Consistent Hashing Exchange"),
    ("x-delayed-message", "Delayed Message Exchange (the rabbitmq-delayed-message-exchange plugin's)"),
    ("x-message-deduplication", "Message Deduplication Exchange (the rabbitmq-message-deduplication plugin's)"),
];

/// The node's cluster name: the node name, as RabbitMQ defaults it.
fn cluster_name_of(m: &Mgmt) -> String {
    m.node.clone()
}

pub async fn overview(State(m): State<AppState>, Query(c): Query<listing::Columns>) -> ApiResult<Json<Value>> {
    let (mut ready, mut unacked, mut queues, mut exchanges, mut consumers) = (0u64, 0u64, 0usize, 0usize, 0usize);
    let mut counters = crate::broker::queue::Counters::default();
    for v in m.broker.vhosts() {
        exchanges += v.exchanges().len();
        for q in v.queues() {
            let info = q.info();
            queues += 1;
            ready += info.ready;
            unacked += info.unacked;
            consumers += info.consumers.len();
            counters = counters + info.counters;
        }
    }
    let connections = m.broker.connections();
    let channels = connections.channels().len();
    let listeners: Vec<Value> = m
        .listeners
        .iter()
        .map(|l| {
            json!({"node": m.node, "protocol": l.protocol, "ip_address": l.addr.ip().to_string(),
                   "port": l.addr.port(), "socket_opts": {}})
        })
        .collect();
    let exchange_types: Vec<Value> = EXCHANGE_TYPES
        .iter()
        .map(|(name, description)| json!({"name": name, "description": description, "enabled": true}))
        .collect();
    let o = json!({
        "management_version": RABBITMQ_COMPAT_VERSION,
        "rabbitmq_version": RABBITMQ_COMPAT_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": PRODUCT_VERSION,
        "erlang_version": "none (Warren is written in Rust)",
        "erlang_full_version": "none",
        "rates_mode": "basic",
        "disable_stats": false,
        "enable_queue_totals": true,
        "cluster_name": cluster_name_of(&m),
        "node": m.node,
        "exchange_types": exchange_types,
        "listeners": listeners,
        "contexts": [{"node": m.node, "description": "RabbitMQ Management", "path": "/",
                       "port": m.listeners.iter().find(|l| l.protocol == "http").map(|l| l.addr.port())}],
        "queue_totals": {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked},
        "object_totals": {"connections": connections.len(), "channels": channels, "exchanges": exchanges,
                           "queues": queues, "consumers": consumers},
        "message_stats": m.rates.total_stats(counters),
        "statistics_db_event_queue": 0,
    });
    Ok(Json(listing::select(o, c.columns.as_deref())))
}

pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({"name": caller.name, "tags": caller.tags}))
}

pub async fn extensions() -> Json<Value> {
    Json(json!([]))
}

pub async fn cluster_name(State(m): State<AppState>) -> Json<Value> {
    Json(json!({"name": cluster_name_of(&m)}))
}

fn node_json(m: &Mgmt) -> Value {
    let alarms = m.broker.alarms.current();
    let (disk_free, disk_free_limit) = m.broker.disk_free().unwrap_or((0, 0));
    let fds = process::open_fds().unwrap_or(0);
    let fd_limit = process::max_fds().unwrap_or(0);
    let (mem_used, mem_limit) = m.broker.memory();
    json!({
        "name": m.node,
        "type": "disc",
        "running": true,
        "os_pid": std::process::id().to_string(),
        "uptime": m.started.elapsed().as_millis() as u64,
        "mem_used": mem_used,
        "mem_limit": mem_limit,
        "mem_alarm": alarms.memory,
        "disk_free": disk_free,
        "disk_free_limit": disk_free_limit,
        "disk_free_alarm": alarms.disk(),
        "fd_used": fds,
        "fd_total": fd_limit,
        "sockets_used": m.broker.connection_count(),
        "sockets_total": fd_limit,
        "proc_used": 0,
        "proc_total": 0,
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "run_queue": 0,
        "partitions": [],
        "being_drained": false,
    })
}

pub async fn nodes(State(m): State<AppState>, Query(q): Query<listing::ListQuery>) -> ApiResult<Json<Value>> {
    Ok(Json(listing::respond(vec![node_json(&m)], &q)?))
}

pub async fn node(State(m): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    if name != m.node {
        return Err(crate::mgmt::error::ApiError::not_found());
    }
    Ok(Json(node_json(&m)))
}

fn failed(reason: impl Into<String>, extra: Value) -> Response {
    let mut body = json!({"status": "failed", "reason": reason.into()});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

fn ok() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Declares `aliveness-test`, publishes to it and gets the message back, as RabbitMQ's does.
pub async fn aliveness_test(State(m): State<AppState>, Path(v): Path<String>) -> ApiResult<Response> {
    let vh = vhost(&m, &v)?;
    let name = ShortStr::from_static("aliveness-test");
    let spec = QueueSpec {
        name: name.clone(),
        server_named: false,
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: Default::default(),
    };
    let (q, _) = match vh.declare_queue(spec, false, 0) {
        Ok(q) => q,
        Err(e) => return Ok(failed(e.message.into_owned(), json!({}))),
    };
    let default = vh.exchange(&ShortStr::from_static(""))?;
    let message = Message {
        exchange: ShortStr::from_static(""),
        routing_key: name,
        properties: Box::new(BasicProperties::default()),
        body: bytes::Bytes::from_static(b"test_message"),
        timestamp_ms: now_ms(),
    };
    vh.publish(&default, &Publish::new(Arc::new(message)));
    match q.get() {
        Some((got, _)) => {
            q.forget(&got);
            Ok(ok())
        }
        None => Ok(failed("aliveness test failed: the message did not arrive", json!({}))),
    }
}

pub async fn check_alarms(State(m): State<AppState>) -> Response {
    let alarms = m.broker.alarms.current();
    if !alarms.any() {
        return ok();
    }
    let resources = [(alarms.memory, "memory"), (alarms.disk(), "disk")];
    let alarm: Vec<Value> =
        resources.iter().filter(|(on, _)| *on).map(|(_, r)| json!({"node": m.node, "resource": r})).collect();
    failed("resource alarm(s) in effect", json!({"alarms": alarm}))
}

pub async fn check_ok() -> Response {
    ok()
}

/// Quorum and mirror-sync criticality: nothing to lose on a single node.
pub async fn check_single_node() -> Response {
    Json(json!({"status": "ok", "reason": "single node cluster"})).into_response()
}

pub async fn check_port_listener(State(m): State<AppState>, Path(port): Path<String>) -> Response {
    let Ok(port) = port.parse::<u16>() else {
        return crate::mgmt::error::ApiError::bad_request("Invalid port").into_response();
    };
    let ports: Vec<u16> = m.listeners.iter().map(|l| l.addr.port()).collect();
    if ports.contains(&port) {
        return Json(json!({"status": "ok", "port": port})).into_response();
    }
    failed("No active listener", json!({"missing": port, "ports": ports}))
}

pub async fn check_protocol_listener(State(m): State<AppState>, Path(protocol): Path<String>) -> Response {
    let wanted = match protocol.as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" | "amqp" => "amqp",
        "http" | "management" => "http",
        other => other,
    };
    let protocols: Vec<&str> = m.listeners.iter().map(|l| l.protocol).collect();
    if protocols.contains(&wanted) {
        return Json(json!({"status": "ok", "protocol": protocol})).into_response();
    }
    failed("No active listener", json!({"missing": protocol, "protocols": protocols}))
}
