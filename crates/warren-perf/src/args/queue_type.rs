//! `--queue-type` and `--stream-offset`: queues declared with an `x-queue-type` argument, and
//! where a stream's consumers start reading (`x-stream-offset` on `basic.consume`).

use std::fmt;

use clap::ValueEnum;
use warren_protocol::FieldValue;

/// The `x-queue-type` a run declares its queues with.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Quorum,
    Stream,
}

impl QueueType {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }

    /// Quorum queues and streams exist only durable.
    pub fn always_durable(self) -> bool {
        self != QueueType::Classic
    }
}

/// Where a stream consumer starts: `first`, `last`, `next` or an interval such as `1h` (sent as
/// a string, for the broker to judge), an offset (a signed 64-bit integer) or a point in time
/// (`@` and Unix seconds, sent as an AMQP timestamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOffset {
    Named(String),
    Offset(i64),
    Timestamp(u64),
}

impl StreamOffset {
    pub fn parse(s: &str) -> Result<StreamOffset, String> {
        let s = s.trim();
        if let Some(secs) = s.strip_prefix('@') {
            return secs
                .parse()
                .map(StreamOffset::Timestamp)
                .map_err(|_| format!("'{s}': after '@' come Unix seconds (e.g. @1700000000)"));
        }
        if let Ok(n) = s.parse::<i64>() {
            return Ok(StreamOffset::Offset(n));
        }
        if s.is_empty() {
            return Err("an empty stream offset; give first, last, next, an offset, @UNIX_SECONDS or 1h".into());
        }
        Ok(StreamOffset::Named(s.to_string()))
    }

    /// The value of the `x-stream-offset` consumer argument.
    pub fn field_value(&self) -> FieldValue {
        match self {
            StreamOffset::Named(s) => s.as_str().into(),
            StreamOffset::Offset(n) => FieldValue::I64(*n),
            StreamOffset::Timestamp(secs) => FieldValue::Timestamp(*secs),
        }
    }
}

impl fmt::Display for StreamOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamOffset::Named(s) => f.write_str(s),
            StreamOffset::Offset(n) => write!(f, "{n}"),
            StreamOffset::Timestamp(secs) => write!(f, "@{secs}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_to_the_argument_types_brokers_take() {
        assert_eq!(StreamOffset::parse("first").unwrap().field_value(), FieldValue::from("first"));
        assert_eq!(StreamOffset::parse("-3").unwrap().field_value(), FieldValue::I64(-3));
        assert_eq!(StreamOffset::parse("@1700000000").unwrap().field_value(), FieldValue::Timestamp(1_700_000_000));
        assert_eq!(StreamOffset::parse("1h").unwrap(), StreamOffset::Named("1h".into()));
        assert!(StreamOffset::parse("@soon").unwrap_err().contains("Unix seconds"));
        assert!(StreamOffset::parse(" ").is_err());
        assert_eq!(StreamOffset::parse("@5").unwrap().to_string(), "@5");
    }
}
