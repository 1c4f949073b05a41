//! What the API answers when something fails: always `{"error": ..., "reason": ...}` with
//! RabbitMQ's status codes and texts, because `rabbitmqadmin` prints `reason` for a 400 (and
//! dies on anything else), and rabbit-hole's tests assert the 404 body word for word.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::protocol::{AmqpError, ReplyCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub reason: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError { status, error, reason: reason.into() }
    }

    /// A missing vhost, queue, exchange, binding, connection...: RabbitMQ rewrites cowboy's
    /// empty 404 into exactly this.
    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// Wrong or missing credentials (RabbitMQ 3.x's body; the challenge header is added in
    /// `into_response`).
    pub fn login_failed(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", reason)
    }

    /// Authenticated, but not allowed to do this.
    pub fn not_authorised(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method Not Allowed")
    }

    pub fn internal(reason: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error", reason)
    }
}

/// An AMQP failure of an operation the API performed for the caller (a declare, a bind, a
/// delete): RabbitMQ's management plugin answers 400 with the AMQP text (`inequivalent arg
/// 'durable' for queue 'q' in vhost '/': received 'false' but current is 'true'`), except
/// where the object is missing (404) or access is refused (401).
impl From<AmqpError> for ApiError {
    fn from(e: AmqpError) -> ApiError {
        match e.code {
            ReplyCode::NotFound => ApiError::not_found(),
            ReplyCode::AccessRefused | ReplyCode::NotAllowed => ApiError::not_authorised("Access refused."),
            _ => ApiError::bad_request(e.message.into_owned()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "reason": self.reason });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"RabbitMQ Management\""));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_errors_map_to_rabbitmq_statuses() {
        let missing = AmqpError::new(ReplyCode::NotFound, "no queue 'q' in vhost '/'");
        assert_eq!(ApiError::from(missing), ApiError::not_found());
        let inequivalent = AmqpError::new(ReplyCode::PreconditionFailed, "inequivalent arg 'durable'");
        let e = ApiError::from(inequivalent);
        assert_eq!(
            (e.status, e.error, e.reason.as_str()),
            (StatusCode::BAD_REQUEST, "bad_request", "inequivalent arg 'durable'")
        );
    }
}
