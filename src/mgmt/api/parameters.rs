//! `/api/parameters` and `/api/global-parameters`. The one runtime-parameter component Warren
//! has is `vhost-limits` (a vhost's limits, as RabbitMQ keeps and exports them; see
//! [`super::limits`]). The others belong to components — federation upstreams, shovels — that
//! Warren does not have: there are none to list, and a parameter for one is refused with
//! RabbitMQ's answer for a component that is not enabled. (Policies, RabbitMQ's `policy`
//! component, have their own endpoints.)

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::limits::{self, COMPONENT};
use super::AppState;
use crate::mgmt::error::{ApiError, ApiResult};

pub async fn list(State(m): State<AppState>) -> Json<Value> {
    Json(Value::Array(limits::vhost_limits_parameters(&m, None)))
}

pub async fn list_component(State(m): State<AppState>, Path(component): Path<String>) -> Json<Value> {
    match component.as_str() {
        COMPONENT => Json(Value::Array(limits::vhost_limits_parameters(&m, None))),
        _ => Json(json!([])),
    }
}

pub async fn list_component_vhost(
    State(m): State<AppState>,
    Path((component, vhost)): Path<(String, String)>,
) -> Json<Value> {
    match component.as_str() {
        COMPONENT => Json(Value::Array(limits::vhost_limits_parameters(&m, Some(&vhost)))),
        _ => Json(json!([])),
    }
}

pub async fn show(
    State(m): State<AppState>,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    match component.as_str() {
        COMPONENT => limits::show_parameter(&m, &vhost, &name),
        _ => Err(ApiError::not_found()),
    }
}

pub async fn put(
    State(m): State<AppState>,
    Path((component, vhost, name)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    match component.as_str() {
        COMPONENT => limits::put_parameter(&m, &vhost, &name, &body),
        _ => Err(ApiError::bad_request(format!("Validation failed\n\ncomponent {component} not found\n"))),
    }
}

pub async fn delete(
    State(m): State<AppState>,
    Path((component, vhost, name)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    match component.as_str() {
        COMPONENT => limits::delete_parameter(&m, &vhost, &name),
        _ => Err(ApiError::not_found()),
    }
}

pub async fn global_list() -> Json<Value> {
    Json(json!([]))
}

pub async fn global_show(Path(_name): Path<String>) -> ApiResult<Json<Value>> {
    Err(ApiError::not_found())
}
