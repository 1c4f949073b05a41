//! The stored form of a message: exchange, routing key, properties (flag word + present
//! properties, as in a content header) and the body, in one record.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::be_u16;

use crate::broker::message::Message;
use crate::protocol::wire::{self, PResult};
use crate::protocol::BasicProperties;

pub fn encode(m: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(m.body.len() + 64);
    wire::put_shortstr(&mut b, &m.exchange);
    wire::put_shortstr(&mut b, &m.routing_key);
    m.properties.encode(&mut b);
    b.put_slice(&m.body);
    b.freeze()
}

/// `None` when the record is not one `encode` wrote.
pub fn decode(record: &Bytes) -> Option<Message> {
    let parse = || -> PResult<'_, (crate::protocol::ShortStr, crate::protocol::ShortStr, BasicProperties)> {
        let (i, exchange) = wire::shortstr(record, record)?;
        let (i, routing_key) = wire::shortstr(record, i)?;
        let (i, flags) = be_u16(i)?;
        let (i, properties) = BasicProperties::decode_with_flags(flags, record, i)?;
        Ok((i, (exchange, routing_key, properties)))
    };
    let (rest, (exchange, routing_key, properties)) = parse().ok()?;
    let body = record.slice_ref(rest);
    Some(Message { exchange, routing_key, properties, body })
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
            properties: BasicProperties {
                delivery_mode: Some(2),
                message_id: Some(ShortStr::from_static("id")),
                ..Default::default()
            },
            body: Bytes::from_static(b"hello"),
        };
        assert_eq!(decode(&encode(&m)), Some(m));
        assert_eq!(decode(&Bytes::from_static(b"\x09ab")), None);
    }
}
