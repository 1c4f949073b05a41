//! Field tables and arrays: the typed key/value maps of method arguments and message headers.
//!
//! Value types follow RabbitMQ, not the 0-9-1 grammar, where the two disagree: `s` is a signed
//! 16-bit integer (not a short string), `l` a signed 64-bit integer, `x` a byte array, and `U`,
//! `L` are not used. Tables keep wire order and duplicate keys, so decode∘encode is the identity.
//! Nesting is allowed to [`MAX_DEPTH`] levels; deeper input is refused instead of risking the
//! stack on a hostile frame.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::{be_f32, be_f64, be_i16, be_i32, be_i64, be_i8, be_u16, be_u32, be_u64, be_u8};
use serde::ser::{SerializeMap, SerializeSeq};

use super::types::{LongStr, ShortStr};
use super::wire::{self, PResult, WireError};

/// Deepest nesting of tables/arrays accepted from the wire. Real clients nest two or three
/// levels (`x-death` is an array of tables of arrays); this leaves ample room.
pub const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal { scale: u8, value: u32 },
    LongStr(LongStr),
    Bytes(Bytes),
    Array(Vec<FieldValue>),
    Timestamp(u64),
    Table(FieldTable),
    Void,
}

impl FieldValue {
    /// The type letter this value is written with.
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal { .. } => b'D',
            FieldValue::LongStr(_) => b'S',
            FieldValue::Bytes(_) => b'x',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
        }
    }

    /// The value as a signed integer, for arguments RabbitMQ accepts in any integer type
    /// (`x-max-length` may arrive as `b`, `s`, `I`, `l`, ...).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::I8(v) => Some(v.into()),
            FieldValue::U8(v) => Some(v.into()),
            FieldValue::I16(v) => Some(v.into()),
            FieldValue::U16(v) => Some(v.into()),
            FieldValue::I32(v) => Some(v.into()),
            FieldValue::U32(v) => Some(v.into()),
            FieldValue::I64(v) => Some(v),
            FieldValue::Timestamp(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The type's name as RabbitMQ prints it in argument errors (`{unacceptable_type,long}`).
    pub fn rabbit_type_name(&self) -> &'static str {
        match self {
            FieldValue::Bool(_) => "bool",
            FieldValue::I8(_) => "byte",
            FieldValue::U8(_) => "unsignedbyte",
            FieldValue::I16(_) => "short",
            FieldValue::U16(_) => "unsignedshort",
            FieldValue::I32(_) => "signedint",
            FieldValue::U32(_) => "unsignedint",
            FieldValue::I64(_) => "long",
            FieldValue::F32(_) => "float",
            FieldValue::F64(_) => "double",
            FieldValue::Decimal { .. } => "decimal",
            FieldValue::LongStr(_) => "longstr",
            FieldValue::Bytes(_) => "binary",
            FieldValue::Array(_) => "array",
            FieldValue::Timestamp(_) => "timestamp",
            FieldValue::Table(_) => "table",
            FieldValue::Void => "void",
        }
    }

    /// The value of an integer type (not timestamps: RabbitMQ refuses those where it wants an
    /// integer).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            FieldValue::Timestamp(_) => None,
            v => v.as_i64(),
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongStr(s) => Some(s.as_bytes()),
            FieldValue::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

impl From<&str> for FieldValue {
    fn from(s: &str) -> FieldValue {
        FieldValue::LongStr(LongStr::from(s))
    }
}

impl From<bool> for FieldValue {
    fn from(b: bool) -> FieldValue {
        FieldValue::Bool(b)
    }
}

impl From<FieldTable> for FieldValue {
    fn from(t: FieldTable) -> FieldValue {
        FieldValue::Table(t)
    }
}

/// An ordered table of `(name, value)` pairs as they appeared on the wire.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    pub const EMPTY: FieldTable = FieldTable(Vec::new());

    pub fn new() -> FieldTable {
        FieldTable(Vec::new())
    }

    /// The first value under `key` (RabbitMQ uses the first of duplicate keys too).
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k.as_bytes() == key.as_bytes()).map(|(_, v)| v)
    }

    /// Replaces the value under `key`, or appends it. Keys from code are short by construction.
    pub fn insert(&mut self, key: ShortStr, value: FieldValue) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let at = self.0.iter().position(|(k, _)| k.as_bytes() == key.as_bytes())?;
        Some(self.0.remove(at).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ShortStr, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The same table with its strings in one allocation of its own. A decoded table's
    /// strings are slices of the buffer it was read from, and keep all of that buffer alive
    /// for as long as they live: a table kept for long (a connection's client properties) is
    /// detached from it first.
    pub fn detached(&self) -> FieldTable {
        let mut buf = BytesMut::new();
        put_table(&mut buf, self);
        let src = buf.freeze();
        // It was decoded before, so it decodes again; a clone would do if it did not.
        parse_table(&src, &src, 0).map(|(_, t)| t).unwrap_or_else(|_| self.clone())
    }

    /// Decodes table entries written without the table's length prefix (how AMQPLAIN's SASL
    /// response carries LOGIN and PASSWORD).
    pub fn decode_entries(entries: &Bytes) -> Result<FieldTable, super::AmqpError> {
        let mut framed = bytes::BytesMut::with_capacity(entries.len() + 4);
        framed.put_u32(entries.len() as u32);
        framed.extend_from_slice(entries);
        let src = framed.freeze();
        match parse_table(&src, &src, 0) {
            Ok((_, t)) => Ok(t),
            Err(e) => Err(wire::syntax_error(e, "field table")),
        }
    }
}

pub(crate) fn parse_table<'a>(src: &'a Bytes, i: &'a [u8], depth: usize) -> PResult<'a, FieldTable> {
    if depth >= MAX_DEPTH {
        return WireError::fail("field table nested too deeply");
    }
    let (rest, body) = len_prefixed(i)?;
    let mut entries = Vec::new();
    let mut i = body;
    while !i.is_empty() {
        let (r, key) = wire::shortstr(src, i)?;
        let (r, value) = parse_value(src, r, depth + 1)?;
        entries.push((key, value));
        i = r;
    }
    Ok((rest, FieldTable(entries)))
}

fn parse_array<'a>(src: &'a Bytes, i: &'a [u8], depth: usize) -> PResult<'a, Vec<FieldValue>> {
    if depth >= MAX_DEPTH {
        return WireError::fail("field array nested too deeply");
    }
    let (rest, body) = len_prefixed(i)?;
    let mut values = Vec::new();
    let mut i = body;
    while !i.is_empty() {
        let (r, value) = parse_value(src, i, depth + 1)?;
        values.push(value);
        i = r;
    }
    Ok((rest, values))
}

fn len_prefixed(i: &[u8]) -> PResult<'_, &[u8]> {
    let (i, len) = be_u32(i)?;
    if len as usize > i.len() {
        return WireError::fail("table or array length runs past the end of the frame");
    }
    let (body, rest) = i.split_at(len as usize);
    Ok((rest, body))
}

fn parse_value<'a>(src: &'a Bytes, i: &'a [u8], depth: usize) -> PResult<'a, FieldValue> {
    let (i, tag) = be_u8(i)?;
    Ok(match tag {
        // RabbitMQ reads any non-zero octet as true.
        b't' => be_u8(i).map(|(i, v)| (i, FieldValue::Bool(v != 0)))?,
        b'b' => be_i8(i).map(|(i, v)| (i, FieldValue::I8(v)))?,
        b'B' => be_u8(i).map(|(i, v)| (i, FieldValue::U8(v)))?,
        b's' => be_i16(i).map(|(i, v)| (i, FieldValue::I16(v)))?,
        b'u' => be_u16(i).map(|(i, v)| (i, FieldValue::U16(v)))?,
        b'I' => be_i32(i).map(|(i, v)| (i, FieldValue::I32(v)))?,
        b'i' => be_u32(i).map(|(i, v)| (i, FieldValue::U32(v)))?,
        b'l' => be_i64(i).map(|(i, v)| (i, FieldValue::I64(v)))?,
        b'f' => be_f32(i).map(|(i, v)| (i, FieldValue::F32(v)))?,
        b'd' => be_f64(i).map(|(i, v)| (i, FieldValue::F64(v)))?,
        b'D' => {
            let (i, scale) = be_u8(i)?;
            let (i, value) = be_u32(i)?;
            (i, FieldValue::Decimal { scale, value })
        }
        b'S' => wire::long_bytes(src, i).map(|(i, v)| (i, FieldValue::LongStr(LongStr::from(v))))?,
        b'x' => wire::long_bytes(src, i).map(|(i, v)| (i, FieldValue::Bytes(v)))?,
        b'A' => parse_array(src, i, depth).map(|(i, v)| (i, FieldValue::Array(v)))?,
        b'T' => be_u64(i).map(|(i, v)| (i, FieldValue::Timestamp(v)))?,
        b'F' => parse_table(src, i, depth).map(|(i, v)| (i, FieldValue::Table(v)))?,
        b'V' => (i, FieldValue::Void),
        _ => return WireError::fail("unknown field value type"),
    })
}

pub(crate) fn put_table(buf: &mut BytesMut, t: &FieldTable) {
    wire::with_length_prefix(buf, |buf| {
        for (k, v) in &t.0 {
            wire::put_shortstr(buf, k);
            put_value(buf, v);
        }
    });
}

fn put_value(buf: &mut BytesMut, v: &FieldValue) {
    buf.put_u8(v.tag());
    match v {
        FieldValue::Bool(b) => buf.put_u8(*b as u8),
        FieldValue::I8(n) => buf.put_i8(*n),
        FieldValue::U8(n) => buf.put_u8(*n),
        FieldValue::I16(n) => buf.put_i16(*n),
        FieldValue::U16(n) => buf.put_u16(*n),
        FieldValue::I32(n) => buf.put_i32(*n),
        FieldValue::U32(n) => buf.put_u32(*n),
        FieldValue::I64(n) => buf.put_i64(*n),
        FieldValue::F32(n) => buf.put_f32(*n),
        FieldValue::F64(n) => buf.put_f64(*n),
        FieldValue::Decimal { scale, value } => {
            buf.put_u8(*scale);
            buf.put_u32(*value);
        }
        FieldValue::LongStr(s) => wire::put_longstr(buf, s),
        FieldValue::Bytes(b) => wire::put_long_bytes(buf, b),
        FieldValue::Array(values) => wire::with_length_prefix(buf, |buf| {
            for v in values {
                put_value(buf, v);
            }
        }),
        FieldValue::Timestamp(t) => buf.put_u64(*t),
        FieldValue::Table(t) => put_table(buf, t),
        FieldValue::Void => {}
    }
}

/// JSON form used by tests and tools: `{"type": "<letter>", "value": ...}`; tables become an
/// array of `[name, value]` pairs so order and duplicates survive.
impl serde::Serialize for FieldValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", &(self.tag() as char).to_string())?;
        match self {
            FieldValue::Bool(v) => m.serialize_entry("value", v)?,
            FieldValue::I8(v) => m.serialize_entry("value", v)?,
            FieldValue::U8(v) => m.serialize_entry("value", v)?,
            FieldValue::I16(v) => m.serialize_entry("value", v)?,
            FieldValue::U16(v) => m.serialize_entry("value", v)?,
            FieldValue::I32(v) => m.serialize_entry("value", v)?,
            FieldValue::U32(v) => m.serialize_entry("value", v)?,
            FieldValue::I64(v) => m.serialize_entry("value", v)?,
            FieldValue::F32(v) => m.serialize_entry("value", v)?,
            FieldValue::F64(v) => m.serialize_entry("value", v)?,
            FieldValue::Decimal { scale, value } => m.serialize_entry("value", &(scale, value))?,
            FieldValue::LongStr(v) => m.serialize_entry("value", v)?,
            FieldValue::Bytes(v) => m.serialize_entry("value", &v[..])?,
            FieldValue::Array(v) => m.serialize_entry("value", v)?,
            FieldValue::Timestamp(v) => m.serialize_entry("value", v)?,
            FieldValue::Table(v) => m.serialize_entry("value", v)?,
            FieldValue::Void => m.serialize_entry("value", &())?,
        }
        m.end()
    }
}

impl serde::Serialize for FieldTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            seq.serialize_element(&(k, v))?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<FieldTable, nom::Err<WireError>> {
        let src = Bytes::copy_from_slice(bytes);
        parse_table(&src, &src, 0).map(|(_, t)| t)
    }

    fn encode(t: &FieldTable) -> Vec<u8> {
        let mut buf = BytesMut::new();
        put_table(&mut buf, t);
        buf.to_vec()
    }

    #[test]
    fn a_detached_table_no_longer_holds_the_buffer_it_was_decoded_from() {
        let mut wire = BytesMut::new();
        put_table(&mut wire, &FieldTable(vec![(ShortStr::from_static("product"), FieldValue::from("client"))]));
        wire.extend_from_slice(&[0u8; 60 * 1024]); // the rest of a read buffer
        let src = wire.freeze();
        let t = parse_table(&src, &src, 0).unwrap().1;
        let detached = t.detached();
        assert_eq!(detached, t);
        drop(t);
        // The only handle left on the read buffer is ours: it can be reused in place.
        assert!(src.is_unique());
        assert_eq!(detached.get("product"), Some(&FieldValue::from("client")));
    }

    #[test]
    fn every_value_type_round_trips_byte_for_byte() {
        let inner = FieldTable(vec![(ShortStr::from_static("n"), FieldValue::I32(-5))]);
        let t = FieldTable(vec![
            (ShortStr::from_static("t"), FieldValue::Bool(true)),
            (ShortStr::from_static("b"), FieldValue::I8(-1)),
            (ShortStr::from_static("B"), FieldValue::U8(255)),
            (ShortStr::from_static("s"), FieldValue::I16(-300)),
            (ShortStr::from_static("u"), FieldValue::U16(65000)),
            (ShortStr::from_static("I"), FieldValue::I32(i32::MIN)),
            (ShortStr::from_static("i"), FieldValue::U32(u32::MAX)),
            (ShortStr::from_static("l"), FieldValue::I64(i64::MIN)),
            (ShortStr::from_static("f"), FieldValue::F32(1.5)),
            (ShortStr::from_static("d"), FieldValue::F64(-2.25)),
            (ShortStr::from_static("D"), FieldValue::Decimal { scale: 2, value: 12345 }),
            (ShortStr::from_static("S"), FieldValue::from("héllo")),
            (ShortStr::from_static("x"), FieldValue::Bytes(Bytes::from_static(&[0, 1, 255]))),
            (ShortStr::from_static("A"), FieldValue::Array(vec![FieldValue::Void, FieldValue::Table(inner.clone())])),
            (ShortStr::from_static("T"), FieldValue::Timestamp(1_700_000_000)),
            (ShortStr::from_static("F"), FieldValue::Table(inner)),
            (ShortStr::from_static("V"), FieldValue::Void),
            (ShortStr::from_static("t"), FieldValue::Bool(false)),
        ]);
        let bytes = encode(&t);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back, t);
        assert_eq!(encode(&back), bytes);
        assert_eq!(back.get("t"), Some(&FieldValue::Bool(true)), "first of duplicate keys wins");
    }

    #[test]
    fn rabbitmq_letters_mean_rabbitmq_types() {
        // 's' is a signed short (RabbitMQ), not a short string (0-9-1 grammar).
        let bytes = [0, 0, 0, 5, 1, b'k', b's', 0xff, 0xfe];
        assert_eq!(decode(&bytes).unwrap().get("k"), Some(&FieldValue::I16(-2)));
        // Any non-zero octet is true.
        let bytes = [0, 0, 0, 4, 1, b'k', b't', 7];
        assert_eq!(decode(&bytes).unwrap().get("k"), Some(&FieldValue::Bool(true)));
    }

    #[test]
    fn forged_lengths_and_unknown_types_are_errors_not_allocations() {
        assert!(decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0, 0, 0, 8, 1, b'k', b'S', 0xff, 0xff, 0xff, 0xff, 0]).is_err());
        assert!(decode(&[0, 0, 0, 3, 1, b'k', b'Z']).is_err());
        assert!(decode(&[0, 0, 0, 3, 5, b'k', b'V']).is_err(), "key longer than the table");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut t = FieldTable::new();
        for _ in 0..MAX_DEPTH + 5 {
            t = FieldTable(vec![(ShortStr::from_static("n"), FieldValue::Table(t))]);
        }
        let err = decode(&encode(&t)).unwrap_err();
        assert!(matches!(err, nom::Err::Failure(WireError { reason }) if reason.contains("deeply")));
        let mut ok = FieldTable::new();
        for _ in 0..MAX_DEPTH - 1 {
            ok = FieldTable(vec![(ShortStr::from_static("n"), FieldValue::Table(ok))]);
        }
        assert!(decode(&encode(&ok)).is_ok());
    }
}
