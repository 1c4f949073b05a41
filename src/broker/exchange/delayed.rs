//! The `x-delayed-message` exchange type, as the rabbitmq-delayed-message-exchange plugin
//! defines it: the `x-delayed-type` argument names the routing (direct, fanout, topic, headers),
//! and a message whose `x-delay` header asks for a positive delay (ms) is held until it is due,
//! then routed through the exchange's bindings as they are at that time, carrying `x-delay`
//! negated. What holds and fires messages is [`crate::broker::delayed`]; this file is the
//! argument and header rules, checked against the plugin's source:
//!
//! - `x-delayed-type` missing or not a string: 406 `Invalid argument, 'x-delayed-type' must be an
//!   existing exchange type` (channel error); naming `x-delayed-message` itself: 406 `Invalid
//!   argument, 'x-delayed-message' can't be used for 'x-delayed-type'`; naming a type that does
//!   not exist: 503 `unknown exchange type '<t>'` (connection error, as `exchange.declare` of
//!   that type).
//! - `x-delay` of any integer type (`b B s u I i l`), a float (truncated) or a string holding an
//!   integer (`"1500"`, `"+1500"`). The plugin crashes the channel on a string that is not an
//!   integer and on a decimal; Warren routes such a message at once (string) or truncates
//!   (decimal) instead. Other types (booleans, timestamps, byte arrays, ...) mean no delay.
//! - Delays outside `1..=4294967295` ms (the plugin's Erlang timer limit) mean no delay: the
//!   message is routed at once with its header unchanged.
//! - A delayed message is delivered with `x-delay` = -delay (a signed 32-bit integer, 64-bit
//!   when -delay does not fit), so a delayed exchange it reaches later does not hold it again.

use crate::broker::errors;
use crate::protocol::{AmqpError, BasicProperties, FieldTable, FieldValue, ShortStr};

use super::ExchangeKind;

/// The exchange type name clients declare.
pub const TYPE_NAME: &str = "x-delayed-message";
/// The argument naming the routing type.
pub const ROUTING_TYPE_ARG: &str = "x-delayed-type";
/// The message header asking for a delay in milliseconds.
pub const DELAY_HEADER: &str = "x-delay";
/// The longest delay held; longer ones are routed at once, as the plugin does.
pub const MAX_DELAY_MS: u64 = u32::MAX as u64;

/// The routing type an `x-delayed-message` exchange declared with `arguments` uses.
pub fn routing_type(arguments: &FieldTable) -> Result<ExchangeKind, AmqpError> {
    let Some(name) = arguments.get(ROUTING_TYPE_ARG).and_then(FieldValue::as_bytes) else {
        return Err(errors::invalid_delayed_type(
            "Invalid argument, 'x-delayed-type' must be an existing exchange type",
        ));
    };
    match ExchangeKind::parse(name) {
        Some(ExchangeKind::Delayed) => Err(errors::invalid_delayed_type(
            "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'",
        )),
        Some(kind) => Ok(kind),
        None => Err(errors::unknown_exchange_type(String::from_utf8_lossy(name))),
    }
}

/// The delay in milliseconds a message with these headers is to be held for, or `None` when it
/// is to be routed at once (no `x-delay`, not a number, ≤ 0, or beyond [`MAX_DELAY_MS`]).
pub fn delay_of(headers: Option<&FieldTable>) -> Option<u64> {
    let value = headers?.get(DELAY_HEADER)?;
    let ms: i64 = match value {
        FieldValue::I8(_)
        | FieldValue::U8(_)
        | FieldValue::I16(_)
        | FieldValue::U16(_)
        | FieldValue::I32(_)
        | FieldValue::U32(_)
        | FieldValue::I64(_) => value.as_i64()?,
        // `as` truncates towards zero and saturates (NaN becomes 0): Erlang's trunc/1.
        FieldValue::F32(f) => *f as i64,
        FieldValue::F64(f) => *f as i64,
        FieldValue::Decimal { scale, value } => i64::from(*value) / 10i64.checked_pow(u32::from(*scale))?,
        FieldValue::LongStr(s) => match std::str::from_utf8(s.as_bytes()).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(ms) => ms,
            None => {
                tracing::debug!(value = %String::from_utf8_lossy(s.as_bytes()), "x-delay is not an integer; routed at once");
                return None;
            }
        },
        _ => return None,
    };
    u64::try_from(ms).ok().filter(|ms| (1..=MAX_DELAY_MS).contains(ms))
}

/// Sets `x-delay` to `-delay`, as the plugin does to the messages it held.
pub fn mark_delayed(properties: &mut BasicProperties, delay: u64) {
    let negated = -i64::try_from(delay).unwrap_or(i64::MAX);
    let value = match i32::try_from(negated) {
        Ok(v) => FieldValue::I32(v),
        Err(_) => FieldValue::I64(negated),
    };
    properties.headers.get_or_insert_with(FieldTable::new).insert(ShortStr::from_static(DELAY_HEADER), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LongStr;

    fn with(key: &'static str, v: FieldValue) -> FieldTable {
        let mut t = FieldTable::new();
        t.insert(ShortStr::from_static(key), v);
        t
    }

    #[test]
    fn routing_type_errors_are_the_plugins() {
        assert_eq!(routing_type(&with(ROUTING_TYPE_ARG, "topic".into())), Ok(ExchangeKind::Topic));
        let bytes = FieldValue::Bytes(bytes::Bytes::from_static(b"fanout"));
        assert_eq!(routing_type(&with(ROUTING_TYPE_ARG, bytes)), Ok(ExchangeKind::Fanout));
        for missing in [FieldTable::new(), with(ROUTING_TYPE_ARG, FieldValue::I32(1))] {
            let e = routing_type(&missing).unwrap_err();
            assert_eq!(
                e.reply_text().as_bytes(),
                b"PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type"
            );
            assert!(!e.is_connection_error());
        }
        let e = routing_type(&with(ROUTING_TYPE_ARG, TYPE_NAME.into())).unwrap_err();
        assert_eq!(
            e.reply_text().as_bytes(),
            b"PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"
        );
        let e = routing_type(&with(ROUTING_TYPE_ARG, "nope".into())).unwrap_err();
        assert_eq!(e.reply_text().as_bytes(), b"COMMAND_INVALID - unknown exchange type 'nope'");
        assert!(e.is_connection_error());
    }

    #[test]
    fn delays_in_every_integer_type_floats_and_integer_strings() {
        let d = |v: FieldValue| delay_of(Some(&with(DELAY_HEADER, v)));
        assert_eq!(d(FieldValue::I8(5)), Some(5));
        assert_eq!(d(FieldValue::U8(5)), Some(5));
        assert_eq!(d(FieldValue::I16(1500)), Some(1500));
        assert_eq!(d(FieldValue::U16(1500)), Some(1500));
        assert_eq!(d(FieldValue::I32(1500)), Some(1500));
        assert_eq!(d(FieldValue::U32(u32::MAX)), Some(MAX_DELAY_MS));
        assert_eq!(d(FieldValue::I64(1500)), Some(1500));
        assert_eq!(d(FieldValue::F64(1500.9)), Some(1500), "truncated");
        assert_eq!(d(FieldValue::F32(2.5)), Some(2));
        assert_eq!(d(FieldValue::Decimal { scale: 1, value: 15005 }), Some(1500));
        assert_eq!(d(FieldValue::LongStr(LongStr::from("300"))), Some(300));
        assert_eq!(d(FieldValue::LongStr(LongStr::from("+300"))), Some(300));
    }

    #[test]
    fn no_delay_when_missing_not_positive_too_long_or_not_a_number() {
        let d = |v: FieldValue| delay_of(Some(&with(DELAY_HEADER, v)));
        assert_eq!(delay_of(None), None);
        assert_eq!(delay_of(Some(&FieldTable::new())), None);
        assert_eq!(d(FieldValue::I32(0)), None);
        assert_eq!(d(FieldValue::I32(-1500)), None);
        assert_eq!(d(FieldValue::I64(MAX_DELAY_MS as i64 + 1)), None);
        assert_eq!(d(FieldValue::F64(0.5)), None);
        assert_eq!(d(FieldValue::F64(f64::NAN)), None);
        assert_eq!(d(FieldValue::LongStr(LongStr::from("soon"))), None);
        assert_eq!(d(FieldValue::LongStr(LongStr::from(" 300"))), None);
        assert_eq!(d(FieldValue::LongStr(LongStr::from("-300"))), None);
        assert_eq!(d(FieldValue::Bool(true)), None);
        assert_eq!(d(FieldValue::Timestamp(1000)), None);
        assert_eq!(d(FieldValue::Bytes(bytes::Bytes::from_static(b"300"))), None);
        assert_eq!(d(FieldValue::Decimal { scale: 200, value: 1 }), None, "no overflow panic");
    }

    #[test]
    fn held_messages_carry_the_delay_negated() {
        let mut p = BasicProperties::default();
        mark_delayed(&mut p, 1500);
        assert_eq!(p.headers.as_ref().unwrap().get(DELAY_HEADER), Some(&FieldValue::I32(-1500)));
        assert_eq!(delay_of(p.headers.as_ref()), None, "never held twice");
        let mut p = BasicProperties { headers: Some(with(DELAY_HEADER, "4000000000".into())), ..Default::default() };
        mark_delayed(&mut p, 4_000_000_000);
        let h = p.headers.unwrap();
        assert_eq!((h.len(), h.get(DELAY_HEADER)), (1, Some(&FieldValue::I64(-4_000_000_000))));
    }
}
