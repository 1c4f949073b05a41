//! `/api/policies` and `/api/operator-policies`: list (all, per vhost), show, set (PUT: 201
//! created, 204 updated), clear. The rules are the broker's (`broker::policy`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

use super::{vhost, vhost_for_change, vhosts_of, AppState};
use crate::broker::policy::{PolicyError, PolicyKind, PolicySpec};
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::body_object;
use crate::mgmt::listing::{self, ListQuery};
use crate::mgmt::Mgmt;

/// RabbitMQ's reply HTML-escapes the reason (`<<"bogus">>` → `&lt;&lt;"bogus"&gt;&gt;`).
fn policy_error(e: PolicyError) -> ApiError {
    if !e.is_bad_request() {
        return ApiError::internal(e.reason());
    }
    let reason = e.reason().replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    ApiError::bad_request(reason)
}

fn list(m: &Mgmt, kind: PolicyKind, only: Option<&str>, q: &ListQuery) -> ApiResult<Json<Value>> {
    let mut items = Vec::new();
    for v in vhosts_of(m, only)? {
        items.extend(v.policies(kind).iter().map(|p| p.to_json()));
    }
    Ok(Json(listing::respond(items, q)?))
}

fn show(m: &Mgmt, kind: PolicyKind, v: &str, name: &str) -> ApiResult<Json<Value>> {
    let p = vhost(m, v)?.policy(kind, name).ok_or_else(ApiError::not_found)?;
    Ok(Json(p.to_json()))
}

fn set(m: &Mgmt, kind: PolicyKind, v: &str, name: &str, body: &Bytes) -> ApiResult<StatusCode> {
    let vh = vhost_for_change(m, v)?;
    let body = Value::Object(body_object(body)?);
    let spec = PolicySpec::from_json(kind, &body).map_err(policy_error)?;
    let created = vh.set_policy(kind, name, spec).map_err(policy_error)?;
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

fn clear(m: &Mgmt, kind: PolicyKind, v: &str, name: &str) -> ApiResult<StatusCode> {
    let vh = vhost(m, v)?;
    match vh.clear_policy(kind, name).map_err(policy_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found()),
    }
}

macro_rules! policy_handlers {
    ($kind:expr, $list_all:ident, $list_vhost:ident, $show:ident, $set:ident, $clear:ident) => {
        pub async fn $list_all(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
            list(&m, $kind, None, &q)
        }

        pub async fn $list_vhost(
            State(m): State<AppState>,
            Path(v): Path<String>,
            Query(q): Query<ListQuery>,
        ) -> ApiResult<Json<Value>> {
            list(&m, $kind, Some(&v), &q)
        }

        pub async fn $show(
            State(m): State<AppState>,
            Path((v, name)): Path<(String, String)>,
        ) -> ApiResult<Json<Value>> {
            show(&m, $kind, &v, &name)
        }

        pub async fn $set(
            State(m): State<AppState>,
            Path((v, name)): Path<(String, String)>,
            body: Bytes,
        ) -> ApiResult<StatusCode> {
            super::blocking(move || set(&m, $kind, &v, &name, &body)).await
        }

        pub async fn $clear(
            State(m): State<AppState>,
            Path((v, name)): Path<(String, String)>,
        ) -> ApiResult<StatusCode> {
            super::blocking(move || clear(&m, $kind, &v, &name)).await
        }
    };
}

policy_handlers!(PolicyKind::User, list_all, list_vhost, show_one, set_one, clear_one);
policy_handlers!(
    PolicyKind::Operator,
    operator_list_all,
    operator_list_vhost,
    operator_show_one,
    operator_set_one,
    operator_clear_one
);
