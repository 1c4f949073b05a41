//! `/api/parameters` and `/api/global-parameters`. Runtime parameters belong to components —
//! federation upstreams, shovels — that Warren does not have, so there are none to list and a
//! parameter for any component is refused with RabbitMQ's answer for a component that is not
//! enabled. (Policies, RabbitMQ's `policy` component, have their own endpoints.)

use axum::extract::Path;
use axum::Json;
use serde_json::{json, Value};

use crate::mgmt::error::{ApiError, ApiResult};

pub async fn list() -> Json<Value> {
    Json(json!([]))
}

pub async fn list_component(Path(_component): Path<String>) -> Json<Value> {
    Json(json!([]))
}

pub async fn list_component_vhost(Path((_component, _vhost)): Path<(String, String)>) -> Json<Value> {
    Json(json!([]))
}

pub async fn show(Path((_component, _vhost, _name)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    Err(ApiError::not_found())
}

pub async fn put(Path((component, _vhost, _name)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    Err(ApiError::bad_request(format!("Validation failed\n\ncomponent {component} not found\n")))
}

pub async fn delete(Path((_component, _vhost, _name)): Path<(String, String, String)>) -> ApiResult<Json<Value>> {
    Err(ApiError::not_found())
}

pub async fn global_list() -> Json<Value> {
    Json(json!([]))
}

pub async fn global_show(Path(_name): Path<String>) -> ApiResult<Json<Value>> {
    Err(ApiError::not_found())
}
