//! `/api/vhosts`, `/api/users`, `/api/permissions`: the broker's vhosts, users and their
//! permissions (changed through the broker's door, `broker::definitions::vhosts`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::{vhost, AppState};
use crate::auth::{HashingAlgorithm, PasswordHash, Permission, User};
use crate::broker::definitions::metadata::MetadataError;
use crate::broker::definitions::vhosts::VHostSpec;
use crate::broker::VHost;
use crate::mgmt::auth::Caller;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{body_object, bool_field, key_missing, short_str, str_field};
use crate::mgmt::listing::{self, ListQuery};
use crate::mgmt::Mgmt;

pub(super) fn metadata_error(e: MetadataError) -> ApiError {
    match e {
        MetadataError::NoSuchVHost(_) | MetadataError::NoSuchUser(_) => {
            ApiError::bad_request("vhost_or_user_not_found")
        }
        MetadataError::InvalidRegex(r) => ApiError::bad_request(format!("invalid_regexp: {} ({})", r.regex, r.reason)),
        MetadataError::Store(e) => ApiError::internal(e.to_string()),
    }
}

fn vhost_json(v: &VHost) -> Value {
    let meta = v.meta();
    let (mut ready, mut unacked) = (0u64, 0u64);
    for q in v.queues() {
        let i = q.info();
        ready += i.ready;
        unacked += i.unacked;
    }
    let dqt = meta.default_queue_type.clone().unwrap_or_else(|| "undefined".to_string());
    json!({
        "name": v.name.to_string_lossy(),
        "description": meta.description,
        "tags": meta.tags,
        "default_queue_type": dqt,
        "metadata": {"description": meta.description, "tags": meta.tags, "default_queue_type": dqt},
        "tracing": meta.tracing,
        "cluster_state": {},
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
    })
}

fn with_node(mut o: Value, m: &Mgmt) -> Value {
    if let Some(Value::Object(state)) = o.get_mut("cluster_state") {
        state.insert(m.node.clone(), json!("running"));
    }
    o
}

pub async fn vhosts(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let items = m
        .broker
        .vhosts()
        .iter()
        .filter(|v| crate::mgmt::authz::current_sees_vhost(&m, &v.name))
        .map(|v| with_node(vhost_json(v), &m))
        .collect();
    Ok(Json(listing::respond(items, &q)?))
}

pub async fn show_vhost(State(m): State<AppState>, Path(v): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(with_node(vhost_json(&*vhost(&m, &v)?), &m)))
}

/// Tags as a list or a comma-separated string (`""` is none).
fn tags_field(body: &Map<String, Value>, key: &str) -> ApiResult<Option<Vec<String>>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            Ok(Some(s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()))
        }
        Some(Value::Array(a)) => Ok(Some(a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a list or a string"))),
    }
}

pub async fn put_vhost(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(v): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let body = body_object(&body)?;
    let name = short_str(&v)?;
    let spec = VHostSpec {
        description: str_field(&body, "description")?.unwrap_or("").to_string(),
        tags: tags_field(&body, "tags")?.unwrap_or_default(),
        default_queue_type: str_field(&body, "default_queue_type")?.map(str::to_string),
        tracing: if body.contains_key("tracing") { Some(bool_field(&body, "tracing", false)?) } else { None },
    };
    let created = m.broker.put_vhost(name, spec, Some(&caller.name)).map_err(metadata_error)?;
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

pub async fn delete_vhost(State(m): State<AppState>, Path(v): Path<String>) -> ApiResult<StatusCode> {
    let name = short_str(&v).map_err(|_| ApiError::not_found())?;
    let deleted = super::blocking(move || m.broker.delete_vhost(&name).map_err(metadata_error)).await?;
    match deleted {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found()),
    }
}

fn user_json(u: &User) -> Value {
    json!({
        "name": u.name,
        "password_hash": u.password.to_base64(),
        "hashing_algorithm": u.password.algorithm().name(),
        "tags": u.tags,
        "limits": u.limits.to_json(),
    })
}

pub async fn users(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let items = m.broker.users.list().iter().map(|u| user_json(u)).collect();
    Ok(Json(listing::respond(items, &q)?))
}

pub async fn users_without_permissions(State(m): State<AppState>) -> Json<Value> {
    let with: Vec<String> = m.broker.permissions.list().iter().map(|p| p.user.clone()).collect();
    Json(Value::Array(m.broker.users.list().iter().filter(|u| !with.contains(&u.name)).map(|u| user_json(u)).collect()))
}

pub async fn show_user(State(m): State<AppState>, Path(u): Path<String>) -> ApiResult<Json<Value>> {
    m.broker.users.get(&u).map(|u| Json(user_json(&u))).ok_or_else(ApiError::not_found)
}

/// PUT a user: `tags` is required; `password` (hashed here) or `password_hash` (with
/// `hashing_algorithm`, default sha256). With neither, an existing user loses its password
/// and a new one gets a random one, as RabbitMQ does.
pub async fn put_user(State(m): State<AppState>, Path(name): Path<String>, body: Bytes) -> ApiResult<StatusCode> {
    let body = body_object(&body)?;
    let tags = tags_field(&body, "tags")?.ok_or_else(|| ApiError::bad_request("tags_not_present"))?;
    let algorithm = match str_field(&body, "hashing_algorithm")? {
        Some(a) => {
            HashingAlgorithm::parse(a).ok_or_else(|| ApiError::bad_request(format!("unknown hashing algorithm {a}")))?
        }
        None => HashingAlgorithm::default(),
    };
    let password = match (str_field(&body, "password")?, str_field(&body, "password_hash")?) {
        (Some(p), _) => PasswordHash::new(algorithm, p),
        (None, Some(h)) => PasswordHash::from_base64(algorithm, h).map_err(|e| ApiError::bad_request(e.to_string()))?,
        (None, None) if m.broker.users.contains(&name) => PasswordHash::none(algorithm),
        (None, None) => PasswordHash::new(algorithm, &random_password()),
    };
    let created = m.broker.put_user(User::new(name, password, tags)).map_err(metadata_error)?;
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

fn random_password() -> String {
    crate::broker::random_name("").to_string_lossy()
}

pub async fn delete_user(State(m): State<AppState>, Path(u): Path<String>) -> ApiResult<StatusCode> {
    match m.broker.delete_user(&u).map_err(metadata_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found()),
    }
}

/// POST `/api/users/bulk-delete` `{"users": [...]}`.
pub async fn bulk_delete_users(State(m): State<AppState>, body: Bytes) -> ApiResult<StatusCode> {
    let body = body_object(&body)?;
    let Some(Value::Array(names)) = body.get("users") else { return Err(key_missing("users")) };
    for name in names.iter().filter_map(Value::as_str) {
        m.broker.delete_user(name).map_err(metadata_error)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn permission_json(p: &Permission) -> Value {
    json!({"user": p.user, "vhost": p.vhost.to_string_lossy(), "configure": p.configure, "write": p.write, "read": p.read})
}

pub async fn permissions(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let items = m.broker.permissions.list().iter().map(|p| permission_json(p)).collect();
    Ok(Json(listing::respond(items, &q)?))
}

pub async fn vhost_permissions(State(m): State<AppState>, Path(v): Path<String>) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    Ok(Json(Value::Array(m.broker.permissions.in_vhost(&vh.name).iter().map(|p| permission_json(p)).collect())))
}

pub async fn user_permissions(State(m): State<AppState>, Path(u): Path<String>) -> ApiResult<Json<Value>> {
    if !m.broker.users.contains(&u) {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(m.broker.permissions.of_user(&u).iter().map(|p| permission_json(p)).collect())))
}

pub async fn show_permission(
    State(m): State<AppState>,
    Path((v, u)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let vh = short_str(&v).map_err(|_| ApiError::not_found())?;
    m.broker.permissions.get(&u, &vh).map(|p| Json(permission_json(&p))).ok_or_else(ApiError::not_found)
}

pub async fn put_permission(
    State(m): State<AppState>,
    Path((v, u)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let body = body_object(&body)?;
    let pattern =
        |k: &str| -> ApiResult<String> { Ok(str_field(&body, k)?.ok_or_else(|| key_missing(k))?.to_string()) };
    let p = Permission {
        user: u,
        vhost: short_str(&v)?,
        configure: pattern("configure")?,
        write: pattern("write")?,
        read: pattern("read")?,
    };
    let created = m.broker.set_permission(p).map_err(metadata_error)?;
    Ok(if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

pub async fn delete_permission(
    State(m): State<AppState>,
    Path((v, u)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let vh = short_str(&v).map_err(|_| ApiError::not_found())?;
    match m.broker.clear_permission(&u, &vh).map_err(metadata_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found()),
    }
}
