//! Frames: the protocol header, the frame layer and content framing.
//!
//! [`decode_frame`] is a streaming parser over the connection's read buffer: with too few bytes
//! it answers `Ok(None)` ("need more"), never an error, and it only consumes a frame once the
//! whole of it (frame-end octet included) is present. A frame larger than the negotiated
//! `frame_max` is refused from its 7-byte header alone, so a forged size never makes us wait
//! for, or allocate, gigabytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use nom::bytes::streaming::take;
use nom::number::streaming::{be_u16, be_u32, be_u8};

use super::error::AmqpError;
use super::methods::{constants, BasicProperties, Method};
use super::wire::{self, PResult, WireError};

/// What a 0-9-1 client sends first, and what we answer to any other protocol header.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Octets around every frame payload: type, channel, size before it and frame-end after it.
pub const FRAME_OVERHEAD: usize = 8;
const FRAME_HEADER_LEN: usize = 7;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method { channel: u16, method: Method },
    Header { channel: u16, header: ContentHeader },
    Body { channel: u16, payload: Bytes },
    Heartbeat,
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. } | Frame::Header { channel, .. } | Frame::Body { channel, .. } => *channel,
            Frame::Heartbeat => 0,
        }
    }
}

/// A content header frame's payload.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    pub properties: Box<BasicProperties>,
}

/// The outcome of reading the first octets of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// Fewer than 8 octets so far.
    Incomplete,
    /// `AMQP 0-9-1`: go on with `connection.start`.
    Accepted,
    /// Anything else: the server writes [`PROTOCOL_HEADER`] and closes the socket (spec 4.2.2).
    Refused,
}

pub fn check_protocol_header(buf: &[u8]) -> ProtocolHeader {
    if buf.len() < PROTOCOL_HEADER.len() {
        // Still refuse early when what we have cannot become "AMQP...": no point waiting.
        let n = buf.len().min(4);
        if buf[..n] != PROTOCOL_HEADER[..n] {
            return ProtocolHeader::Refused;
        }
        return ProtocolHeader::Incomplete;
    }
    if &buf[..8] == PROTOCOL_HEADER {
        ProtocolHeader::Accepted
    } else {
        ProtocolHeader::Refused
    }
}

/// Type, channel and payload size of the next frame, streaming.
fn frame_header(i: &[u8]) -> nom::IResult<&[u8], (u8, u16, u32)> {
    let (i, kind) = be_u8(i)?;
    let (i, channel) = be_u16(i)?;
    let (i, size) = be_u32(i)?;
    Ok((i, (kind, channel, size)))
}

/// Takes the next complete frame off the front of `buf`.
///
/// `frame_max` is the negotiated maximum frame size including the 8 octets of overhead (0 means
/// no limit, as in `connection.tune`). Errors are connection errors with RabbitMQ's reply codes:
/// 501 for a bad frame-end, an unknown frame type or an oversized frame, 502 for a malformed
/// payload, 540 for an unknown method.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, AmqpError> {
    let (kind, channel, size) = match frame_header(buf) {
        Ok((_, h)) => h,
        Err(nom::Err::Incomplete(_)) => return Ok(None),
        Err(_) => return Err(AmqpError::frame_error("unreadable frame header")),
    };
    if frame_max != 0 && size as u64 + FRAME_OVERHEAD as u64 > frame_max as u64 {
        return Err(AmqpError::frame_error(format!(
            "frame of {} octets exceeds frame_max {frame_max}",
            size as u64 + FRAME_OVERHEAD as u64
        )));
    }
    let rest = &buf[FRAME_HEADER_LEN..];
    match take::<u32, &[u8], nom::error::Error<&[u8]>>(size)(rest).and_then(|(r, _)| be_u8(r)) {
        Ok((_, end)) if end == constants::FRAME_END => {}
        Ok((_, end)) => return Err(AmqpError::frame_error(format!("frame end octet {end:#04x}, expected 0xce"))),
        Err(_) => return Ok(None),
    }
    buf.advance(FRAME_HEADER_LEN);
    let payload = buf.split_to(size as usize).freeze();
    buf.advance(1);
    decode_payload(kind, channel, payload).map(Some)
}

fn decode_payload(kind: u8, channel: u16, payload: Bytes) -> Result<Frame, AmqpError> {
    match kind {
        constants::FRAME_METHOD => {
            if payload.len() < 4 {
                return Err(AmqpError::syntax_error("method frame shorter than class and method ids"));
            }
            let class_id = u16::from_be_bytes([payload[0], payload[1]]);
            let method_id = u16::from_be_bytes([payload[2], payload[3]]);
            let method = Method::decode_args(class_id, method_id, &payload.slice(4..))?;
            Ok(Frame::Method { channel, method })
        }
        constants::FRAME_HEADER => {
            let header = decode_content_header(&payload)?;
            Ok(Frame::Header { channel, header })
        }
        constants::FRAME_BODY => Ok(Frame::Body { channel, payload }),
        constants::FRAME_HEARTBEAT => {
            if channel != 0 {
                return Err(AmqpError::frame_error(format!("heartbeat frame on channel {channel}")));
            }
            Ok(Frame::Heartbeat)
        }
        other => Err(AmqpError::frame_error(format!("unknown frame type {other}"))),
    }
}

fn decode_content_header(payload: &Bytes) -> Result<ContentHeader, AmqpError> {
    let parsed = content_header(payload, payload);
    match parsed {
        Ok(([], header)) => Ok(header),
        Ok((rest, _)) => Err(AmqpError::syntax_error(format!("{} trailing octets in content header", rest.len()))),
        Err(nom::Err::Failure(WireError { reason: "content header for a class without content" })) => {
            Err(AmqpError::unexpected_frame("content header for a class without content"))
        }
        Err(e) => Err(wire::syntax_error(e, "content header")),
    }
}

fn content_header<'a>(src: &'a Bytes, i: &'a [u8]) -> PResult<'a, ContentHeader> {
    use nom::number::complete::{be_u16, be_u64};
    let (i, class_id) = be_u16(i)?;
    let (i, _weight) = be_u16(i)?;
    let (i, body_size) = be_u64(i)?;
    if class_id != BasicProperties::CLASS_ID {
        return WireError::fail("content header for a class without content");
    }
    let (mut i, flags) = be_u16(i)?;
    if flags & !BasicProperties::KNOWN_FLAGS & !1 != 0 {
        return WireError::fail("property flag for a property the class does not have");
    }
    // Continuation words may follow; basic has no properties beyond the first word, so any flag
    // set in them is as unknown as the unused bit above.
    let mut more = flags & 1 != 0;
    while more {
        let (r, word) = be_u16(i)?;
        if word & !1 != 0 {
            return WireError::fail("property flag for a property the class does not have");
        }
        more = word & 1 != 0;
        i = r;
    }
    let (i, properties) = BasicProperties::decode_boxed(flags, src, i)?;
    Ok((i, ContentHeader { class_id, body_size, properties }))
}

/// Writes one method frame.
pub fn encode_method(buf: &mut BytesMut, channel: u16, method: &Method) {
    encode_frame(buf, constants::FRAME_METHOD, channel, |buf| method.encode(buf));
}

pub fn encode_heartbeat(buf: &mut BytesMut) {
    buf.put_slice(&[constants::FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, constants::FRAME_END]);
}

pub fn encode_content_header(buf: &mut BytesMut, channel: u16, body_size: u64, properties: &BasicProperties) {
    encode_frame(buf, constants::FRAME_HEADER, channel, |buf| {
        buf.put_u16(BasicProperties::CLASS_ID);
        buf.put_u16(0);
        buf.put_u64(body_size);
        properties.encode(buf);
    });
}

/// Writes a content-carrying method, its header and its body split into frames that fit
/// `frame_max` (0 = no limit), all into `buf` so the writer sends them with one syscall.
pub fn encode_content(
    buf: &mut BytesMut,
    channel: u16,
    method: &Method,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
) {
    encode_method(buf, channel, method);
    encode_content_header(buf, channel, body.len() as u64, properties);
    let chunk = match frame_max {
        0 => body.len().max(1),
        max => (max as usize).saturating_sub(FRAME_OVERHEAD).max(1),
    };
    buf.reserve(body.len() + body.len().div_ceil(chunk) * FRAME_OVERHEAD);
    for part in body.chunks(chunk) {
        buf.put_u8(constants::FRAME_BODY);
        buf.put_u16(channel);
        buf.put_u32(part.len() as u32);
        buf.put_slice(part);
        buf.put_u8(constants::FRAME_END);
    }
}

fn encode_frame(buf: &mut BytesMut, kind: u8, channel: u16, payload: impl FnOnce(&mut BytesMut)) {
    let start = buf.len();
    buf.put_u8(kind);
    buf.put_u16(channel);
    buf.put_u32(0);
    payload(buf);
    let size = (buf.len() - start - FRAME_HEADER_LEN) as u32;
    buf[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(constants::FRAME_END);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::{BasicPublish, ChannelOpen};
    use crate::{ReplyCode, ShortStr};

    fn publish() -> Method {
        Method::BasicPublish(BasicPublish {
            exchange: ShortStr::from_static("amq.direct"),
            routing_key: ShortStr::from_static("rk"),
            mandatory: true,
            immediate: false,
        })
    }

    #[test]
    fn a_frame_arriving_byte_by_byte_is_incomplete_until_its_last_octet() {
        let mut whole = BytesMut::new();
        encode_method(&mut whole, 3, &publish());
        let mut buf = BytesMut::new();
        for (n, b) in whole.iter().enumerate() {
            buf.put_u8(*b);
            let got = decode_frame(&mut buf, 4096).expect("no error on a valid prefix");
            if n + 1 < whole.len() {
                assert!(got.is_none(), "frame reported complete after {} octets", n + 1);
            } else {
                assert_eq!(got, Some(Frame::Method { channel: 3, method: publish() }));
            }
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn content_is_split_to_fit_frame_max() {
        let body = vec![7u8; 10_000];
        let props = BasicProperties { delivery_mode: Some(2), ..Default::default() };
        let mut buf = BytesMut::new();
        encode_content(&mut buf, 1, &publish(), &props, &body, 4096);
        let mut frames = Vec::new();
        while let Some(f) = decode_frame(&mut buf, 4096).unwrap() {
            frames.push(f);
        }
        assert_eq!(frames.len(), 2 + 3, "method, header, then 4088 + 4088 + 1824 octets of body");
        match &frames[1] {
            Frame::Header { header, .. } => {
                assert_eq!(header.body_size, 10_000);
                assert_eq!(*header.properties, props);
            }
            other => panic!("expected a header, got {other:?}"),
        }
        let total: usize = frames[2..]
            .iter()
            .map(|f| match f {
                Frame::Body { payload, .. } => payload.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 10_000);
    }

    #[test]
    fn bad_frames_get_rabbitmqs_reply_codes() {
        let code = |bytes: &[u8], max| decode_frame(&mut BytesMut::from(bytes), max).unwrap_err().code;
        let mut good = BytesMut::new();
        encode_method(&mut good, 1, &Method::ChannelOpen(ChannelOpen {}));
        let mut bad_end = good.to_vec();
        *bad_end.last_mut().unwrap() = 0;
        assert_eq!(code(&bad_end, 4096), ReplyCode::FrameError);
        assert_eq!(code(&[9, 0, 0, 0, 0, 0, 0, 0xce], 4096), ReplyCode::FrameError);
        assert_eq!(code(&[8, 0, 1, 0, 0, 0, 0, 0xce], 4096), ReplyCode::FrameError);
        // A 4 GB frame is refused from its header, before any payload arrives.
        assert_eq!(code(&[1, 0, 1, 0xff, 0xff, 0xff, 0xff], 131072), ReplyCode::FrameError);
        assert_eq!(code(&[1, 0, 1, 0, 0, 0, 2, 0, 20, 0xce], 4096), ReplyCode::SyntaxError);
        assert_eq!(code(&[1, 0, 1, 0, 0, 0, 4, 0, 77, 0, 1, 0xce], 4096), ReplyCode::NotImplemented);
        // Content header for class 50 (queue has no content)
        let hdr = [2, 0, 1, 0, 0, 0, 14, 0, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xce];
        assert_eq!(code(&hdr, 4096), ReplyCode::UnexpectedFrame);
        // Property flag bit 1 is not a basic property
        let hdr = [2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xce];
        assert_eq!(code(&hdr, 4096), ReplyCode::SyntaxError);
    }

    #[test]
    fn empty_continuation_words_are_accepted() {
        let hdr = [2, 0, 1, 0, 0, 0, 16, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0x00, 0x01, 0, 0, 0xce];
        let f = decode_frame(&mut BytesMut::from(&hdr[..]), 4096).unwrap().unwrap();
        let Frame::Header { header, .. } = f else { panic!("expected a header") };
        assert_eq!(header.body_size, 5);
        assert_eq!(*header.properties, BasicProperties::default());
        // flag 0x1001 = delivery-mode present + continuation; the property follows the words.
        let hdr = [2, 0, 1, 0, 0, 0, 17, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0x10, 0x01, 0, 0, 2, 0xce];
        let f = decode_frame(&mut BytesMut::from(&hdr[..]), 4096).unwrap().unwrap();
        let Frame::Header { header, .. } = f else { panic!("expected a header") };
        assert_eq!(header.properties.delivery_mode, Some(2));
    }

    #[test]
    fn protocol_header() {
        assert_eq!(check_protocol_header(b"AMQ"), ProtocolHeader::Incomplete);
        assert_eq!(check_protocol_header(PROTOCOL_HEADER), ProtocolHeader::Accepted);
        assert_eq!(check_protocol_header(b"AMQP\x00\x01\x00\x00"), ProtocolHeader::Refused);
        assert_eq!(check_protocol_header(b"AMQP\x01\x01\x00\x09"), ProtocolHeader::Refused);
        assert_eq!(check_protocol_header(b"GET / HTTP/1.1\r\n"), ProtocolHeader::Refused);
        assert_eq!(check_protocol_header(b"GE"), ProtocolHeader::Refused);
    }
}
