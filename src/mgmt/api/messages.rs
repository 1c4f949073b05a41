//! Messages over HTTP: publish to an exchange, get from a queue (RabbitMQ's four ackmodes),
//! and Warren's non-destructive peek.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::Extension;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{exchange_name, object_name, vhost, AppState};
use crate::auth::access::{Perm, Resource};
use crate::broker::errors;
use crate::broker::message::Message;
use crate::broker::publish::{Publish, PublishOutcome};
use crate::broker::queue::{Queue, QueuedMessage};
use crate::broker::timer::now_ms;
use crate::mgmt::auth::Caller;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{
    body_object, decode_payload, encode_payload, int_field, properties_from_json, properties_to_json, require_keys,
    short_str, str_field,
};

/// POST `/api/exchanges/{v}/{x}/publish` → `{"routed": bool}`. Like RabbitMQ's, it waits for
/// the message to be accepted (written, for a persistent message in a durable queue); a queue
/// that refuses it (full, `reject-publish`) gives 400.
pub async fn publish(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    let body = body_object(&body)?;
    require_keys(&body, &["routing_key", "properties", "payload", "payload_encoding"])?;
    let name = exchange_name(&name)?;
    caller.allow(&m, &vh.name, Perm::Write, Resource::Exchange, name.as_bytes())?;
    let x = vh
        .exchange(&name)
        .map_err(|_| ApiError::bad_request(format!("404 NOT_FOUND - no exchange '{name}' in vhost '{}'", vh.name)))?;
    if x.internal {
        return Err(ApiError::bad_request(errors::internal_exchange(&x.name, &vh.name).message.into_owned()));
    }
    let properties = match body.get("properties") {
        Some(Value::Object(p)) => properties_from_json(p)?,
        _ => return Err(ApiError::bad_request("properties must be an object")),
    };
    if let Some(user_id) = &properties.user_id {
        if user_id.as_bytes() != caller.name.as_bytes() {
            let e = errors::user_id_mismatch(user_id, &caller.name);
            return Err(ApiError::bad_request(e.message.into_owned()));
        }
    }
    let encoding = str_field(&body, "payload_encoding")?.unwrap_or("string");
    let payload = decode_payload(str_field(&body, "payload")?.unwrap_or(""), encoding)?;
    let max = m.broker.limits.max_message_size;
    if payload.len() as u64 > max {
        return Err(ApiError::bad_request(errors::message_too_large(payload.len() as u64, max).message.into_owned()));
    }
    let message = Message {
        exchange: name,
        routing_key: short_str(str_field(&body, "routing_key")?.unwrap_or(""))?,
        properties: Box::new(properties),
        body: payload.into(),
        timestamp_ms: now_ms(),
    };
    if let Err(reason) = message.expiration_ms() {
        let given = message.properties.expiration.as_ref().map(|e| e.to_string_lossy()).unwrap_or_default();
        return Err(ApiError::bad_request(errors::invalid_expiration(given, reason).message.into_owned()));
    }
    let (done, accepted) = tokio::sync::oneshot::channel();
    let outcome = PublishOutcome::new(move |ok, _| {
        let _ = done.send(ok);
    });
    let routed = {
        let publish = Publish { outcome: Some(&outcome), ..Publish::new(Arc::new(message)) };
        !vh.publish(&x, &publish).unroutable()
    };
    outcome.release();
    if !accepted.await.unwrap_or(false) {
        return Err(ApiError::bad_request("Unable to publish message. Check queue limits."));
    }
    Ok(Json(json!({ "routed": routed })))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AckMode {
    /// Got, then put back (marked redelivered): RabbitMQ's "peek".
    AckRequeueTrue,
    /// Got and acked: gone.
    AckRequeueFalse,
    RejectRequeueTrue,
    /// Rejected: dead-lettered where the queue says so.
    RejectRequeueFalse,
}

impl AckMode {
    fn parse(s: &str) -> Option<AckMode> {
        Some(match s {
            "ack_requeue_true" => AckMode::AckRequeueTrue,
            "ack_requeue_false" => AckMode::AckRequeueFalse,
            "reject_requeue_true" => AckMode::RejectRequeueTrue,
            "reject_requeue_false" => AckMode::RejectRequeueFalse,
            _ => return None,
        })
    }
}

fn message_json(
    msg: &Message,
    redelivered: bool,
    remaining: Option<u32>,
    encoding: &str,
    truncate: Option<usize>,
) -> Value {
    let body = &msg.body[..];
    let shown = truncate.map_or(body, |n| &body[..n.min(body.len())]);
    let (payload, payload_encoding) = encode_payload(shown, encoding);
    let mut o = json!({
        "payload_bytes": body.len(),
        "redelivered": redelivered,
        "exchange": msg.exchange.to_string_lossy(),
        "routing_key": msg.routing_key.to_string_lossy(),
        // RabbitMQ sends `[]` for a message without properties (rabbitmqadmin's `get` table
        // shows its `properties` column because of it).
        "properties": match properties_to_json(&msg.properties) {
            Value::Object(m) if m.is_empty() => json!([]),
            other => other,
        },
        "payload": payload,
        "payload_encoding": payload_encoding,
    });
    if let (Some(n), Value::Object(m)) = (remaining, &mut o) {
        m.insert("message_count".into(), n.into());
    }
    o
}

fn encoding_of(body: &Map<String, Value>) -> ApiResult<String> {
    match str_field(body, "encoding")?.unwrap_or("auto") {
        e @ ("auto" | "base64") => Ok(e.to_string()),
        _ => Err(ApiError::bad_request(UNSUPPORTED_ENCODING)),
    }
}

const UNSUPPORTED_ENCODING: &str = "Unsupported encoding. Please use auto or base64.";

fn truncate_of(body: &Map<String, Value>) -> ApiResult<Option<usize>> {
    Ok(int_field(body, "truncate")?.map(|n| n.max(0) as usize))
}

/// POST `/api/queues/{v}/{q}/get`: `count` messages, settled as `ackmode` says once all are
/// taken (so a requeued message is not got twice in one call). A JSON array, `[]` when empty.
pub async fn get(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    caller.allow(&m, &vh.name, Perm::Read, Resource::Queue, name.as_bytes())?;
    let body = body_object(&body)?;
    require_keys(&body, &["ackmode", "count", "encoding"])?;
    let q = vh
        .queue(&object_name(&name)?)
        .map_err(|e| ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", e.reply_text().to_string_lossy()))?;
    let mode = str_field(&body, "ackmode")?.and_then(AckMode::parse).ok_or_else(|| {
        ApiError::bad_request(
            "ackmode must be one of ack_requeue_true, ack_requeue_false, reject_requeue_true, reject_requeue_false",
        )
    })?;
    if q.is_stream() {
        // RabbitMQ's reply, code included.
        let refused = crate::broker::stream::errors::unsupported("basic.get", &q.name, &vh.name);
        return Err(ApiError::bad_request(format!("540 {}", refused.message)));
    }
    let count = int_field(&body, "count")?.unwrap_or(1).max(0) as usize;
    let encoding = encoding_of(&body)?;
    let truncate = truncate_of(&body)?;
    let mut got: Vec<QueuedMessage> = Vec::new();
    let mut items = Vec::new();
    while got.len() < count {
        let Some((message, remaining)) = q.get() else { break };
        items.push(message_json(&message.msg, message.redelivered, Some(remaining), &encoding, truncate));
        got.push(message);
    }
    settle(&q, got, mode);
    Ok(Json(Value::Array(items)))
}

/// What a channel would do with these deliveries after `basic.get` (the delivery counted,
/// as `x-delivery-limit` wants).
fn settle(q: &Arc<Queue>, mut got: Vec<QueuedMessage>, mode: AckMode) {
    if got.is_empty() {
        return;
    }
    for message in &mut got {
        message.deliveries += 1;
    }
    match mode {
        AckMode::AckRequeueFalse => {
            q.acked(got.len());
            got.iter().for_each(|message| q.forget(message));
        }
        AckMode::AckRequeueTrue | AckMode::RejectRequeueTrue => q.requeue(got),
        AckMode::RejectRequeueFalse => q.reject(got),
    }
}

#[derive(Deserialize)]
pub struct PeekQuery {
    offset: Option<usize>,
    count: Option<usize>,
    encoding: Option<String>,
    truncate: Option<usize>,
}

/// GET `/api/queues/{v}/{q}/messages?offset=&count=` (Warren's): ready messages from
/// `offset` on (default 0, count 1, at most 1000), left in place — not redelivered, not counted
/// as delivered.
pub async fn peek(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
    Query(p): Query<PeekQuery>,
) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    caller.allow(&m, &vh.name, Perm::Read, Resource::Queue, name.as_bytes())?;
    let q = vh.queue(&object_name(&name)?).map_err(|_| ApiError::not_found())?;
    let encoding = match p.encoding.as_deref().unwrap_or("auto") {
        e @ ("auto" | "base64") => e.to_string(),
        _ => return Err(ApiError::bad_request(UNSUPPORTED_ENCODING)),
    };
    let offset = p.offset.unwrap_or(0);
    let items: Vec<Value> = q
        .peek(offset, p.count.unwrap_or(1))
        .iter()
        .map(|seen| message_json(&seen.msg, seen.redelivered, None, &encoding, p.truncate))
        .collect();
    Ok(Json(Value::Array(items)))
}
