//! `/api/connections`, `/api/channels`, `/api/consumers`: the live registry
//! (`broker::connections`) in RabbitMQ's shapes, and closing a connection.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::{vhost, vhosts_of, AppState};
use crate::broker::connections::{ChannelSnapshot, ConnectionInfo, ConnectionSnapshot};
use crate::broker::errors::FORCED_CLOSE_DEFAULT_REASON;
use crate::broker::queue::Consumer;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::table_to_json;
use crate::mgmt::listing::{self, ListQuery};
use crate::mgmt::Mgmt;
use crate::protocol::ShortStr;

/// Open channels by (connection id, channel number), with their connection.
pub type ChannelIndex = HashMap<(u64, u16), (Arc<ConnectionInfo>, ChannelSnapshot)>;

pub fn channel_index(mgmt: &Mgmt) -> ChannelIndex {
    let mut index = HashMap::new();
    for entry in mgmt.broker.connections().entries() {
        for ch in entry.channels() {
            index.insert((entry.id(), ch.number), (entry.info.clone(), ch));
        }
    }
    index
}

fn connection_json(mgmt: &Mgmt, c: &ConnectionSnapshot) -> Value {
    let i = &c.info;
    let props = table_to_json(&i.client_properties);
    let provided = props.get("connection_name").cloned();
    let mut o = json!({
        "name": i.name,
        "node": mgmt.node,
        "user": i.user,
        "vhost": i.vhost.to_string_lossy(),
        "state": c.stats.state.as_str(),
        "type": "network",
        "protocol": i.protocol,
        "auth_mechanism": i.auth_mechanism,
        "host": i.local.ip().to_string(),
        "port": i.local.port(),
        "peer_host": i.peer.ip().to_string(),
        "peer_port": i.peer.port(),
        "ssl": i.ssl,
        "channels": c.channels,
        "channel_max": i.channel_max,
        "frame_max": i.frame_max,
        "timeout": i.heartbeat,
        "client_properties": props,
        "connected_at": i.connected_at,
        "recv_oct": c.stats.recv_oct,
        "send_oct": c.stats.send_oct,
        "recv_cnt": c.stats.recv_cnt,
    });
    if let (Some(p), Value::Object(m)) = (provided, &mut o) {
        m.insert("user_provided_name".into(), p);
    }
    o
}

fn channel_name(info: &ConnectionInfo, number: u16) -> String {
    format!("{} ({number})", info.name)
}

fn channel_json(mgmt: &Mgmt, info: &ConnectionInfo, ch: &ChannelSnapshot) -> Value {
    json!({
        "name": channel_name(info, ch.number),
        "number": ch.number,
        "node": mgmt.node,
        "user": info.user,
        "vhost": info.vhost.to_string_lossy(),
        "state": "running",
        "connection_details": {
            "name": info.name,
            "peer_host": info.peer.ip().to_string(),
            "peer_port": info.peer.port(),
        },
        "consumer_count": ch.consumer_count,
        "confirm": ch.confirm,
        "transactional": ch.transactional,
        "prefetch_count": ch.prefetch_count,
        "global_prefetch_count": ch.global_prefetch_count,
        "messages_unacknowledged": ch.messages_unacknowledged,
        "messages_unconfirmed": 0,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
    })
}

/// A consumer as RabbitMQ's `/api/consumers` shows it.
pub fn consumer_json(mgmt: &Mgmt, channels: &ChannelIndex, vhost: &ShortStr, queue: &ShortStr, c: &Consumer) -> Value {
    let channel = c.sink.channel_ref().and_then(|k| channels.get(&k));
    let channel_details = match channel {
        Some((info, ch)) => json!({
            "name": channel_name(info, ch.number),
            "number": ch.number,
            "connection_name": info.name,
            "peer_host": info.peer.ip().to_string(),
            "peer_port": info.peer.port(),
            "node": mgmt.node,
            "user": info.user,
        }),
        None => json!({}),
    };
    json!({
        "consumer_tag": c.tag.to_string_lossy(),
        "queue": { "name": queue.to_string_lossy(), "vhost": vhost.to_string_lossy() },
        "channel_details": channel_details,
        "ack_required": !c.no_ack,
        "exclusive": c.exclusive,
        "prefetch_count": channel.map_or(0, |(_, ch)| ch.prefetch_count),
        "active": true,
        "activity_status": "up",
        "arguments": table_to_json(&c.arguments),
    })
}

fn connections(mgmt: &Mgmt, only: Option<&str>) -> ApiResult<Vec<Value>> {
    if let Some(v) = only {
        vhost(mgmt, v)?;
    }
    Ok(mgmt
        .broker
        .connections()
        .list()
        .iter()
        .filter(|c| only.is_none_or(|v| c.info.vhost == v))
        .filter(|c| crate::mgmt::authz::current_sees_connection(&c.info.user))
        .map(|c| connection_json(mgmt, c))
        .collect())
}

pub async fn list_all(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    Ok(Json(listing::respond(connections(&m, None)?, &q)?))
}

pub async fn list_vhost(
    State(m): State<AppState>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(listing::respond(connections(&m, Some(&v))?, &q)?))
}

fn find(mgmt: &Mgmt, name: &str) -> ApiResult<ConnectionSnapshot> {
    mgmt.broker
        .connections()
        .list()
        .into_iter()
        .find(|c| c.info.name == name && crate::mgmt::authz::current_sees_connection(&c.info.user))
        .ok_or_else(ApiError::not_found)
}

pub async fn show(State(m): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(connection_json(&m, &find(&m, &name)?)))
}

/// Closes the connection with `320 CONNECTION_FORCED` and the `X-Reason` header as its text.
pub async fn close(State(m): State<AppState>, Path(name): Path<String>, headers: HeaderMap) -> ApiResult<StatusCode> {
    let c = find(&m, &name)?;
    let reason = headers.get("x-reason").and_then(|r| r.to_str().ok()).unwrap_or(FORCED_CLOSE_DEFAULT_REASON);
    tracing::info!(connection = %c.info.name, reason, "closing a connection for the HTTP API");
    if !m.broker.connections().close(c.info.id, reason) {
        return Err(ApiError::not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn channel_list(mgmt: &Mgmt, only_vhost: Option<&str>, only_conn: Option<u64>) -> Vec<Value> {
    let mut items = Vec::new();
    for entry in mgmt.broker.connections().entries() {
        let info = &entry.info;
        if only_conn.is_some_and(|id| id != info.id) || only_vhost.is_some_and(|v| info.vhost != v) {
            continue;
        }
        if !crate::mgmt::authz::current_sees_connection(&info.user) {
            continue;
        }
        items.extend(entry.channels().iter().map(|ch| channel_json(mgmt, info, ch)));
    }
    items
}

pub async fn channels(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    Ok(Json(listing::respond(channel_list(&m, None, None), &q)?))
}

pub async fn channels_vhost(
    State(m): State<AppState>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    vhost(&m, &v)?;
    Ok(Json(listing::respond(channel_list(&m, Some(&v), None), &q)?))
}

pub async fn channels_of(
    State(m): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let c = find(&m, &name)?;
    Ok(Json(listing::respond(channel_list(&m, None, Some(c.info.id)), &q)?))
}

pub async fn channel(State(m): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    channel_list(&m, None, None)
        .into_iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name.as_str()))
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

fn consumer_list(mgmt: &Mgmt, only: Option<&str>) -> ApiResult<Vec<Value>> {
    let index = channel_index(mgmt);
    let mut items = Vec::new();
    for v in vhosts_of(mgmt, only)? {
        for q in v.queues() {
            for c in q.info().consumers {
                items.push(consumer_json(mgmt, &index, &v.name, &q.name, &c));
            }
        }
    }
    Ok(items)
}

pub async fn consumers(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    Ok(Json(listing::respond(consumer_list(&m, None)?, &q)?))
}

pub async fn consumers_vhost(
    State(m): State<AppState>,
    Path(v): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(listing::respond(consumer_list(&m, Some(&v))?, &q)?))
}
