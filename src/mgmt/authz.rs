//! What each user may do through the API, by tag, as RabbitMQ's management plugin decides it:
//!
//! - `administrator`: everything; sees every vhost (its own AMQP permissions still govern what
//!   it declares, deletes, publishes and gets there).
//! - `monitoring`: also node data (`/api/nodes`) and everyone's connections.
//! - `policymaker`: also policies and parameters in its vhosts.
//! - `management`: its vhosts (those it has a permission in), its own connections.
//!
//! Users, permissions, definitions, limits, vhost changes and operator policies are for
//! administrators. The route gate ([`authorize`]) runs before the handler; lists are filtered by
//! [`Caller::sees_vhost`] and [`Caller::sees_connection`]; operations on queues, exchanges,
//! bindings and messages check the caller's AMQP permissions ([`Caller::access`]).

use axum::http::Method;

use super::error::ApiError;
use super::Mgmt;
use crate::auth::access::{Access, Perm, Refused, Resource};
use crate::protocol::ShortStr;

/// Who is calling: put in the request's extensions for the handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub tags: Vec<String>,
}

impl Caller {
    fn has(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn is_admin(&self) -> bool {
        self.has("administrator")
    }

    pub fn is_monitor(&self) -> bool {
        self.is_admin() || self.has("monitoring")
    }

    pub fn is_policymaker(&self) -> bool {
        self.is_admin() || self.has("policymaker")
    }

    /// Whether lists show this vhost's objects to the caller.
    pub fn sees_vhost(&self, mgmt: &Mgmt, vhost: &ShortStr) -> bool {
        self.is_monitor() || mgmt.broker.permissions.get(&self.name, vhost).is_some()
    }

    /// Whether lists show this connection (a management user sees only its own).
    pub fn sees_connection(&self, user: &str) -> bool {
        self.is_monitor() || user == self.name
    }

    /// The caller's AMQP permissions in `vhost` (none there: everything refused).
    pub fn access(&self, mgmt: &Mgmt, vhost: &ShortStr) -> Access {
        match mgmt.broker.permissions.get(&self.name, vhost) {
            Some(p) => Access::new(&p, &mgmt.broker.topic_permissions.of_user_in(&self.name, vhost)),
            None => Access::none(),
        }
    }

    /// One of [`Access`]'s checks against the caller's permissions in `vhost` (compiled once
    /// for the call), or RabbitMQ's API answer (401 `Access refused.`).
    pub fn check(
        &self,
        mgmt: &Mgmt,
        vhost: &ShortStr,
        f: impl FnOnce(&Access) -> Result<(), Refused>,
    ) -> Result<(), ApiError> {
        f(&self.access(mgmt, vhost)).map_err(refused)
    }

    /// `perm` on a queue or exchange of `vhost`.
    pub fn allow(
        &self,
        mgmt: &Mgmt,
        vhost: &ShortStr,
        perm: Perm,
        resource: Resource,
        name: &[u8],
    ) -> Result<(), ApiError> {
        self.check(mgmt, vhost, |a| a.check(perm, resource, name))
    }
}

tokio::task_local! {
    /// The caller of the request being served (set around every handler by the login layer),
    /// so that every list, present and future, shows only what the caller may see without
    /// each handler having to remember it.
    static CALLER: Caller;
}

/// Runs `f` (a request's handling) with `caller` as the current caller.
pub async fn with_caller<F: std::future::Future>(caller: Caller, f: F) -> F::Output {
    CALLER.scope(caller, f).await
}

/// Whether the current request's caller sees this vhost's objects in lists (everything when
/// called outside a request).
pub fn current_sees_vhost(mgmt: &Mgmt, vhost: &ShortStr) -> bool {
    CALLER.try_with(|c| c.sees_vhost(mgmt, vhost)).unwrap_or(true)
}

/// Whether the current request's caller sees a connection of `user` in lists.
pub fn current_sees_connection(user: &str) -> bool {
    CALLER.try_with(|c| c.sees_connection(user)).unwrap_or(true)
}

fn refused(r: Refused) -> ApiError {
    tracing::info!(?r, "HTTP API operation refused by permissions");
    ApiError::not_authorised("Access refused.")
}

const ADMIN_ONLY: [&str; 7] =
    ["users", "permissions", "topic-permissions", "definitions", "vhost-limits", "user-limits", "global-parameters"];
/// Endpoints whose second path segment is a vhost.
const VHOST_SCOPED: [&str; 7] =
    ["exchanges", "queues", "bindings", "policies", "operator-policies", "consumers", "aliveness-test"];

/// The gate in front of every route: `segments` is the path after `/api/`, percent-decoded.
pub fn authorize(mgmt: &Mgmt, caller: &Caller, method: &Method, segments: &[String]) -> Result<(), ApiError> {
    if caller.is_admin() {
        return Ok(());
    }
    let first = segments.first().map(String::as_str).unwrap_or("");
    let writes = method != Method::GET && method != Method::HEAD;
    let not_admin = || Err(ApiError::not_authorised("Not administrator user"));
    let not_object = || Err(ApiError::not_authorised("User not authorised to access object"));
    if ADMIN_ONLY.contains(&first) || (first == "operator-policies" && writes) {
        return not_admin();
    }
    match (first, segments.get(2).map(String::as_str)) {
        ("vhosts", Some("permissions" | "topic-permissions")) => return not_admin(),
        ("vhosts", _) if writes => return not_admin(),
        ("nodes", _) if !caller.is_monitor() => return Err(ApiError::not_authorised("Not monitor user")),
        ("parameters", _) if !caller.is_policymaker() => return not_object(),
        ("policies", _) if writes && !caller.is_policymaker() => return not_object(),
        _ => {}
    }
    let vhost = match first {
        f if VHOST_SCOPED.contains(&f) => segments.get(1),
        "vhosts" if segments.len() > 2 => segments.get(1),
        "parameters" => segments.get(2),
        _ => None,
    };
    if let Some(v) = vhost {
        let allowed = ShortStr::try_from(v.as_str())
            .ok()
            .is_some_and(|v| mgmt.broker.permissions.get(&caller.name, &v).is_some());
        if !allowed {
            return Err(ApiError::not_authorised("User not authorised to access virtual host"));
        }
    }
    Ok(())
}

/// The path after `/api/` (the nested router may have removed that already), split and
/// percent-decoded per segment (a vhost `%2F` stays one).
pub fn segments(path: &str) -> Vec<String> {
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("api/").or_else(|| (path == "api").then_some("")).unwrap_or(path);
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_an_encoded_vhost_whole() {
        assert_eq!(segments("/api/queues/%2F/q%20x"), ["queues", "/", "q x"]);
        assert_eq!(segments("/api/overview"), ["overview"]);
        assert_eq!(segments("/queues/%2F"), ["queues", "/"], "as the nested router passes it");
    }
}
