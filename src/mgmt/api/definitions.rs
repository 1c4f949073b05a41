//! `/api/definitions` (whole broker) and `/api/definitions/{vhost}`: export and import in
//! RabbitMQ's `definitions.json` format, so a file exported from RabbitMQ imports into Warren
//! and back. Import is checked in full before anything is applied (see
//! `broker::definitions::import`).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::bindings::vhost_bindings;
use super::limits::{vhost_limits_parameter, COMPONENT};
use super::overview::{PRODUCT_NAME, PRODUCT_VERSION, RABBITMQ_COMPAT_VERSION};
use super::topic_permissions::topic_permission_json;
use super::{vhost, AppState};
use crate::auth::limits::{LimitOwner, LimitSet};
use crate::auth::{HashingAlgorithm, PasswordHash, Permission, TopicPermission, User};
use crate::broker::definitions::import::{BindingSpec, DefinitionSet};
use crate::broker::definitions::vhosts::VHostSpec;
use crate::broker::definitions::{ExchangeSpec, QueueSpec};
use crate::broker::exchange::ExchangeKind;
use crate::broker::policy::{PolicyKind, PolicySpec};
use crate::broker::VHost;
use crate::mgmt::auth::Caller;
use crate::mgmt::error::{ApiError, ApiResult};
use crate::mgmt::json::{arguments_field, bool_field, short_str, str_field, table_to_json};
use crate::mgmt::Mgmt;
use crate::protocol::ShortStr;

/// The exported objects of one vhost (RabbitMQ leaves out the default and `amq.*` exchanges,
/// exclusive queues and the default exchange's implicit bindings).
struct VHostDefinitions {
    policies: Vec<Value>,
    exchanges: Vec<Value>,
    queues: Vec<Value>,
    bindings: Vec<Value>,
}

fn export_vhost(vh: &VHost, with_vhost: bool) -> VHostDefinitions {
    let tag = |mut o: Value| {
        if with_vhost {
            if let Value::Object(m) = &mut o {
                m.insert("vhost".into(), Value::String(vh.name.to_string_lossy()));
            }
        }
        o
    };
    let mut exchanges: Vec<_> =
        vh.exchanges().into_iter().filter(|x| !x.name.is_empty() && !x.name.as_bytes().starts_with(b"amq.")).collect();
    exchanges.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let mut queues: Vec<_> = vh.queues().into_iter().filter(|q| q.exclusive_owner.is_none()).collect();
    queues.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    let exported_queue = |name: &str| queues.iter().any(|q| q.name == name);
    let bindings = vhost_bindings(vh)
        .into_iter()
        .filter(|b| b["source"] != "")
        .filter(|b| b["destination_type"] != "queue" || exported_queue(b["destination"].as_str().unwrap_or("")))
        .map(|b| {
            tag(json!({
                "source": b["source"], "destination": b["destination"],
                "destination_type": b["destination_type"], "routing_key": b["routing_key"],
                "arguments": b["arguments"],
            }))
        })
        .collect();
    let policies = vh
        .policies(PolicyKind::User)
        .iter()
        .map(|p| p.to_json()) // policies keep their vhost even in a per-vhost export, as RabbitMQ's
        .collect();
    VHostDefinitions {
        policies,
        exchanges: exchanges
            .iter()
            .map(|x| {
                tag(json!({
                    "name": x.name.to_string_lossy(), "type": x.kind.name(), "durable": x.durable,
                    "auto_delete": x.auto_delete, "internal": x.internal, "arguments": table_to_json(&x.arguments),
                }))
            })
            .collect(),
        queues: queues
            .iter()
            .map(|q| {
                tag(json!({
                    "name": q.name.to_string_lossy(), "durable": q.durable, "auto_delete": q.auto_delete,
                    "arguments": table_to_json(&q.arguments),
                }))
            })
            .collect(),
        bindings,
    }
}

#[derive(Deserialize)]
pub struct Download {
    download: Option<String>,
}

fn with_download(body: Value, download: Option<String>) -> Response {
    let mut response = Json(body).into_response();
    if let Some(name) = download {
        let value = format!("attachment; filename={}", name.replace(['"', '\r', '\n'], ""));
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    response
}

fn header_fields() -> Map<String, Value> {
    let o = json!({
        "rabbit_version": RABBITMQ_COMPAT_VERSION,
        "rabbitmq_version": RABBITMQ_COMPAT_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": PRODUCT_VERSION,
    });
    match o {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The whole broker's definitions.
pub fn export_all(m: &Mgmt) -> Value {
    let mut out = header_fields();
    let (mut exchanges, mut queues, mut bindings, mut vhosts, mut policies) = (vec![], vec![], vec![], vec![], vec![]);
    for vh in m.broker.vhosts() {
        let meta = vh.meta();
        vhosts.push(json!({"name": vh.name.to_string_lossy(), "description": meta.description, "tags": meta.tags,
                           "metadata": {"description": meta.description, "tags": meta.tags}}));
        let d = export_vhost(&vh, true);
        policies.extend(d.policies);
        exchanges.extend(d.exchanges);
        queues.extend(d.queues);
        bindings.extend(d.bindings);
    }
    let users: Vec<Value> = m
        .broker
        .users
        .list()
        .iter()
        .map(|u| {
            json!({"name": u.name, "password_hash": u.password.to_base64(),
                   "hashing_algorithm": u.password.algorithm().name(), "tags": u.tags, "limits": u.limits.to_json()})
        })
        .collect();
    let permissions: Vec<Value> = m
        .broker
        .permissions
        .list()
        .iter()
        .map(|p| json!({"user": p.user, "vhost": p.vhost.to_string_lossy(), "configure": p.configure, "write": p.write, "read": p.read}))
        .collect();
    let topic_permissions = m.broker.topic_permissions.list().iter().map(|p| topic_permission_json(p)).collect();
    out.insert("users".into(), Value::Array(users));
    out.insert("permissions".into(), Value::Array(permissions));
    out.insert("topic_permissions".into(), Value::Array(topic_permissions));
    let parameters = m.broker.vhosts().iter().filter_map(|v| vhost_limits_parameter(v, true)).collect();
    out.insert("parameters".into(), Value::Array(parameters));
    out.insert("global_parameters".into(), json!([]));
    out.insert("policies".into(), Value::Array(policies));
    out.insert("vhosts".into(), Value::Array(vhosts));
    out.insert("queues".into(), Value::Array(queues));
    out.insert("exchanges".into(), Value::Array(exchanges));
    out.insert("bindings".into(), Value::Array(bindings));
    Value::Object(out)
}

pub async fn export(State(m): State<AppState>, Query(d): Query<Download>) -> Response {
    with_download(export_all(&m), d.download)
}

pub async fn export_vhost_handler(
    State(m): State<AppState>,
    Path(v): Path<String>,
    Query(d): Query<Download>,
) -> ApiResult<Response> {
    let vh = vhost(&m, &v).map_err(|_| ApiError::bad_request("vhost_not_found"))?;
    // RabbitMQ 3.10's per-vhost export has exactly these keys: no users, so no permissions or
    // topic permissions either.
    let mut out = Map::new();
    out.insert("rabbit_version".into(), json!(RABBITMQ_COMPAT_VERSION));
    let defs = export_vhost(&vh, false);
    out.insert("parameters".into(), Value::Array(vhost_limits_parameter(&vh, false).into_iter().collect()));
    out.insert("policies".into(), Value::Array(defs.policies));
    out.insert("queues".into(), Value::Array(defs.queues));
    out.insert("exchanges".into(), Value::Array(defs.exchanges));
    out.insert("bindings".into(), Value::Array(defs.bindings));
    Ok(with_download(Value::Object(out), d.download))
}

/// Parses a definitions document; `vhost` is the vhost of a per-vhost import (its items carry
/// none), else every item must name its vhost.
pub fn parse(doc: &Value, vhost: Option<&ShortStr>) -> ApiResult<DefinitionSet> {
    let Value::Object(doc) = doc else { return Err(ApiError::bad_request("failed_to_parse_json")) };
    let mut set = DefinitionSet::default();
    let items = |key: &str| -> ApiResult<Vec<Map<String, Value>>> {
        match doc.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|i| match i {
                    Value::Object(o) => Ok(o.clone()),
                    _ => Err(ApiError::bad_request(format!("{key}: every item must be an object"))),
                })
                .collect(),
            Some(_) => Err(ApiError::bad_request(format!("{key} must be a list"))),
        }
    };
    let vhost_of = |kind: &str, item: &Map<String, Value>| -> ApiResult<ShortStr> {
        match (vhost, str_field(item, "vhost")?) {
            (Some(v), _) => Ok(v.clone()),
            (None, Some(v)) => short_str(v),
            (None, None) => Err(ApiError::bad_request(format!(
                "{kind} '{}' names no vhost (a file without vhosts imports through /api/definitions/{{vhost}})",
                item.get("name").or(item.get("source")).and_then(Value::as_str).unwrap_or("")
            ))),
        }
    };
    let name_of = |item: &Map<String, Value>, key: &str| -> ApiResult<ShortStr> {
        short_str(str_field(item, key)?.ok_or_else(|| crate::mgmt::json::key_missing(key))?)
    };
    // A per-vhost import takes the vhost's objects only, as RabbitMQ's does: users, vhosts,
    // permissions and topic permissions in such a file are ignored.
    if vhost.is_none() {
        for u in items("users")? {
            let name = str_field(&u, "name")?.ok_or_else(|| crate::mgmt::json::key_missing("name"))?.to_string();
            let algorithm = match str_field(&u, "hashing_algorithm")? {
                Some(a) => HashingAlgorithm::parse(a)
                    .ok_or_else(|| ApiError::bad_request(format!("user '{name}': unknown hashing algorithm {a}")))?,
                None => HashingAlgorithm::default(),
            };
            let hash = str_field(&u, "password_hash")?.unwrap_or("");
            let password = PasswordHash::from_base64(algorithm, hash)
                .map_err(|e| ApiError::bad_request(format!("user '{name}': {e}")))?;
            let tags = match u.get("tags") {
                Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
                Some(Value::String(s)) => {
                    s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
                }
                _ => Vec::new(),
            };
            let mut user = User::new(name, password, tags);
            if let Some(limits) = u.get("limits") {
                user.limits = LimitSet::parse(LimitOwner::User, limits)
                    .map_err(|e| ApiError::bad_request(format!("user '{}': {e}", user.name)))?;
            }
            set.users.push(user);
        }
        for v in items("vhosts")? {
            let name = name_of(&v, "name")?;
            let meta = match v.get("metadata") {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            let text = |k: &str| v.get(k).or(meta.get(k)).and_then(Value::as_str).map(str::to_string);
            let tags = match v.get("tags").or(meta.get("tags")) {
                Some(Value::Array(a)) => a.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
                Some(Value::String(s)) => {
                    s.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()
                }
                _ => Vec::new(),
            };
            let spec = VHostSpec {
                description: text("description").unwrap_or_default(),
                tags,
                default_queue_type: text("default_queue_type").filter(|t| t != "undefined"),
                tracing: None,
            };
            // RabbitMQ 4.x exports a vhost's limits with it; 3.x as a `vhost-limits` parameter.
            if let Some(limits) = v.get("limits").filter(|l| l.as_object().is_some_and(|o| !o.is_empty())) {
                set.vhost_limits.push((name.clone(), vhost_limits_of(&name, limits)?));
            }
            set.vhosts.push((name, spec));
        }
        for p in items("permissions")? {
            let field = |k: &str| -> ApiResult<String> {
                Ok(str_field(&p, k)?.ok_or_else(|| crate::mgmt::json::key_missing(k))?.to_string())
            };
            set.permissions.push(Permission {
                user: field("user")?,
                vhost: short_str(&field("vhost")?)?,
                configure: field("configure")?,
                write: field("write")?,
                read: field("read")?,
            });
        }
        // RabbitMQ takes a topic permission without `exchange` and keeps it for an exchange
        // named `undefined`; Warren refuses it.
        for p in items("topic_permissions")? {
            let field = |k: &str| -> ApiResult<String> {
                Ok(str_field(&p, k)?.ok_or_else(|| crate::mgmt::json::key_missing(k))?.to_string())
            };
            set.topic_permissions.push(TopicPermission {
                user: field("user")?,
                vhost: short_str(&field("vhost")?)?,
                exchange: field("exchange")?,
                write: field("write")?,
                read: field("read")?,
            });
        }
    }
    // Of the runtime parameters only `vhost-limits` means something here; the other components
    // (federation, shovels) are not in Warren and their parameters are skipped.
    for p in items("parameters")? {
        if str_field(&p, "component")? != Some(COMPONENT) {
            continue;
        }
        let v = vhost_of("parameter", &p)?;
        let limits = vhost_limits_of(&v, p.get("value").unwrap_or(&Value::Null))?;
        set.vhost_limits.push((v, limits));
    }
    for p in items("policies")? {
        let name = str_field(&p, "name")?.ok_or_else(|| crate::mgmt::json::key_missing("name"))?.to_string();
        let spec = PolicySpec::from_json(PolicyKind::User, &Value::Object(p.clone()))
            .map_err(|e| ApiError::bad_request(format!("policy '{name}': {}", e.reason())))?;
        set.policies.push((vhost_of("policy", &p)?, name, spec));
    }
    for x in items("exchanges")? {
        let name = name_of(&x, "name")?;
        // The default and `amq.*` exchanges exist everywhere: skipped, as RabbitMQ does.
        if name.is_empty() || name.as_bytes().starts_with(b"amq.") {
            continue;
        }
        let kind_name = str_field(&x, "type")?.unwrap_or("direct");
        let kind = ExchangeKind::parse(kind_name.as_bytes())
            .ok_or_else(|| ApiError::bad_request(format!("unknown exchange type '{kind_name}'")))?;
        let spec = ExchangeSpec {
            name,
            kind,
            durable: bool_field(&x, "durable", true)?,
            auto_delete: bool_field(&x, "auto_delete", false)?,
            internal: bool_field(&x, "internal", false)?,
            arguments: arguments_field(&x)?,
        };
        set.exchanges.push((vhost_of("exchange", &x)?, spec));
    }
    for q in items("queues")? {
        let name = name_of(&q, "name")?;
        if name.as_bytes().starts_with(b"amq.") {
            continue;
        }
        let spec = QueueSpec {
            name,
            server_named: false,
            durable: bool_field(&q, "durable", true)?,
            exclusive_owner: None,
            auto_delete: bool_field(&q, "auto_delete", false)?,
            arguments: arguments_field(&q)?,
        };
        set.queues.push((vhost_of("queue", &q)?, spec));
    }
    for b in items("bindings")? {
        let spec = BindingSpec {
            source: name_of(&b, "source")?,
            destination: name_of(&b, "destination")?,
            to_queue: str_field(&b, "destination_type")?.unwrap_or("queue") == "queue",
            routing_key: short_str(str_field(&b, "routing_key")?.unwrap_or(""))?,
            arguments: arguments_field(&b)?,
        };
        set.bindings.push((vhost_of("binding", &b)?, spec));
    }
    Ok(set)
}

fn vhost_limits_of(vhost: &ShortStr, value: &Value) -> ApiResult<LimitSet> {
    LimitSet::parse(LimitOwner::VHost, value).map_err(|e| ApiError::bad_request(format!("vhost '{vhost}': {e}")))
}

fn import(m: &Mgmt, caller: &Caller, body: &Bytes, vhost: Option<&ShortStr>) -> ApiResult<StatusCode> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| ApiError::bad_request("failed_to_parse_json"))?;
    let set = parse(&doc, vhost)?;
    m.broker.import_definitions(&set, Some(&caller.name)).map_err(|reason| {
        tracing::warn!(%reason, "definitions import refused; nothing was changed");
        ApiError::bad_request(reason)
    })?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn import_all(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    super::blocking(move || import(&m, &caller, &body, None)).await
}

pub async fn import_vhost(
    State(m): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(v): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let vh = super::vhost_for_change(&m, &v)?;
    super::blocking(move || import(&m, &caller, &body, Some(&vh.name))).await
}
