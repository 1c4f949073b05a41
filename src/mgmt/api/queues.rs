//! `/api/queues`: list, show, declare (PUT), delete (`if-empty`, `if-unused`), purge
//! (`contents`), actions. Getting and peeking at messages is in `messages.rs`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::connections::consumer_json;
use super::{object_name, vhost, vhost_for_change, AppState};
use crate::auth::access::{Perm, Resource};
use crate::broker::definitions::QueueSpec;
use crate::broker::queue::{Queue, QueueInfo};
use crate::broker::stream::StreamInfo;
use crate::broker::timer::now_ms;
use crate::broker::VHost;
use crate::mgmt::auth::Caller;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{arguments_field, body_object, bool_field, short_str, str_field, table_to_json};
use crate::mgmt::listing::{self, is_true, ListQuery};
use crate::mgmt::time::rfc3339_ms;
use crate::mgmt::Mgmt;

/// A queue as RabbitMQ's API shows it, with Warren's additions: `head_message_age_seconds`
/// (how long the head has waited, from when Warren took it) beside RabbitMQ's
/// `head_message_timestamp` (its `timestamp` property).
pub fn queue_json(mgmt: &Mgmt, vhost: &VHost, q: &Queue) -> Value {
    queue_json_of(mgmt, vhost, q, &q.info())
}

/// [`queue_json`] from a snapshot the caller already took (one lock, not two).
fn queue_json_of(mgmt: &Mgmt, vhost: &VHost, q: &Queue, info: &QueueInfo) -> Value {
    let policy = q.policy_view();
    let now = now_ms();
    let mut o = json!({
        "name": q.name.to_string_lossy(),
        "vhost": vhost.name.to_string_lossy(),
        "type": if q.is_stream() { "stream" } else { "classic" },
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": table_to_json(&q.arguments),
        "node": mgmt.node,
        "state": "running",
        "policy": policy.policy,
        "operator_policy": policy.operator_policy,
        "effective_policy_definition": policy.definition,
        "consumers": info.consumers.len(),
        "exclusive_consumer_tag": info.consumers.iter().find(|c| c.exclusive).map(|c| c.tag.to_string_lossy()),
        "single_active_consumer_tag": info.active_consumer.as_ref().map(|t| t.to_string_lossy()),
        "messages": info.ready + info.unacked,
        "messages_ready": info.ready,
        "messages_unacknowledged": info.unacked,
        "messages_ram": info.resident,
        "messages_ready_ram": info.resident,
        "messages_paged_out": info.ready - info.resident,
        "message_bytes": info.ready_bytes,
        "message_bytes_ready": info.ready_bytes,
    });
    let Value::Object(m) = &mut o else { return o };
    m.insert("message_stats".into(), mgmt.rates.queue_stats(&vhost.name, &q.name, info.counters));
    // RabbitMQ's utilisation is a time average of "consumers could take more"; Warren gives the
    // instant value: 1 while consumers keep the queue empty, else 0.
    let utilisation = if !info.consumers.is_empty() && info.ready == 0 { 1.0 } else { 0.0 };
    m.insert("consumer_utilisation".into(), json!(utilisation));
    m.insert("consumer_capacity".into(), json!(utilisation));
    // Bodies held in memory, estimated from the resident share of the ready bytes.
    let memory = (info.ready_bytes * info.resident).checked_div(info.ready).unwrap_or(0);
    m.insert("memory".into(), json!(memory));
    if info.consumers.is_empty() {
        m.insert("idle_since".into(), Value::String(rfc3339_ms(info.last_used_ms)));
    }
    if let Some(ts) = info.head_timestamp {
        m.insert("head_message_timestamp".into(), ts.into());
    }
    if let Some(arrived) = info.head_arrived_ms {
        m.insert("head_message_age_seconds".into(), (now.saturating_sub(arrived) / 1000).into());
    }
    if let (Some(stream), Some(s)) = (&info.stream, q.stream()) {
        m.insert("stream".into(), stream_json(stream, s.disk_size()));
    }
    o
}

/// Warren's view of a stream: where it starts and ends, its size, and how far behind the tail
/// each consumer is (the lag a Kafka user watches).
fn stream_json(info: &StreamInfo, disk_size: u64) -> Value {
    let consumers: Vec<Value> = info
        .consumers
        .iter()
        .map(|c| json!({"consumer_tag": c.tag.to_string_lossy(), "next_offset": c.next_offset, "offset_lag": c.lag}))
        .collect();
    json!({
        "first_offset": info.first_offset,
        "last_offset": info.last_offset,
        "committed_offset": info.committed_offset,
        "segments": info.segments,
        "bytes": info.bytes,
        "disk_size": disk_size,
        "consumers": consumers,
    })
}

fn list(mgmt: &Mgmt, only: Option<&str>, q: &ListQuery) -> ApiResult<Response> {
    super::list_objects(mgmt, only, q, VHost::queues, |queue| &queue.name, |v, queue| queue_json(mgmt, v, queue))
}

pub async fn list_all(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Response> {
    list(&m, None, &q)
}

pub async fn list_vhost(
    State(m): State<AppState>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    list(&m, Some(&v), &q)
}

pub async fn show(
    State(m): State<AppState>,
    Path((v, name)): Path<(String, String)>,
    Query(c): Query<listing::Columns>,
) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    let q = vh.queue(&object_name(&name)?).map_err(|_| ApiError::not_found())?;
    let info = q.info();
    let mut o = queue_json_of(&m, &vh, &q, &info);
    let channels = super::connections::channel_index(&m);
    let details: Vec<Value> =
        info.consumers.iter().map(|c| consumer_json(&m, &channels, &vh.name, &q.name, c)).collect();
    if let Value::Object(map) = &mut o {
        map.insert("consumer_details".into(), Value::Array(details));
        // Per-channel rate breakdowns, which Warren does not keep: present and empty.
        map.insert("incoming".into(), json!([]));
        map.insert("deliveries".into(), json!([]));
    }
    Ok(Json(listing::select(o, c.columns.as_deref())))
}

pub async fn declare(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vh = vhost_for_change(&m, &v)?;
    let body = body_object(&body)?;
    let name = object_name(&name)?;
    if name.is_empty() {
        return Err(ApiError::bad_request("queue name must not be empty"));
    }
    let mut arguments = arguments_field(&body)?;
    caller.check(&m, &vh.name, |a| a.check_queue_declare(name.as_bytes(), &arguments))?;
    // rabbitmqadmin's `queue_type=` (RabbitMQ moves it into the arguments too).
    if let Some(t) = str_field(&body, "type")?.or(str_field(&body, "queue_type")?) {
        arguments.insert(short_str("x-queue-type")?, crate::protocol::FieldValue::from(t));
    }
    let spec = QueueSpec {
        name,
        server_named: false,
        durable: bool_field(&body, "durable", false)?,
        exclusive_owner: None,
        auto_delete: bool_field(&body, "auto_delete", false)?,
        arguments,
    };
    let (_, created) = vh.declare_queue(spec, false, 0)?;
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
    #[serde(rename = "if-empty")]
    if_empty: Option<String>,
}

pub async fn delete(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
    Query(dq): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let vh = vhost(&m, &v)?;
    let q = vh.queue(&object_name(&name)?).map_err(|_| ApiError::not_found())?;
    caller.allow(&m, &vh.name, Perm::Configure, Resource::Queue, q.name.as_bytes())?;
    // An operator may delete an exclusive queue: act as its owner.
    let owner = q.exclusive_owner.unwrap_or(0);
    vh.delete_queue(&q.name, is_true(dq.if_unused.as_deref()), is_true(dq.if_empty.as_deref()), owner)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let vh = vhost(&m, &v)?;
    let q = vh.queue(&object_name(&name)?).map_err(|_| ApiError::not_found())?;
    caller.allow(&m, &vh.name, Perm::Read, Resource::Queue, q.name.as_bytes())?;
    if q.is_stream() {
        // RabbitMQ's reply: 400 with the AMQP refusal's text.
        let refused = crate::broker::stream::errors::unsupported("queue.purge", &q.name, &vh.name);
        return Err(ApiError::bad_request(refused.message.to_string()));
    }
    q.purge();
    Ok(StatusCode::NO_CONTENT)
}

/// `sync` and `cancel_sync` concern mirrored queues, which a single node does not have:
/// accepted and nothing to do, as RabbitMQ does for an unmirrored queue.
pub async fn actions(
    State(m): State<AppState>,
    Path((v, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vh = vhost(&m, &v)?;
    vh.queue(&object_name(&name)?).map_err(|_| ApiError::not_found())?;
    let body: Map<String, Value> = body_object(&body)?;
    match str_field(&body, "action")? {
        Some("sync" | "cancel_sync") => Ok(StatusCode::NO_CONTENT),
        Some(other) => Err(ApiError::bad_request(format!("unknown action {other}"))),
        None => Err(crate::mgmt::json::key_missing("action")),
    }
}
