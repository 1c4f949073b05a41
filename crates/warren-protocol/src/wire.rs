//! Primitive wire parsers and writers shared by methods, properties and field tables.
//!
//! Everything here parses *inside* a frame whose payload is already complete, so these are nom's
//! `complete` parsers: running out of input is a malformed payload (502), never "need more". The
//! `src` argument is the frame payload the input slice points into, so strings and tables come
//! out as zero-copy `Bytes` slices of it.

use bytes::{BufMut, Bytes, BytesMut};
use nom::bytes::complete::take;
use nom::error::{ErrorKind, ParseError};
use nom::number::complete::{be_u16, be_u32, be_u64, be_u8};
use nom::IResult;

use super::error::AmqpError;
use super::field_table::{self, FieldTable};
use super::types::{LongStr, ShortStr};

/// Why a payload could not be parsed; becomes a 502 SYNTAX_ERROR naming the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    pub reason: &'static str,
}

impl WireError {
    pub fn fail<T>(reason: &'static str) -> Result<T, nom::Err<WireError>> {
        Err(nom::Err::Failure(WireError { reason }))
    }
}

impl<I> ParseError<I> for WireError {
    fn from_error_kind(_input: I, kind: ErrorKind) -> Self {
        let reason = match kind {
            ErrorKind::Eof => "payload ends inside a field",
            _ => "malformed field",
        };
        WireError { reason }
    }

    fn append(_input: I, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

pub type PResult<'a, T> = IResult<&'a [u8], T, WireError>;

/// Turns a parse failure inside a frame payload into the 502 the peer gets.
pub fn syntax_error(err: nom::Err<WireError>, what: &str) -> AmqpError {
    let reason = match err {
        nom::Err::Error(e) | nom::Err::Failure(e) => e.reason,
        nom::Err::Incomplete(_) => "payload ends inside a field",
    };
    AmqpError::syntax_error(format!("{reason} in {what}"))
}

pub fn octet(i: &[u8]) -> PResult<'_, u8> {
    be_u8(i)
}

pub fn short(i: &[u8]) -> PResult<'_, u16> {
    be_u16(i)
}

pub fn long(i: &[u8]) -> PResult<'_, u32> {
    be_u32(i)
}

pub fn longlong(i: &[u8]) -> PResult<'_, u64> {
    be_u64(i)
}

pub fn shortstr<'a>(src: &'a Bytes, i: &'a [u8]) -> PResult<'a, ShortStr> {
    let (i, len) = be_u8(i)?;
    let (i, s) = take(len)(i)?;
    Ok((i, ShortStr::from_wire(src.slice_ref(s))))
}

/// A length-prefixed octet string. The length is checked against the bytes actually present
/// before anything is sliced, so a forged 4 GB length costs nothing.
pub fn long_bytes<'a>(src: &'a Bytes, i: &'a [u8]) -> PResult<'a, Bytes> {
    let (i, len) = be_u32(i)?;
    if len as usize > i.len() {
        return WireError::fail("length runs past the end of the frame");
    }
    let (i, s) = take(len)(i)?;
    Ok((i, src.slice_ref(s)))
}

pub fn longstr<'a>(src: &'a Bytes, i: &'a [u8]) -> PResult<'a, LongStr> {
    let (i, b) = long_bytes(src, i)?;
    Ok((i, LongStr::from(b)))
}

pub fn table<'a>(src: &'a Bytes, i: &'a [u8]) -> PResult<'a, FieldTable> {
    field_table::parse_table(src, i, 0)
}

pub fn put_shortstr(buf: &mut BytesMut, s: &ShortStr) {
    buf.put_u8(s.len() as u8);
    buf.put_slice(s.as_bytes());
}

pub fn put_longstr(buf: &mut BytesMut, s: &LongStr) {
    put_long_bytes(buf, s.as_bytes());
}

pub fn put_long_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u32(b.len() as u32);
    buf.put_slice(b);
}

pub fn put_table(buf: &mut BytesMut, t: &FieldTable) {
    field_table::put_table(buf, t);
}

/// Writes a u32 length placeholder, runs `body`, then fills in how many bytes it wrote. Saves
/// encoding nested tables twice to learn their size first.
pub fn with_length_prefix(buf: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    let at = buf.len();
    buf.put_u32(0);
    body(buf);
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}
