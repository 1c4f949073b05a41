//! RabbitMQ's management API paths, one file per endpoint group. A vhost in a path is one
//! percent-encoded segment (`%2F` for `/`): the router matches the raw path and `Path`
//! decodes each captured segment afterwards, so `/api/queues/%2F/q` never splits at the `/`.

mod admin;
mod bindings;
mod connections;
mod definitions;
mod exchanges;
mod limits;
mod messages;
pub mod overview;
mod parameters;
mod policies;
mod queues;
mod topic_permissions;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::routing::{get, post, put};
use axum::Router;

use super::auth::require_login;
use super::error::{ApiError, ApiResult};
use super::listing;
use super::Mgmt;
use crate::broker::VHost;
use crate::protocol::ShortStr;

pub type AppState = Arc<Mgmt>;

/// A whole-broker definitions document, parsed and validated (for `--load-definitions`).
pub fn parse_definitions(doc: &serde_json::Value) -> ApiResult<crate::broker::definitions::import::DefinitionSet> {
    definitions::parse(doc, None)
}

pub fn router(mgmt: Arc<Mgmt>) -> Router {
    let api = Router::new()
        .route("/overview", get(overview::overview))
        .route("/whoami", get(overview::whoami))
        .route("/extensions", get(overview::extensions))
        .route("/cluster-name", get(overview::cluster_name))
        .route("/nodes", get(overview::nodes))
        .route("/nodes/{node}", get(overview::node))
        .route("/aliveness-test/{vhost}", get(overview::aliveness_test))
        .route("/health/checks/alarms", get(overview::check_alarms))
        .route("/health/checks/local-alarms", get(overview::check_alarms))
        .route("/health/checks/virtual-hosts", get(overview::check_ok))
        .route("/health/checks/node-is-quorum-critical", get(overview::check_single_node))
        .route("/health/checks/node-is-mirror-sync-critical", get(overview::check_single_node))
        .route("/health/checks/port-listener/{port}", get(overview::check_port_listener))
        .route("/health/checks/protocol-listener/{protocol}", get(overview::check_protocol_listener))
        .route("/exchanges", get(exchanges::list_all))
        .route("/exchanges/{vhost}", get(exchanges::list_vhost))
        .route("/exchanges/{vhost}/{name}", get(exchanges::show).put(exchanges::declare).delete(exchanges::delete))
        .route("/exchanges/{vhost}/{name}/bindings/source", get(bindings::of_source))
        .route("/exchanges/{vhost}/{name}/bindings/destination", get(bindings::of_exchange_destination))
        .route("/exchanges/{vhost}/{name}/publish", post(messages::publish))
        .route("/queues", get(queues::list_all))
        .route("/queues/detailed", get(queues::list_all))
        .route("/queues/{vhost}", get(queues::list_vhost))
        .route("/queues/{vhost}/{name}", get(queues::show).put(queues::declare).delete(queues::delete))
        .route("/queues/{vhost}/{name}/bindings", get(bindings::of_queue))
        .route("/queues/{vhost}/{name}/contents", axum::routing::delete(queues::purge))
        .route("/queues/{vhost}/{name}/get", post(messages::get))
        .route("/queues/{vhost}/{name}/messages", get(messages::peek))
        .route("/queues/{vhost}/{name}/actions", post(queues::actions))
        .route("/bindings", get(bindings::list_all))
        .route("/bindings/{vhost}", get(bindings::list_vhost))
        .route("/bindings/{vhost}/e/{source}/{kind}/{destination}", get(bindings::between).post(bindings::create))
        .route(
            "/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(bindings::show).delete(bindings::delete),
        )
        .route("/definitions", get(definitions::export).post(definitions::import_all))
        .route("/definitions/{vhost}", get(definitions::export_vhost_handler).post(definitions::import_vhost))
        .route("/policies", get(policies::list_all))
        .route("/policies/{vhost}", get(policies::list_vhost))
        .route("/policies/{vhost}/{name}", get(policies::show_one).put(policies::set_one).delete(policies::clear_one))
        .route("/operator-policies", get(policies::operator_list_all))
        .route("/operator-policies/{vhost}", get(policies::operator_list_vhost))
        .route(
            "/operator-policies/{vhost}/{name}",
            get(policies::operator_show_one).put(policies::operator_set_one).delete(policies::operator_clear_one),
        )
        .route("/vhosts", get(admin::vhosts))
        .route("/vhosts/{vhost}", get(admin::show_vhost).put(admin::put_vhost).delete(admin::delete_vhost))
        .route("/vhosts/{vhost}/permissions", get(admin::vhost_permissions))
        .route("/vhosts/{vhost}/topic-permissions", get(topic_permissions::in_vhost))
        .route("/users", get(admin::users))
        .route("/users/without-permissions", get(admin::users_without_permissions))
        .route("/users/bulk-delete", post(admin::bulk_delete_users))
        .route("/users/{user}", get(admin::show_user).put(admin::put_user).delete(admin::delete_user))
        .route("/users/{user}/permissions", get(admin::user_permissions))
        .route("/users/{user}/topic-permissions", get(topic_permissions::of_user))
        .route("/permissions", get(admin::permissions))
        .route(
            "/permissions/{vhost}/{user}",
            get(admin::show_permission).put(admin::put_permission).delete(admin::delete_permission),
        )
        .route("/topic-permissions", get(topic_permissions::list))
        .route(
            "/topic-permissions/{vhost}/{user}",
            get(topic_permissions::of_pair).put(topic_permissions::put).delete(topic_permissions::delete),
        )
        .route("/vhost-limits", get(limits::all_vhosts))
        .route("/vhost-limits/{vhost}", get(limits::of_vhost))
        .route("/vhost-limits/{vhost}/{name}", put(limits::put_vhost_limit).delete(limits::delete_vhost_limit))
        .route("/user-limits", get(limits::all_users))
        .route("/user-limits/{user}", get(limits::of_user))
        .route("/user-limits/{user}/{name}", put(limits::put_user_limit).delete(limits::delete_user_limit))
        .route("/parameters", get(parameters::list))
        .route("/parameters/{component}", get(parameters::list_component))
        .route("/parameters/{component}/{vhost}", get(parameters::list_component_vhost))
        .route(
            "/parameters/{component}/{vhost}/{name}",
            get(parameters::show).put(parameters::put).delete(parameters::delete),
        )
        .route("/global-parameters", get(parameters::global_list))
        .route("/global-parameters/{name}", get(parameters::global_show))
        .route("/connections", get(connections::list_all))
        .route("/vhosts/{vhost}/connections", get(connections::list_vhost))
        .route("/connections/{name}", get(connections::show).delete(connections::close))
        .route("/connections/{name}/channels", get(connections::channels_of))
        .route("/channels", get(connections::channels))
        .route("/vhosts/{vhost}/channels", get(connections::channels_vhost))
        .route("/channels/{name}", get(connections::channel))
        .route("/consumers", get(connections::consumers))
        .route("/consumers/{vhost}", get(connections::consumers_vhost))
        .fallback(|| async { ApiError::not_found() })
        .route_layer(axum::middleware::from_fn_with_state(mgmt.clone(), require_login));
    Router::new()
        .nest("/api", api)
        .merge(super::ui::router())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::map_response(no_cache))
        .with_state(mgmt)
}

/// RabbitMQ sends `cache-control: no-cache` on every answer: monitoring must not read stale
/// counts through a proxy. (The UI's files want the same: revalidated by their `ETag`.)
async fn no_cache(mut response: axum::response::Response) -> axum::response::Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Runs a change that may take long — many synced store writes (an import), a walk over every
/// queue (a policy), a flush (a vhost deletion) — on the blocking pool, so that the runtime's
/// workers keep serving AMQP connections meanwhile.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::internal(e.to_string()))?
}

/// A vhost named in a path, for reading: 404 `Object Not Found` if there is none.
fn vhost(mgmt: &Mgmt, name: &str) -> ApiResult<Arc<VHost>> {
    let name = ShortStr::try_from(name).map_err(|_| ApiError::not_found())?;
    mgmt.broker.vhost(&name).ok_or_else(ApiError::not_found)
}

/// A vhost named in a path, for a change: RabbitMQ answers 404 `vhost_not_found` then.
fn vhost_for_change(mgmt: &Mgmt, name: &str) -> ApiResult<Arc<VHost>> {
    vhost(mgmt, name).map_err(|_| ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "vhost_not_found"))
}

/// An exchange name from a path: `amq.default` names the default exchange, as in RabbitMQ.
fn exchange_name(name: &str) -> ApiResult<ShortStr> {
    let name = if name == "amq.default" { "" } else { name };
    ShortStr::try_from(name).map_err(|_| ApiError::not_found())
}

fn object_name(name: &str) -> ApiResult<ShortStr> {
    ShortStr::try_from(name).map_err(|_| ApiError::not_found())
}

/// A list of one kind of vhost object (queues, exchanges), from the vhosts the caller sees:
/// names first, so that only the objects a page shows are built (`listing::respond_built`).
fn list_objects<T>(
    mgmt: &Mgmt,
    only: Option<&str>,
    q: &listing::ListQuery,
    objects: impl Fn(&VHost) -> Vec<Arc<T>>,
    name: impl Fn(&T) -> &ShortStr,
    build: impl Fn(&VHost, &T) -> serde_json::Value,
) -> ApiResult<axum::response::Response> {
    let mut items = Vec::new();
    for v in vhosts_of(mgmt, only)? {
        items.extend(objects(&v).into_iter().map(|o| (v.clone(), o)));
    }
    let names = |(v, o): &(Arc<VHost>, Arc<T>)| (v.name.to_string_lossy(), name(o).to_string_lossy());
    listing::respond_built(items, names, |(v, o)| build(v, o), q)
}

/// The vhosts a list covers: all of them, or the one in the path.
fn vhosts_of(mgmt: &Mgmt, only: Option<&str>) -> ApiResult<Vec<Arc<VHost>>> {
    match only {
        Some(v) => Ok(vec![vhost(mgmt, v)?]),
        None => Ok(mgmt
            .broker
            .vhosts()
            .into_iter()
            .filter(|v| crate::mgmt::authz::current_sees_vhost(mgmt, &v.name))
            .collect()),
    }
}
