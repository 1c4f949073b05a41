//! RabbitMQ's reply texts, each built in one place.
//!
//! Clients and applications match on these texts (`PRECONDITION_FAILED - inequivalent arg
//! 'durable' for queue 'q' in vhost '/': ...`), so they are RabbitMQ's word for word, checked
//! against the reference broker by the interop tests. A constructor per condition keeps each
//! text in one place instead of at every call site, and the names document what can go wrong.

use std::fmt::Display;

use crate::protocol::{AmqpError, ReplyCode};

fn precondition(text: String) -> AmqpError {
    AmqpError::new(ReplyCode::PreconditionFailed, text)
}

/// 404: `no queue 'q' in vhost '/'` (`kind` is `queue` or `exchange`).
pub fn not_found(kind: &str, name: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::new(ReplyCode::NotFound, format!("no {kind} '{name}' in vhost '{vhost}'"))
}

/// 403: declaring, deleting or binding the default exchange.
pub fn default_exchange_refused() -> AmqpError {
    AmqpError::new(ReplyCode::AccessRefused, "operation not permitted on the default exchange")
}

/// 403: a client-chosen name in the reserved `amq.` namespace (`kind`: `exchange`, `queue`).
pub fn reserved_prefix(kind: &str, name: impl Display) -> AmqpError {
    AmqpError::new(ReplyCode::AccessRefused, format!("{kind} name '{name}' contains reserved prefix 'amq.*'"))
}

/// 403: `basic.publish` to an internal exchange.
pub fn internal_exchange(name: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::new(ReplyCode::AccessRefused, format!("cannot publish to internal exchange '{name}' in vhost '{vhost}'"))
}

/// 403: an exclusive consumer where another consumer is (or the reverse).
pub fn exclusive_consumer(queue: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::new(ReplyCode::AccessRefused, format!("queue '{queue}' in vhost '{vhost}' in exclusive use"))
}

/// 405: another connection's exclusive queue.
pub fn exclusive_locked(queue: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::new(
        ReplyCode::ResourceLocked,
        format!(
            "cannot obtain exclusive access to locked queue '{queue}' in vhost '{vhost}'. It could be originally \
             declared on another connection or the exclusive property value does not match that of the original \
             declaration."
        ),
    )
}

/// 406: a redeclare that differs from what exists; `received`/`current` already quoted or
/// described as RabbitMQ prints them.
pub fn inequivalent(arg: &str, what: impl Display, received: impl Display, current: impl Display) -> AmqpError {
    precondition(format!("inequivalent arg '{arg}' for {what}: received {received} but current is {current}"))
}

/// 406: `if-unused` delete of an exchange with bindings or a queue with consumers
/// (`what`: `exchange 'x' in vhost '/'`).
pub fn in_use(what: impl Display) -> AmqpError {
    precondition(format!("{what} in use"))
}

/// 406: `if-empty` delete of a queue with messages.
pub fn not_empty(queue: impl Display, vhost: impl Display) -> AmqpError {
    precondition(format!("queue '{queue}' in vhost '{vhost}' not empty"))
}

/// 406: an argument of the wrong type or out of range
/// (`invalid arg 'alternate-exchange' for exchange 'x' in vhost '/'`).
pub fn invalid_arg(arg: &str, what: impl Display) -> AmqpError {
    precondition(format!("invalid arg '{arg}' for {what}"))
}

/// 406: a delivery tag the channel never handed out, or already settled.
pub fn unknown_delivery_tag(tag: u64) -> AmqpError {
    precondition(format!("unknown delivery tag {tag}"))
}

/// 406: `tx.commit`/`tx.rollback` without `tx.select`.
pub fn not_transactional() -> AmqpError {
    precondition("channel is not transactional".into())
}

/// 406: `confirm.select` on a transactional channel, or `tx.select` in confirm mode.
pub fn mode_switch(from: &str, to: &str) -> AmqpError {
    precondition(format!("cannot switch from {from} to {to} mode"))
}

/// 406: a message body above `max_message_size`.
pub fn message_too_large(size: u64, max: u64) -> AmqpError {
    precondition(format!("message size {size} is larger than configured max size {max}"))
}

/// 406: the `user_id` property names someone else.
pub fn user_id_mismatch(claimed: impl Display, user: impl Display) -> AmqpError {
    precondition(format!("user_id property set to '{claimed}' but authenticated user was '{user}'"))
}

/// 406: an `expiration` property that is not a non-negative integer within range.
pub fn invalid_expiration(given: impl Display, reason: impl Display) -> AmqpError {
    precondition(format!("invalid expiration '{given}': {reason}"))
}

/// 406: a `CC`/`BCC` header that is not an array of strings.
pub fn invalid_cc_header(name: &str, tag: char) -> AmqpError {
    precondition(format!("invalid header '{name}': expected an array of strings, got type '{tag}'"))
}

/// 406: direct reply-to misuse (`fast reply consumer does not exist`, `reply consumer already
/// set`, `reply consumer cannot acknowledge`).
pub fn reply_to(text: &'static str) -> AmqpError {
    precondition(text.into())
}

/// 406: an unacked delivery outlived its consumer timeout.
pub fn ack_timeout(channel: u16, timeout_ms: u64) -> AmqpError {
    precondition(format!(
        "delivery acknowledgement on channel {channel} timed out. Timeout value used: {timeout_ms} ms. This timeout \
         value can be configured, see consumers doc guide to learn more"
    ))
}

/// 503: an exchange type Warren does not have.
pub fn unknown_exchange_type(kind: impl Display) -> AmqpError {
    AmqpError::new(ReplyCode::CommandInvalid, format!("unknown exchange type '{kind}'"))
}

/// 541: a definition could not be written to the store (logged here, once).
pub fn store_failed(e: impl Display) -> AmqpError {
    tracing::error!(error = %e, "could not write a definition to the store");
    AmqpError::new(ReplyCode::InternalError, format!("could not persist the definition: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts as the reference RabbitMQ sends them (the interop tests pin the same).
    #[test]
    fn texts_match_rabbitmq() {
        assert_eq!(not_found("queue", "q", "/").reply_text().to_string(), "NOT_FOUND - no queue 'q' in vhost '/'");
        assert_eq!(
            inequivalent("durable", "queue 'q' in vhost '/'", "'true'", "'false'").reply_text().to_string(),
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current \
             is 'false'"
        );
        assert_eq!(
            in_use("exchange 'x' in vhost '/'").reply_text().to_string(),
            "PRECONDITION_FAILED - exchange 'x' in vhost '/' in use"
        );
        assert_eq!(
            mode_switch("tx", "confirm").reply_text().to_string(),
            "PRECONDITION_FAILED - cannot switch from tx to confirm mode"
        );
        assert_eq!(reserved_prefix("queue", "amq.q").code, ReplyCode::AccessRefused);
    }
}
