//! `/api/topic-permissions`, `/api/vhosts/{v}/topic-permissions` and
//! `/api/users/{u}/topic-permissions`: users' write/read patterns over routing keys per topic
//! exchange (changed through the broker's door, `broker::definitions::topic_access`). Kept and
//! listed; not yet enforced.
//!
//! RabbitMQ addresses them by vhost and user, not by exchange: `PUT` names the exchange in its
//! body, `GET` lists the pair's entries and `DELETE` clears them all.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::admin::metadata_error;
use super::{vhost, AppState};
use crate::auth::TopicPermission;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{body_object, require_keys, short_str, str_field};
use crate::mgmt::listing::{self, ListQuery};
use crate::protocol::ShortStr;

/// As RabbitMQ lists and exports one.
pub(super) fn topic_permission_json(p: &TopicPermission) -> Value {
    let vhost = p.vhost.to_string_lossy();
    json!({"user": p.user, "vhost": vhost, "exchange": p.exchange, "write": p.write, "read": p.read})
}

fn array(ps: Vec<std::sync::Arc<TopicPermission>>) -> Value {
    Value::Array(ps.iter().map(|p| topic_permission_json(p)).collect())
}

pub async fn list(State(m): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let items = m.broker.topic_permissions.list().iter().map(|p| topic_permission_json(p)).collect();
    Ok(Json(listing::respond(items, &q)?))
}

pub async fn in_vhost(State(m): State<AppState>, Path(v): Path<String>) -> ApiResult<Json<Value>> {
    let vh = vhost(&m, &v)?;
    Ok(Json(array(m.broker.topic_permissions.in_vhost(&vh.name))))
}

pub async fn of_user(State(m): State<AppState>, Path(u): Path<String>) -> ApiResult<Json<Value>> {
    if !m.broker.users.contains(&u) {
        return Err(ApiError::not_found());
    }
    Ok(Json(array(m.broker.topic_permissions.of_user(&u))))
}

/// The pair's entries; 404 when it has none, as RabbitMQ (whether or not the user and the
/// vhost exist).
pub async fn of_pair(State(m): State<AppState>, Path((v, u)): Path<(String, String)>) -> ApiResult<Json<Value>> {
    let vh = short_str(&v).map_err(|_| ApiError::not_found())?;
    match m.broker.topic_permissions.of_user_in(&u, &vh) {
        none if none.is_empty() => Err(ApiError::not_found()),
        some => Ok(Json(array(some))),
    }
}

/// `PUT` `{"exchange", "write", "read"}`: sets the user's entry for that exchange. RabbitMQ
/// checks the user and the vhost before it reads the body, and answers 201 only when the pair
/// had no entry before (a second exchange is 204, though its entry is new).
pub async fn put(
    State(m): State<AppState>,
    Path((v, u)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let not_found = || ApiError::bad_request("vhost_or_user_not_found");
    let vh: ShortStr = short_str(&v).map_err(|_| not_found())?;
    if m.broker.vhost(&vh).is_none() || !m.broker.users.contains(&u) {
        return Err(not_found());
    }
    let body = body_object(&body)?;
    require_keys(&body, &["exchange", "write", "read"])?;
    let field = |k: &str| -> ApiResult<String> { Ok(str_field(&body, k)?.unwrap_or_default().to_string()) };
    let first_of_pair = m.broker.topic_permissions.of_user_in(&u, &vh).is_empty();
    let p = TopicPermission {
        user: u,
        vhost: vh,
        exchange: field("exchange")?,
        write: field("write")?,
        read: field("read")?,
    };
    let created = m.broker.set_topic_permission(p).map_err(metadata_error)?;
    Ok(if created && first_of_pair { StatusCode::CREATED } else { StatusCode::NO_CONTENT })
}

/// `DELETE` clears every entry of the pair (RabbitMQ takes no exchange here: a `?exchange=`
/// is ignored); 404 when there is none.
pub async fn delete(State(m): State<AppState>, Path((v, u)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let vh = short_str(&v).map_err(|_| ApiError::not_found())?;
    match m.broker.clear_topic_permission(&u, &vh, None).map_err(metadata_error)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found()),
    }
}
