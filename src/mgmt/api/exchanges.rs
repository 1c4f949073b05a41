//! `/api/exchanges`: list, show, declare (PUT), delete; publishing is in `messages.rs`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{exchange_name, vhost, vhost_for_change, AppState};
use crate::auth::access::{Perm, Resource};
use crate::broker::definitions::ExchangeSpec;
use crate::broker::exchange::{Exchange, ExchangeKind};
use crate::broker::VHost;
use crate::mgmt::auth::Caller;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{arguments_field, body_object, bool_field, str_field, table_to_json};
use crate::mgmt::listing::{self, is_true, ListQuery};

/// An exchange as RabbitMQ's API shows it (the default exchange is named `""`).
pub fn exchange_json(vhost: &VHost, x: &Exchange) -> Value {
    let policy = x.policy_view();
    let mut o = json!({
        "name": x.name.to_string_lossy(),
        "vhost": vhost.name.to_string_lossy(),
        "type": x.kind.name(),
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": table_to_json(&x.arguments),
    });
    // RabbitMQ shows `policy` on an exchange only when one applies.
    if let (Some(p), Value::Object(m)) = (&policy.policy, &mut o) {
        m.insert("policy".into(), Value::String(p.clone()));
    }
    o
}

fn list(mgmt: &crate::mgmt::Mgmt, only: Option<&str>, q: &ListQuery) -> ApiResult<Response> {
    super::list_objects(mgmt, only, q, VHost::exchanges, |x| &x.name, exchange_json)
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
    Query(q): Query<listing::Columns>,
) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    let x = vh.exchange(&exchange_name(&name)?).map_err(|_| ApiError::not_found())?;
    Ok(Json(listing::select(exchange_json(&vh, &x), q.columns.as_deref())))
}

pub async fn declare(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vh = vhost_for_change(&m, &v)?;
    let body = body_object(&body)?;
    let name = exchange_name(&name)?;
    caller.allow(&m, &vh.name, Perm::Configure, Resource::Exchange, name.as_bytes())?;
    let kind_name = str_field(&body, "type")?.unwrap_or("direct");
    let kind = ExchangeKind::parse(kind_name.as_bytes())
        .ok_or_else(|| ApiError::bad_request(format!("unknown exchange type '{kind_name}'")))?;
    let existed = vh.exchange(&name).is_ok();
    let arguments = arguments_field(&body)?;
    if let Some(ae) = arguments.get("alternate-exchange").and_then(|a| a.as_bytes()) {
        caller.allow(&m, &vh.name, Perm::Write, Resource::Exchange, ae)?;
        caller.allow(&m, &vh.name, Perm::Read, Resource::Exchange, name.as_bytes())?;
    }
    vh.declare_exchange(ExchangeSpec {
        name,
        kind,
        durable: bool_field(&body, "durable", false)?,
        auto_delete: bool_field(&body, "auto_delete", false)?,
        internal: bool_field(&body, "internal", false)?,
        arguments,
    })?;
    Ok(if existed { StatusCode::NO_CONTENT } else { StatusCode::CREATED })
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(rename = "if-unused")]
    if_unused: Option<String>,
}

pub async fn delete(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((v, name)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let vh = vhost(&m, &v)?;
    let name = exchange_name(&name)?;
    if name.is_empty() || name.as_bytes().starts_with(b"amq.") {
        return Err(ApiError::not_authorised("Access refused."));
    }
    caller.allow(&m, &vh.name, Perm::Configure, Resource::Exchange, name.as_bytes())?;
    // RabbitMQ answers 404 for a missing exchange here (AMQP's delete would succeed).
    let x: Arc<Exchange> = vh.exchange(&name).map_err(|_| ApiError::not_found())?;
    vh.delete_exchange(&x.name, is_true(q.if_unused.as_deref()))?;
    Ok(StatusCode::NO_CONTENT)
}
