//! HTTP basic authentication against the broker's users, in front of every `/api` route.
//! `rabbitmqadmin` and the HTTP client libraries send credentials with every request (never
//! waiting for a challenge); a request without them gets the challenge.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::error::ApiError;
use super::Mgmt;
use crate::auth::LoginRefused;

/// A user needs one of these tags to use the API at all (RabbitMQ's rule); which endpoints each
/// opens is `authz.rs`.
const MANAGEMENT_TAGS: [&str; 4] = ["management", "policymaker", "monitoring", "administrator"];

pub use super::authz::Caller;

pub async fn require_login(
    State(mgmt): State<Arc<Mgmt>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some((user, password)) = credentials(&request) else {
        return ApiError::login_failed("Not_Authorized").into_response();
    };
    match mgmt.broker.users.authenticate(&user, &password, peer.ip()) {
        Ok(u) if !MANAGEMENT_TAGS.iter().any(|t| u.has_tag(t)) => {
            tracing::info!(user = %user, peer = %peer, "HTTP API login refused: no management tag");
            ApiError::not_authorised("Not management user").into_response()
        }
        Ok(u) => {
            let caller = Caller { name: u.name.clone(), tags: u.tags.clone() };
            let segments = super::authz::segments(request.uri().path());
            if let Err(e) = super::authz::authorize(&mgmt, &caller, request.method(), &segments) {
                return e.into_response();
            }
            request.extensions_mut().insert(caller.clone());
            super::authz::with_caller(caller, next.run(request)).await
        }
        Err(refused) => {
            let reason = match refused {
                LoginRefused::BadCredentials => "Login failed",
                LoginRefused::NotFromLoopback => "User can only log in via localhost",
            };
            tracing::info!(user = %user, peer = %peer, reason, "HTTP API login refused");
            ApiError::login_failed(reason).into_response()
        }
    }
}

fn credentials(request: &Request) -> Option<(String, String)> {
    let value = request.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
