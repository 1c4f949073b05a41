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

// Connection-level errors: the handshake, channel 0 and channel numbers. Each closes the
// connection whatever its code's usual scope.

fn hard(code: ReplyCode, text: impl Into<std::borrow::Cow<'static, str>>) -> AmqpError {
    AmqpError::connection(code, text)
}

/// 503: a handshake method that is not the one expected next (`what`: `connection.tune-ok`).
pub fn expected_method(what: &'static str) -> AmqpError {
    hard(ReplyCode::CommandInvalid, format!("expected {what}"))
}

/// 503: a frame on another channel than 0 during the handshake.
pub fn expected_on_channel_zero(what: &'static str) -> AmqpError {
    hard(ReplyCode::CommandInvalid, format!("expected {what} on channel 0"))
}

/// 403: a SASL response that gives no user and password (`why`: what is wrong with it).
pub fn sasl_malformed(why: &str) -> AmqpError {
    hard(ReplyCode::AccessRefused, why.to_string())
}

/// 503: a SASL mechanism that was not offered.
pub fn unknown_mechanism(mechanism: impl Display) -> AmqpError {
    hard(ReplyCode::CommandInvalid, format!("unknown authentication mechanism '{mechanism}'"))
}

/// 403 in `connection.start-ok`: wrong credentials, or a user not allowed from there.
pub fn login_refused(mechanism: impl Display) -> AmqpError {
    hard(
        ReplyCode::AccessRefused,
        format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
    )
    .in_method(10, 11)
}

fn tune_refused(text: String) -> AmqpError {
    hard(ReplyCode::NotAllowed, text).in_method(10, 31)
}

/// 530 in `connection.tune-ok`: a frame size below the protocol's minimum.
pub fn frame_max_too_small(asked: u32, min: u32) -> AmqpError {
    tune_refused(format!("frame_max={asked} < {min} min size"))
}

/// 530 in `connection.tune-ok`: a frame size above what the server offered.
pub fn frame_max_too_large(asked: u32, max: u32) -> AmqpError {
    tune_refused(format!("frame_max={asked} > {max} max size"))
}

/// 530 in `connection.tune-ok`: more channels than the server offered.
pub fn channel_max_too_large(asked: u16, max: u16) -> AmqpError {
    tune_refused(format!("channel_max={asked} > {max} max size"))
}

/// 530 in `connection.open`: a vhost that does not exist.
/// 403: the predeclared `amq.*` exchanges cannot be deleted.
pub fn system_exchange_deletion(name: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::new(
        ReplyCode::AccessRefused,
        format!("deletion of system exchange '{name}' in vhost '{vhost}' not allowed"),
    )
}

/// 530: the user has no permission entry on the vhost it opens.
pub fn vhost_access_refused(vhost: impl Display, user: impl Display) -> AmqpError {
    hard(ReplyCode::NotAllowed, format!("access to vhost '{vhost}' refused for user '{user}'")).in_method(10, 40)
}

/// 403 on a channel: the user's permissions do not cover the operation.
pub fn access_refused(refused: &crate::auth::access::Refused, vhost: impl Display, user: impl Display) -> AmqpError {
    use crate::auth::access::Refused;
    let text = match refused {
        Refused::Resource { perm, resource, name } => {
            format!(
                "{} access to {} '{name}' in vhost '{vhost}' refused for user '{user}'",
                perm.name(),
                resource.name()
            )
        }
        Refused::Topic { perm, exchange, key } => format!(
            "{} access to topic '{key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{user}'",
            perm.name()
        ),
    };
    AmqpError::new(ReplyCode::AccessRefused, text)
}

pub fn vhost_not_found(vhost: impl Display) -> AmqpError {
    hard(ReplyCode::NotAllowed, format!("vhost {vhost} not found")).in_method(10, 40)
}

/// 530 at `connection.open`: the vhost's `max-connections` is reached.
pub fn vhost_connection_limit(vhost: impl Display, user: impl Display, limit: usize) -> AmqpError {
    hard(
        ReplyCode::NotAllowed,
        format!("access to vhost '{vhost}' refused for user '{user}': connection limit ({limit}) is reached"),
    )
    .in_method(10, 40)
}

/// 530 at `connection.open`: the user's `max-connections` is reached.
pub fn user_connection_limit(user: impl Display, limit: usize) -> AmqpError {
    hard(
        ReplyCode::NotAllowed,
        format!("connection refused for user '{user}': user connection limit ({limit}) is reached"),
    )
    .in_method(10, 40)
}

/// 530 at `channel.open`: the user's `max-channels` is reached (RabbitMQ 3.10's text, the
/// limit in parentheses).
pub fn user_channel_limit(user: impl Display, limit: usize) -> AmqpError {
    hard(
        ReplyCode::NotAllowed,
        format!("number of channels opened for user '{user}' has reached the maximum allowed user limit of ({limit})"),
    )
    .in_method(20, 10)
}

/// 406: a new queue in a vhost whose `max-queues` is reached.
pub fn queue_limit_reached(queue: impl Display, vhost: impl Display, limit: usize) -> AmqpError {
    precondition(format!("cannot declare queue '{queue}': queue limit in vhost '{vhost}' ({limit}) is reached"))
}

/// 504: a frame other than `channel.open` on a channel that is not open.
pub fn expected_channel_open() -> AmqpError {
    hard(ReplyCode::ChannelError, "expected 'channel.open'")
}

/// 530 in `channel.open`: a channel number above the negotiated `channel_max`.
pub fn channel_max_exceeded(channel: u16, channel_max: u16) -> AmqpError {
    hard(ReplyCode::NotAllowed, format!("channel number {channel} exceeds the negotiated channel_max ({channel_max})"))
        .in_method(20, 10)
}

/// 503: a method on channel 0 that does not belong there.
pub fn unexpected_on_channel_zero(name: impl Display, class_id: u16, method_id: u16) -> AmqpError {
    hard(ReplyCode::CommandInvalid, format!("unexpected method {name} on channel 0")).in_method(class_id, method_id)
}

/// 505: a content header or body on channel 0.
pub fn content_on_channel_zero() -> AmqpError {
    AmqpError::unexpected_frame("content frame on channel 0")
}

/// 320: the broker is shutting down.
pub fn broker_shutdown() -> AmqpError {
    hard(ReplyCode::ConnectionForced, "broker shutdown")
}

/// 320: an administrator closed the connection (the management API's "close connection";
/// RabbitMQ's default reason is [`FORCED_CLOSE_DEFAULT_REASON`]).
pub fn connection_forced(reason: impl Display) -> AmqpError {
    hard(ReplyCode::ConnectionForced, reason.to_string())
}

/// Why the connections of a deleted vhost are closed (320).
pub fn vhost_deleted(vhost: impl Display) -> String {
    format!("vhost '{vhost}' is deleted")
}

/// Why the connections of a deleted user are closed (320).
pub fn user_deleted(user: impl Display) -> String {
    format!("user '{user}' is deleted")
}

/// The reason RabbitMQ's management plugin gives when none is supplied.
pub const FORCED_CLOSE_DEFAULT_REASON: &str = "Closed via management plugin";

/// 406: a queue argument out of range or of the wrong kind; `detail` is printed as Erlang
/// prints the reason term (`{value_zero,0}`, `"expected integer, got longstr"`).
pub fn invalid_queue_arg(key: &str, queue: &str, vhost: &str, detail: impl Display) -> AmqpError {
    precondition(format!("invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {detail}"))
}

/// 406: an argument of the wrong AMQP type (`x-dead-letter-exchange` that is not a string).
pub fn invalid_queue_arg_type(key: &str, type_name: &str, queue: &str, vhost: &str) -> AmqpError {
    precondition(format!("invalid type '{type_name}' for arg '{key}' in queue '{queue}' in vhost '{vhost}'"))
}

/// 406: a binding the exchange's type refuses: a headers exchange's `x-match`, a consistent-hash
/// exchange's weight (`The binding key must be an integer: <<"abc">>`).
pub fn invalid_binding(text: String) -> AmqpError {
    precondition(text)
}

/// 406, the consistent-hash plugin's texts for its exchange arguments (`Unsupported property:
/// app_id`, `hash-header and hash-property are mutually exclusive`).
pub fn invalid_hash_argument(text: String) -> AmqpError {
    precondition(text)
}

/// 406, the message-deduplication plugin's texts: `x-cache-size`/`x-cache-ttl` not a positive
/// integer (`required`: `x-cache-size`, which must be there).
pub fn invalid_cache_arg(key: &str, required: bool) -> AmqpError {
    let prefix = if required { "Missing or invalid argument" } else { "Invalid argument" };
    precondition(format!("{prefix}, '{key}' must be an integer greater than 0"))
}

/// 406, the delayed-message plugin's text for a missing or unusable `x-delayed-type`.
pub fn invalid_delayed_type(text: &'static str) -> AmqpError {
    precondition(text.into())
}

/// 530: `basic.consume` with a consumer tag the channel already uses (a connection error).
pub fn consumer_tag_reused(tag: impl Display) -> AmqpError {
    AmqpError::connection(ReplyCode::NotAllowed, format!("attempt to reuse consumer tag '{tag}'"))
}

/// 541: a transaction's persistent messages could not be written (closes the connection).
pub fn tx_write_failed() -> AmqpError {
    AmqpError::connection(ReplyCode::InternalError, "could not write the transaction to disk")
}

/// 504: `channel.open` on a channel that is open.
pub fn channel_already_open() -> AmqpError {
    AmqpError::new(ReplyCode::ChannelError, "second 'channel.open' seen").in_method(20, 10)
}

/// 503: a method a channel does not take.
pub fn unimplemented_method(name: impl Display) -> AmqpError {
    AmqpError::new(ReplyCode::CommandInvalid, format!("unimplemented method {name}"))
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

    #[test]
    fn connection_errors_close_the_connection() {
        let forced = connection_forced(FORCED_CLOSE_DEFAULT_REASON);
        assert!(forced.is_connection_error());
        assert_eq!(forced.reply_text().to_string(), "CONNECTION_FORCED - Closed via management plugin");
        assert_eq!(broker_shutdown().reply_text().to_string(), "CONNECTION_FORCED - broker shutdown");
        // As RabbitMQ 3.10.8 closes the connections of a deleted vhost or user.
        let vhost_gone = connection_forced(vhost_deleted("v"));
        assert_eq!(vhost_gone.reply_text().to_string(), "CONNECTION_FORCED - vhost 'v' is deleted");
        assert_eq!(user_deleted("u"), "user 'u' is deleted");
        let refused = login_refused("PLAIN");
        assert!(refused.is_connection_error());
        assert_eq!((refused.class_id, refused.method_id), (10, 11));
        assert_eq!(
            refused.reply_text().to_string(),
            "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker \
             logfile."
        );
        assert_eq!(
            frame_max_too_small(512, 4096).reply_text().to_string(),
            "NOT_ALLOWED - frame_max=512 < 4096 min size"
        );
        assert!(content_on_channel_zero().is_connection_error());
        assert!(sasl_malformed("malformed PLAIN response").is_connection_error());
    }
}
