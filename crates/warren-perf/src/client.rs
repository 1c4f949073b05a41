//! A minimal AMQP 0-9-1 client on Warren's own codec, made for load generation.
//!
//! One [`Conn`] is one TCP connection with one read buffer and one write buffer. Setup
//! (handshake, declarations) goes through [`Conn::call`], which writes a method and waits for the
//! reply. The load loops in `producer.rs` and `consumer.rs` then drive the socket themselves,
//! non-blocking ([`Conn::try_flush`], [`Conn::try_fill`]): frames are encoded into the write
//! buffer a batch at a time and written with one syscall, and everything that arrived is decoded
//! after one read. Heartbeats are turned off (tune-ok heartbeat 0); runs are short.

use std::fmt;
use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest, Ready};
use tokio::net::TcpStream;

use super::args::AmqpUri;
use warren_protocol::methods::*;
use warren_protocol::{
    decode_frame, encode_method, AmqpError, FieldTable, FieldValue, Frame, LongStr, Method, ShortStr, PROTOCOL_HEADER,
};

/// How long setup steps (connect, handshake, one declaration) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How much to read at once.
const READ_CHUNK: usize = 128 * 1024;

#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The broker sent something our codec refuses.
    Codec(AmqpError),
    /// The broker closed the channel or the connection.
    Closed {
        scope: &'static str,
        code: u16,
        text: String,
        class_id: u16,
        method_id: u16,
    },
    /// A reply we did not expect at that point.
    Unexpected(String),
    Timeout(&'static str),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Codec(e) => write!(f, "undecodable frame from the broker: {e}"),
            ClientError::Closed { scope, code, text, class_id, method_id } => {
                write!(f, "broker closed the {scope}: {code} {text} (in method {class_id}.{method_id})")
            }
            ClientError::Unexpected(what) => write!(f, "unexpected {what}"),
            ClientError::Timeout(what) => write!(f, "timed out: {what}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<AmqpError> for ClientError {
    fn from(e: AmqpError) -> Self {
        ClientError::Codec(e)
    }
}

/// What the broker said about itself in `connection.start`.
#[derive(Debug, Clone, Default)]
pub struct ServerInfo {
    pub product: String,
    pub version: String,
}

pub struct Conn {
    stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    pub frame_max: u32,
    pub server: ServerInfo,
    /// What one write syscall carries during the load (see [`WriteUnit`]).
    pub write_unit: WriteUnit,
    /// Octets of the unit being written that a short write left over.
    unit_left: usize,
}

/// How much a load connection hands the kernel per write syscall. Warren perf batches (many
/// messages per write); most client libraries write each message, or each frame, on its own,
/// which costs a broker more reads and wake-ups per message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WriteUnit {
    /// Everything encoded so far (up to 64 KiB of messages).
    #[default]
    Batch,
    /// One message: a method frame with its content header and body frames (pika, the Java
    /// client).
    Message,
    /// One frame.
    Frame,
}

/// The length of the frame at the start of `buf` (all of `buf` if it is not a whole frame).
fn frame_len(buf: &[u8]) -> usize {
    match buf.get(3..7) {
        Some(size) => (8 + u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize).min(buf.len()),
        None => buf.len(),
    }
}

impl WriteUnit {
    /// The length of the unit at the start of `buf`.
    fn len(self, buf: &[u8]) -> usize {
        match self {
            WriteUnit::Batch => buf.len(),
            WriteUnit::Frame => frame_len(buf),
            WriteUnit::Message => {
                let mut end = frame_len(buf);
                // Content header (2) and body (3) frames belong to the method before them.
                while matches!(buf.get(end), Some(2 | 3)) {
                    end += frame_len(&buf[end..]);
                }
                end
            }
        }
    }
}

fn client_properties(name: &str) -> FieldTable {
    let mut caps = FieldTable::new();
    for cap in ["publisher_confirms", "basic.nack", "consumer_cancel_notify", "authentication_failure_close"] {
        caps.insert(ShortStr::from_static(cap), FieldValue::Bool(true));
    }
    let mut p = FieldTable::new();
    p.insert(ShortStr::from_static("product"), FieldValue::from("warren perf"));
    p.insert(ShortStr::from_static("version"), FieldValue::from(env!("CARGO_PKG_VERSION")));
    p.insert(ShortStr::from_static("connection_name"), FieldValue::from(name));
    p.insert(ShortStr::from_static("capabilities"), FieldValue::Table(caps));
    p
}

fn text(v: Option<&FieldValue>) -> String {
    v.and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default()
}

pub fn short(s: &str) -> Result<ShortStr, ClientError> {
    ShortStr::try_from(s).map_err(|_| ClientError::Unexpected(format!("name longer than 255 octets: {s}")))
}

impl Conn {
    /// Connects and completes the handshake (PLAIN, no heartbeats, the broker's frame_max).
    pub async fn open(uri: &AmqpUri, name: &str) -> Result<Conn, ClientError> {
        match tokio::time::timeout(SETUP_TIMEOUT, Self::open_inner(uri, name)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout("connection handshake")),
        }
    }

    async fn open_inner(uri: &AmqpUri, name: &str) -> Result<Conn, ClientError> {
        let stream = TcpStream::connect((uri.host.as_str(), uri.port)).await?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: BytesMut::with_capacity(64 * 1024),
            frame_max: 0,
            server: ServerInfo::default(),
            write_unit: WriteUnit::Batch,
            unit_left: 0,
        };
        conn.wbuf.extend_from_slice(PROTOCOL_HEADER);
        conn.flush().await?;
        let Method::ConnectionStart(start) = conn.next_method(0).await? else {
            return Err(ClientError::Unexpected("reply to the protocol header (not connection.start)".into()));
        };
        conn.server = ServerInfo {
            product: text(start.server_properties.get("product")),
            version: text(start.server_properties.get("version")),
        };
        let mechanisms = start.mechanisms.as_bytes().split(|&b| b == b' ').any(|m| m == b"PLAIN");
        if !mechanisms {
            return Err(ClientError::Unexpected("broker without the PLAIN mechanism".into()));
        }
        let mut response = vec![0u8];
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        conn.send(
            0,
            &Method::ConnectionStartOk(ConnectionStartOk {
                client_properties: client_properties(name),
                mechanism: ShortStr::from_static("PLAIN"),
                response: LongStr::from(response),
                locale: ShortStr::from_static("en_US"),
            }),
        );
        conn.flush().await?;
        let Method::ConnectionTune(tune) = conn.next_method(0).await? else {
            return Err(ClientError::Unexpected("reply to connection.start-ok (not connection.tune)".into()));
        };
        conn.frame_max = if tune.frame_max == 0 { 131_072 } else { tune.frame_max };
        conn.send(
            0,
            &Method::ConnectionTuneOk(ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max: conn.frame_max,
                heartbeat: 0,
            }),
        );
        let open = ConnectionOpen { virtual_host: short(&uri.vhost)? };
        match conn.call(0, Method::ConnectionOpen(open)).await? {
            Method::ConnectionOpenOk(_) => Ok(conn),
            other => Err(ClientError::Unexpected(format!("{} in reply to connection.open", other.name()))),
        }
    }

    /// Encodes a method into the write buffer (sent by the next flush).
    pub fn send(&mut self, channel: u16, method: &Method) {
        encode_method(&mut self.wbuf, channel, method);
    }

    /// Writes the whole write buffer.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// The next frame, reading as needed.
    pub async fn next_frame(&mut self) -> Result<Frame, ClientError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.rbuf, self.frame_max)? {
                return Ok(frame);
            }
            self.rbuf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ClientError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// The next method on `channel`, skipping heartbeats. A `channel.close` or
    /// `connection.close` from the broker is acknowledged and returned as an error.
    pub async fn next_method(&mut self, channel: u16) -> Result<Method, ClientError> {
        loop {
            match self.next_frame().await? {
                Frame::Heartbeat => continue,
                Frame::Method { channel: ch, method } => {
                    if let Some(e) = self.closed_by_broker(ch, &method) {
                        self.flush().await?;
                        return Err(e);
                    }
                    if ch == channel {
                        return Ok(method);
                    }
                    return Err(ClientError::Unexpected(format!("{} on channel {ch}", method.name())));
                }
                other => return Err(ClientError::Unexpected(format!("content frame on channel {}", other.channel()))),
            }
        }
    }

    /// Recognises the broker closing a channel or the connection; queues the close-ok.
    pub fn closed_by_broker(&mut self, channel: u16, method: &Method) -> Option<ClientError> {
        let (scope, code, text, class_id, method_id) = match method {
            Method::ChannelClose(c) => {
                self.send(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
                ("channel", c.reply_code, &c.reply_text, c.class_id, c.method_id)
            }
            Method::ConnectionClose(c) => {
                self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                ("connection", c.reply_code, &c.reply_text, c.class_id, c.method_id)
            }
            _ => return None,
        };
        Some(ClientError::Closed { scope, code, text: text.to_string_lossy(), class_id, method_id })
    }

    /// Sends a synchronous method and waits for its reply (bounded by [`SETUP_TIMEOUT`]).
    pub async fn call(&mut self, channel: u16, method: Method) -> Result<Method, ClientError> {
        let name = method.name();
        self.send(channel, &method);
        let exchange = async {
            self.flush().await?;
            self.next_method(channel).await
        };
        match tokio::time::timeout(SETUP_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout(name)),
        }
    }

    /// Like [`Conn::call`], checking that the reply is the one expected.
    pub async fn call_expect(
        &mut self,
        channel: u16,
        method: Method,
        is_reply: fn(&Method) -> bool,
    ) -> Result<Method, ClientError> {
        let name = method.name();
        let reply = self.call(channel, method).await?;
        if is_reply(&reply) {
            Ok(reply)
        } else {
            Err(ClientError::Unexpected(format!("{} in reply to {name}", reply.name())))
        }
    }

    pub async fn open_channel(&mut self, channel: u16) -> Result<(), ClientError> {
        self.call_expect(channel, Method::ChannelOpen(ChannelOpen {}), |m| matches!(m, Method::ChannelOpenOk(_)))
            .await
            .map(drop)
    }

    /// Closes the connection politely: `connection.close`, then waits (briefly, discarding
    /// whatever else arrives) for `connection.close-ok`.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let close = ConnectionClose {
            reply_code: 200,
            reply_text: ShortStr::from_static("Goodbye"),
            class_id: 0,
            method_id: 0,
        };
        self.send(0, &Method::ConnectionClose(close));
        let wait = async {
            self.flush().await?;
            loop {
                match self.next_frame().await? {
                    Frame::Method { method: Method::ConnectionCloseOk(_), .. } => return Ok(()),
                    Frame::Method { method: Method::ConnectionClose(_), .. } => {
                        self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                        self.flush().await?;
                        return Ok(());
                    }
                    _ => continue,
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(5), wait).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout("connection.close-ok")),
        }
    }

    // --- the non-blocking interface of the load loops ---

    /// Waits until the socket is readable, or writable when there is something to write (or
    /// `want_write`: the caller has more to encode once the socket takes it). Readiness does
    /// not take part in tokio's cooperative budget: loops that may never wait call
    /// `tokio::task::consume_budget` themselves.
    pub async fn ready(&self, want_write: bool) -> io::Result<Ready> {
        let interest = if self.wbuf.is_empty() && !want_write {
            Interest::READABLE
        } else {
            Interest::READABLE | Interest::WRITABLE
        };
        self.stream.ready(interest).await
    }

    /// Frees the buffers of a connection that will stay idle.
    pub fn shrink_buffers(&mut self) {
        self.rbuf = BytesMut::new();
        self.wbuf = BytesMut::new();
    }

    /// Writes as much of the write buffer as the socket takes now, one [`WriteUnit`] per
    /// syscall.
    pub fn try_flush(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            if self.unit_left == 0 {
                self.unit_left = self.write_unit.len(&self.wbuf);
            }
            let end = self.unit_left.min(self.wbuf.len());
            match self.stream.try_write(&self.wbuf[..end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.wbuf.advance(n);
                    self.unit_left -= n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        // Fully written: start at the front of the allocation again.
        self.wbuf.clear();
        self.unit_left = 0;
        Ok(())
    }

    /// Reads what the socket has now into the read buffer. `Ok(false)` at end of stream.
    pub fn try_fill(&mut self) -> io::Result<bool> {
        self.rbuf.reserve(READ_CHUNK);
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The next complete frame already in the read buffer.
    pub fn decode(&mut self) -> Result<Option<Frame>, ClientError> {
        Ok(decode_frame(&mut self.rbuf, self.frame_max)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::methods::{BasicAck, BasicPublish};
    use warren_protocol::{encode_content, BasicProperties};

    #[test]
    fn write_units_split_the_buffer_at_frames_and_messages() {
        let mut buf = BytesMut::new();
        let publish = Method::BasicPublish(BasicPublish::default());
        encode_content(&mut buf, 1, &publish, &BasicProperties::default(), &[7; 40], 16);
        let one_message = buf.len();
        encode_method(&mut buf, 1, &Method::BasicAck(BasicAck { delivery_tag: 1, multiple: false }));
        let first_frame = frame_len(&buf);
        assert!(first_frame < one_message && first_frame > 8);
        assert_eq!(WriteUnit::Frame.len(&buf), first_frame);
        // The method, its header and the body split over frames of at most 16 octets.
        assert_eq!(WriteUnit::Message.len(&buf), one_message);
        assert_eq!(WriteUnit::Batch.len(&buf), buf.len());
        assert_eq!(WriteUnit::Message.len(&buf[one_message..]), buf.len() - one_message, "an ack alone");
    }
}
