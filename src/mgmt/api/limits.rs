//! `/api/vhost-limits` and `/api/user-limits` (and the `vhost-limits` runtime parameter, the
//! form RabbitMQ keeps a vhost's limits in and exports them as): RabbitMQ's paths, bodies and
//! answers, changed through the broker's door (`broker::definitions::limits`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::admin::metadata_error;
use super::{vhost, vhost_for_change, AppState};
use crate::auth::limits::{LimitOwner, LimitSet};
use crate::broker::VHost;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{body_object, key_missing};
use crate::mgmt::Mgmt;

/// The component and the only name RabbitMQ keeps a vhost's limits under.
pub const COMPONENT: &str = "vhost-limits";
pub const PARAMETER_NAME: &str = "limits";

fn validation_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Validation failed\n\n{e}\n"))
}

fn vhost_limits_json(vh: &VHost) -> Option<Value> {
    let limits = vh.meta().limits;
    (!limits.is_empty()).then(|| json!({"vhost": vh.name.to_string_lossy(), "value": limits.to_json()}))
}

/// The vhost's limits as its `vhost-limits` runtime parameter (none if it has no limits).
pub fn vhost_limits_parameter(vh: &VHost, with_vhost: bool) -> Option<Value> {
    let limits = vh.meta().limits;
    if limits.is_empty() {
        return None;
    }
    let mut p = json!({"value": limits.to_json(), "component": COMPONENT, "name": PARAMETER_NAME});
    if with_vhost {
        p["vhost"] = json!(vh.name.to_string_lossy());
    }
    Some(p)
}

/// The `vhost-limits` parameters of the vhosts the caller sees (`vhost`: of that one only).
pub fn vhost_limits_parameters(m: &Mgmt, vhost: Option<&str>) -> Vec<Value> {
    m.broker
        .vhosts()
        .iter()
        .filter(|v| vhost.is_none_or(|name| v.name == name))
        .filter(|v| crate::mgmt::authz::current_sees_vhost(m, &v.name))
        .filter_map(|v| vhost_limits_parameter(v, true))
        .collect()
}

pub async fn all_vhosts(State(m): State<AppState>) -> Json<Value> {
    Json(Value::Array(m.broker.vhosts().iter().filter_map(|v| vhost_limits_json(v)).collect()))
}

pub async fn of_vhost(State(m): State<AppState>, Path(v): Path<String>) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    Ok(Json(Value::Array(vhost_limits_json(&vh).into_iter().collect())))
}

/// `{"value": N}`, checked as RabbitMQ checks it.
fn limit_value(owner: LimitOwner, name: &str, body: &Bytes) -> ApiResult<i64> {
    let body = body_object(body)?;
    let value = body.get("value").ok_or_else(|| key_missing("value"))?;
    LimitSet::parse_one(owner, name, value).map_err(|e| match owner {
        LimitOwner::VHost => validation_failed(e),
        LimitOwner::User => ApiError::bad_request(e.to_string()),
    })
}

pub async fn put_vhost_limit(
    State(m): State<AppState>,
    Path((v, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vh = vhost_for_change(&m, &v)?;
    let value = limit_value(LimitOwner::VHost, &name, &body)?;
    m.broker.set_vhost_limit(&vh.name, &name, value).map_err(metadata_error)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_vhost_limit(
    State(m): State<AppState>,
    Path((v, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let vh = vhost_for_change(&m, &v)?;
    m.broker.clear_vhost_limit(&vh.name, &name).map_err(metadata_error)?;
    Ok(StatusCode::NO_CONTENT)
}

fn user_limits_json(user: &crate::auth::User) -> Option<Value> {
    (!user.limits.is_empty()).then(|| json!({"user": user.name, "value": user.limits.to_json()}))
}

pub async fn all_users(State(m): State<AppState>) -> Json<Value> {
    Json(Value::Array(m.broker.users.list().iter().filter_map(|u| user_limits_json(u)).collect()))
}

pub async fn of_user(State(m): State<AppState>, Path(u): Path<String>) -> ApiResult<Json<Value>> {
    let user = m.broker.users.get(&u).ok_or_else(ApiError::not_found)?;
    Ok(Json(Value::Array(user_limits_json(&user).into_iter().collect())))
}

pub async fn put_user_limit(
    State(m): State<AppState>,
    Path((u, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let value = limit_value(LimitOwner::User, &name, &body)?;
    m.broker.set_user_limit(&u, &name, value).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete_user_limit(
    State(m): State<AppState>,
    Path((u, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    m.broker.users.get(&u).ok_or_else(ApiError::not_found)?;
    m.broker.clear_user_limit(&u, &name).map_err(metadata_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /api/parameters/vhost-limits/{vhost}/limits` `{"value": {...}}`: replaces the whole set.
pub fn put_parameter(m: &Mgmt, v: &str, name: &str, body: &Bytes) -> ApiResult<StatusCode> {
    let vh = vhost_for_change(m, v)?;
    if name != PARAMETER_NAME {
        return Err(validation_failed(format!("the {COMPONENT} parameter of a vhost is named '{PARAMETER_NAME}'")));
    }
    let body = body_object(body)?;
    let value = body.get("value").ok_or_else(|| key_missing("value"))?;
    if !value.is_object() {
        return Err(validation_failed(format!("{COMPONENT} must be an object")));
    }
    let limits = LimitSet::parse(LimitOwner::VHost, value).map_err(validation_failed)?;
    let created = vh.meta().limits.is_empty();
    m.broker.set_vhost_limits(&vh.name, limits).map_err(metadata_error)?;
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

/// `DELETE /api/parameters/vhost-limits/{vhost}/limits`: clears them all.
pub fn delete_parameter(m: &Mgmt, v: &str, name: &str) -> ApiResult<StatusCode> {
    let vh = vhost(m, v)?;
    if name != PARAMETER_NAME || vh.meta().limits.is_empty() {
        return Err(ApiError::not_found());
    }
    m.broker.set_vhost_limits(&vh.name, LimitSet::new()).map_err(metadata_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/parameters/vhost-limits/{vhost}/limits`.
pub fn show_parameter(m: &Mgmt, v: &str, name: &str) -> ApiResult<Json<Value>> {
    let vh = vhost(m, v)?;
    match name {
        PARAMETER_NAME => vhost_limits_parameter(&vh, true).map(Json).ok_or_else(ApiError::not_found),
        _ => Err(ApiError::not_found()),
    }
}
