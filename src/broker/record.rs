//! The stored form of a message: a format byte, the time Warren took it, exchange, routing key,
//! properties (flag word + present properties, as in a content header) and the body, in one
//! record.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::{be_u16, be_u64, u8 as byte};

use super::message::Message;
use crate::protocol::wire::{self, PResult};
use crate::protocol::BasicProperties;

/// Bumped when the layout changes; records of another format are refused, not misread.
const FORMAT: u8 = 1;

pub fn encode(m: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(m.body.len() + 72);
    encode_into(&mut b, m);
    b.freeze()
}

/// The record after `prefix` (a stream entry's header), in one buffer.
pub fn encode_after(prefix: &[u8], m: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(prefix.len() + m.body.len() + 72);
    b.put_slice(prefix);
    encode_into(&mut b, m);
    b.freeze()
}

/// When a record says its message arrived, without decoding the rest.
pub fn timestamp_of(record: &[u8]) -> Option<u64> {
    (record.first() == Some(&FORMAT)).then(|| record.get(1..9)?.try_into().ok().map(u64::from_be_bytes))?
}

fn encode_into(b: &mut BytesMut, m: &Message) {
    b.put_u8(FORMAT);
    b.put_u64(m.timestamp_ms);
    wire::put_shortstr(b, &m.exchange);
    wire::put_shortstr(b, &m.routing_key);
    m.properties.encode(b);
    b.put_slice(&m.body);
}

/// `None` when the record is not one `encode` wrote.
pub fn decode(record: &Bytes) -> Option<Message> {
    type Parts = (u8, u64, crate::protocol::ShortStr, crate::protocol::ShortStr, Box<BasicProperties>);
    let parse = || -> PResult<'_, Parts> {
        let (i, format) = byte(&record[..])?;
        let (i, timestamp_ms) = be_u64(i)?;
        let (i, exchange) = wire::shortstr(record, i)?;
        let (i, routing_key) = wire::shortstr(record, i)?;
        let (i, flags) = be_u16(i)?;
        let (i, properties) = BasicProperties::decode_boxed(flags, record, i)?;
        Ok((i, (format, timestamp_ms, exchange, routing_key, properties)))
    };
    let (rest, (format, timestamp_ms, exchange, routing_key, properties)) = parse().ok()?;
    if format != FORMAT {
        return None;
    }
    let body = record.slice_ref(rest);
    Some(Message { exchange, routing_key, properties, body, timestamp_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShortStr;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        let m = Message {
            exchange: ShortStr::from_static("amq.direct"),
            routing_key: ShortStr::from_static("k"),
            properties: Box::new(BasicProperties {
                delivery_mode: Some(2),
                message_id: Some(ShortStr::from_static("id")),
                ..Default::default()
            }),
            body: Bytes::from_static(b"hello"),
            timestamp_ms: 1_700_000_000_123,
        };
        assert_eq!(decode(&encode(&m)), Some(m.clone()));
        assert_eq!(timestamp_of(&encode(&m)), Some(1_700_000_000_123));
        assert_eq!(encode_after(b"pre", &m).slice(3..), encode(&m));
        assert_eq!(decode(&Bytes::from_static(b"\x09ab")), None);
    }
}
