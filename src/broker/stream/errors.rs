//! RabbitMQ 3.10's replies to what a stream refuses, word for word (checked against the
//! reference broker; `q` is RabbitMQ's `queue 'q' in vhost '/'`).

use std::fmt::Display;

use crate::protocol::{AmqpError, ReplyCode};

fn precondition(text: String) -> AmqpError {
    AmqpError::new(ReplyCode::PreconditionFailed, text)
}

/// 406: an argument of another queue type (`x-max-length`, `x-message-ttl`, ...), on
/// `queue.declare` or `basic.consume` (`x-priority`).
pub fn foreign_arg(key: &str, queue: &str, vhost: &str) -> AmqpError {
    precondition(format!(
        "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}' of queue type rabbit_stream_queue"
    ))
}

/// 406: `auto-delete`, `exclusive-owner` or `non-durable`.
pub fn invalid_property(property: &str, queue: &str, vhost: &str) -> AmqpError {
    precondition(format!("invalid property '{property}' for queue '{queue}' in vhost '{vhost}'"))
}

/// 406: a stream needs a name.
pub fn server_named() -> AmqpError {
    precondition("Cannot declare a server-named queue for type rabbit_stream_queue".into())
}

/// 406: `x-stream-max-segment-size-bytes` above 3 GB.
pub fn segment_too_large() -> AmqpError {
    precondition("Exceeded max value for x-stream-max-segment-size-bytes".into())
}

/// 406: `x-stream-filter-size-bytes` out of 16..=255 (`what`: `value`) or not an integer
/// (`what`: `type`).
pub fn filter_size(what: &str) -> AmqpError {
    precondition(format!("Invalid {what} for x-stream-filter-size-bytes"))
}

/// 406: `basic.consume` without a per-consumer prefetch.
pub fn prefetch_required(queue: impl Display, vhost: impl Display) -> AmqpError {
    precondition(format!("consumer prefetch count is not set for 'queue '{queue}' in vhost '{vhost}''"))
}

/// 540 (closes the connection): `basic.consume` with `no_ack`.
pub fn no_ack(queue: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::not_implemented(format!(
        "automatic acknowledgement not supported by stream queues queue '{queue}' in vhost '{vhost}'"
    ))
}

/// 540 (closes the connection): `basic.get` or `queue.purge` (`method`).
pub fn unsupported(method: &str, queue: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::not_implemented(format!("{method} not supported by stream queues queue '{queue}' in vhost '{vhost}'"))
}

/// 540 (closes the connection): a stream consumer on a channel with a global prefetch.
pub fn global_qos(queue: impl Display, vhost: impl Display) -> AmqpError {
    AmqpError::not_implemented(format!("queue '{queue}' in vhost '{vhost}' does not support global qos"))
}

/// 406: a broker without a data directory keeps no log.
pub fn needs_store(queue: impl Display, vhost: impl Display) -> AmqpError {
    precondition(format!("stream queue '{queue}' in vhost '{vhost}' needs a data directory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_match_rabbitmq_3_10() {
        let text = |e: AmqpError| e.reply_text().to_string();
        assert_eq!(
            text(foreign_arg("x-max-length", "ps1", "/")),
            "PRECONDITION_FAILED - invalid arg 'x-max-length' for queue 'ps1' in vhost '/' of queue type \
             rabbit_stream_queue"
        );
        assert_eq!(
            text(prefetch_required("ps1", "/")),
            "PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 'ps1' in vhost '/''"
        );
        let e = no_ack("ps1", "/");
        assert!(e.is_connection_error());
        assert_eq!(
            text(e),
            "NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue 'ps1' in vhost '/'"
        );
        assert_eq!(
            text(unsupported("basic.get", "ps1", "/")),
            "NOT_IMPLEMENTED - basic.get not supported by stream queues queue 'ps1' in vhost '/'"
        );
    }
}
