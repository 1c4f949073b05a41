//! The stored form of a message: a format byte, the time Warren took it, exchange, routing key,
//! properties (flag word + present properties, as in a content header) and the body, in one
//! record.
//!
//! A persistent message of a durable queue is stored as an *entry* in the queue's index: the
//! whole record when its body is small, or — from [`SPLIT_BODY`] bytes — only its header (with
//! the body's length), the body going to a column family of its own. Recovery then reads the
//! index alone, a few dozen bytes per message, and the bodies of the memory window: start-up no
//! longer reads every body on disk (RabbitMQ's queue index embeds small messages the same way).

use bytes::{BufMut, Bytes, BytesMut};

use super::message::Message;
use crate::protocol::wire::{self, PResult};
use crate::protocol::BasicProperties;

/// Bumped when the layout changes; records of another format are refused, not misread.
const FORMAT: u8 = 1;
/// An index entry whose body is stored apart: format, timestamp, body length, then as a record
/// without its body.
const FORMAT_HEADER: u8 = 2;

/// Bodies from this size on are stored apart from their index entry. Below it the whole record
/// stays in the index, where RocksDB keeps it inline (its blob threshold is 1 KiB).
pub const SPLIT_BODY: usize = 512;

/// Whether a body of this size is stored apart from its message's index entry.
pub fn is_split(body_len: usize) -> bool {
    body_len >= SPLIT_BODY
}

/// A queue index entry, read back.
pub enum Entry {
    /// The whole message.
    Whole(Message),
    /// The message without its body (`body` is empty), which is `body_len` bytes in the store.
    Header { msg: Message, body_len: u32 },
}

impl Entry {
    /// The size of the message's body.
    pub fn body_len(&self) -> usize {
        match self {
            Entry::Whole(m) => m.body.len(),
            Entry::Header { body_len, .. } => *body_len as usize,
        }
    }

    /// The message, its properties at least: a header entry's body is empty.
    pub fn message(&self) -> &Message {
        match self {
            Entry::Whole(m) | Entry::Header { msg: m, .. } => m,
        }
    }

    /// The whole message, given the body a header entry lacks (`None` if it needs one and
    /// `body` is `None`, or the body is not the length the entry says).
    pub fn with_body(self, body: Option<Bytes>) -> Option<Message> {
        match self {
            Entry::Whole(m) => Some(m),
            Entry::Header { mut msg, body_len } => {
                let body = body.filter(|b| b.len() == body_len as usize)?;
                msg.body = body;
                Some(msg)
            }
        }
    }
}

/// The index entry of a persistent message: the whole record, or its header alone when the
/// body is stored apart ([`is_split`]; the caller stores `m.body` itself).
pub fn entry(m: &Message) -> Bytes {
    if !is_split(m.body.len()) {
        return encode(m);
    }
    let mut b = BytesMut::with_capacity(96);
    b.put_u8(FORMAT_HEADER);
    b.put_u64(m.timestamp_ms);
    // A body of 4 GiB or more cannot arrive: frames and the max message size bound it.
    b.put_u32(m.body.len() as u32);
    put_envelope(&mut b, m);
    b.freeze()
}

/// `None` when `entry` is neither a record nor a header that [`entry`] wrote.
pub fn decode_entry(entry: &Bytes) -> Option<Entry> {
    match entry.first() {
        Some(&FORMAT_HEADER) => {
            let (i, timestamp_ms) = wire::longlong(&entry[1..]).ok()?;
            let (i, body_len) = wire::long(i).ok()?;
            let (rest, msg) = decode_envelope(entry, i, timestamp_ms)?;
            rest.is_empty().then_some(Entry::Header { msg, body_len })
        }
        _ => decode(entry).map(Entry::Whole),
    }
}

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
    put_envelope(b, m);
    b.put_slice(&m.body);
}

/// Exchange, routing key and properties: what a record holds between its timestamp and body.
fn put_envelope(b: &mut BytesMut, m: &Message) {
    wire::put_shortstr(b, &m.exchange);
    wire::put_shortstr(b, &m.routing_key);
    m.properties.encode(b);
}

/// `None` when the record is not one `encode` wrote.
pub fn decode(record: &Bytes) -> Option<Message> {
    let (i, format) = wire::octet(&record[..]).ok()?;
    if format != FORMAT {
        return None;
    }
    let (i, timestamp_ms) = wire::longlong(i).ok()?;
    let (rest, mut msg) = decode_envelope(record, i, timestamp_ms)?;
    msg.body = record.slice_ref(rest);
    Some(msg)
}

/// The message whose envelope starts at `i` (a slice of `whole`), with an empty body, and
/// what follows the envelope.
fn decode_envelope<'a>(whole: &'a Bytes, i: &'a [u8], timestamp_ms: u64) -> Option<(&'a [u8], Message)> {
    type Parts = (crate::protocol::ShortStr, crate::protocol::ShortStr, Box<BasicProperties>);
    let parse = || -> PResult<'_, Parts> {
        let (i, exchange) = wire::shortstr(whole, i)?;
        let (i, routing_key) = wire::shortstr(whole, i)?;
        let (i, flags) = wire::short(i)?;
        let (i, properties) = BasicProperties::decode_boxed(flags, whole, i)?;
        Ok((i, (exchange, routing_key, properties)))
    };
    let (rest, (exchange, routing_key, properties)) = parse().ok()?;
    Some((rest, Message { exchange, routing_key, properties, body: Bytes::new(), timestamp_ms }))
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
