//! Redeclare equivalence: declaring what exists must ask for the same thing, or RabbitMQ
//! refuses it with `406 PRECONDITION_FAILED - inequivalent arg ...`, printing the values as it
//! does (bare when both sides have the argument, with their types when one side lacks it).

use crate::broker::errors;
use crate::protocol::{AmqpError, FieldTable, FieldValue};

/// Queue arguments whose values must match when a queue is redeclared (RabbitMQ ignores others).
pub const QUEUE_EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
];

/// What a stream compares on a redeclare (and all it looks at: other arguments are neither
/// checked nor compared then, as in RabbitMQ).
pub const STREAM_EQUIVALENCE_ARGS: &[&str] =
    &["x-max-length-bytes", "x-max-age", "x-stream-max-segment-size-bytes", "x-queue-type"];

/// Exchange arguments whose values must match when an exchange is redeclared.
pub const EXCHANGE_EQUIVALENCE_ARGS: &[&str] = &["alternate-exchange"];

pub fn assert_flag(arg: &str, what: &str, received: bool, current: bool) -> Result<(), AmqpError> {
    if received == current {
        return Ok(());
    }
    Err(errors::inequivalent(arg, what, format!("'{received}'"), format!("'{current}'")))
}

pub fn assert_args_equivalent(
    keys: &[&str],
    what: &str,
    received: &FieldTable,
    current: &FieldTable,
) -> Result<(), AmqpError> {
    for key in keys {
        let (r, c) = (received.get(key), current.get(key));
        let same = match (r, c) {
            (None, None) => true,
            (Some(a), Some(b)) => match (a.as_i64(), b.as_i64()) {
                // RabbitMQ compares integers by value whatever their width.
                (Some(x), Some(y)) => x == y,
                _ => a == b,
            },
            _ => false,
        };
        if !same {
            // Both present: RabbitMQ prints the bare values; one missing: with their types.
            let (received, current) = match (r, c) {
                (Some(a), Some(b)) => (format!("'{}'", value_text(a)), format!("'{}'", value_text(b))),
                _ => (describe(r), describe(c)),
            };
            return Err(errors::inequivalent(key, what, received, current));
        }
    }
    Ok(())
}

/// A value as RabbitMQ prints it in equivalence errors.
fn value_text(v: &FieldValue) -> String {
    match (v.as_i64(), v.as_bytes(), v) {
        (Some(n), _, _) => n.to_string(),
        (_, Some(b), _) => String::from_utf8_lossy(b).into_owned(),
        (_, _, FieldValue::Bool(b)) => b.to_string(),
        (_, _, other) => format!("{other:?}"),
    }
}

/// An exchange type as Erlang's `~p` prints its atom: bare when it is a plain word (`direct`),
/// else in single quotes (`'x-consistent-hash'`) — which RabbitMQ's `inequivalent arg 'type'`
/// text then quotes again: `received ''x-consistent-hash'' but current is 'direct'`.
pub fn erlang_atom(name: &str) -> std::borrow::Cow<'_, str> {
    let mut chars = name.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
    if plain {
        name.into()
    } else {
        format!("'{name}'").into()
    }
}

/// `the value '10' of type 'long'` / `none`, as in RabbitMQ's equivalence errors when only one
/// side has the argument.
fn describe(v: Option<&FieldValue>) -> String {
    match v {
        Some(v) => format!("the value '{}' of type '{}'", value_text(v), v.rabbit_type_name()),
        None => "none".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShortStr;

    #[test]
    fn integers_compare_by_value_and_missing_sides_are_described() {
        let mut a = FieldTable::new();
        a.insert(ShortStr::from_static("x-max-length"), FieldValue::I32(10));
        let mut b = FieldTable::new();
        b.insert(ShortStr::from_static("x-max-length"), FieldValue::I64(10));
        assert!(assert_args_equivalent(QUEUE_EQUIVALENCE_ARGS, "queue 'q' in vhost '/'", &a, &b).is_ok());
        let e = assert_args_equivalent(QUEUE_EQUIVALENCE_ARGS, "queue 'q' in vhost '/'", &a, &FieldTable::new())
            .unwrap_err();
        assert_eq!(
            e.message,
            "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received the value '10' of type 'signedint' \
             but current is none"
        );
    }

    #[test]
    fn exchange_types_print_as_erlang_atoms() {
        assert_eq!(erlang_atom("direct"), "direct");
        assert_eq!(erlang_atom("x-consistent-hash"), "'x-consistent-hash'");
        assert_eq!(erlang_atom("Topic"), "'Topic'");
    }
}
