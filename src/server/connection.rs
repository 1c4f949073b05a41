//! One client connection: protocol header, handshake, then the read loop that hands frames to
//! channels; and the teardown that requeues unacked messages and deletes exclusive queues
//! whichever way the connection ends.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::broker::alarms::AlarmSet;
use crate::broker::timer::now_ms;
use crate::broker::Broker;
use crate::protocol::methods::*;
use crate::protocol::{
    check_protocol_header, constants, decode_frame, AmqpError, FieldTable, FieldValue, Frame, LongStr, Method,
    ProtocolHeader, ReplyCode, ShortStr, PROTOCOL_HEADER,
};
use crate::server::channel::Channel;
use crate::server::outbound::Outbound;
use crate::server::session::{ClientCapabilities, Session};

/// How long a client has for the whole handshake (RabbitMQ's `handshake_timeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long we wait for `connection.close-ok` after closing a connection on an error.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);

/// Reads whole frames off the socket.
struct FrameReader {
    socket: OwnedReadHalf,
    buf: BytesMut,
    frame_max: u32,
    last_read: Instant,
}

enum Read {
    Frame(Frame),
    Eof,
}

impl FrameReader {
    async fn next(&mut self) -> Result<Read, ConnError> {
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, self.frame_max)? {
                return Ok(Read::Frame(frame));
            }
            if !self.fill().await? {
                return Ok(Read::Eof);
            }
        }
    }

    /// Reads more bytes; false at end of stream.
    async fn fill(&mut self) -> Result<bool, ConnError> {
        self.buf.reserve(64 * 1024);
        let n = self.socket.read_buf(&mut self.buf).await.map_err(ConnError::Io)?;
        self.last_read = Instant::now();
        Ok(n > 0)
    }
}

#[derive(Debug)]
enum ConnError {
    Io(std::io::Error),
    Amqp(AmqpError),
    /// The peer went away or broke the handshake in a way that deserves no reply.
    Gone(&'static str),
}

impl From<AmqpError> for ConnError {
    fn from(e: AmqpError) -> Self {
        ConnError::Amqp(e)
    }
}

pub async fn serve_connection(broker: Arc<Broker>, mut socket: TcpStream, peer: SocketAddr) {
    let _counted = broker.connection_guard();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_protocol_header(&mut socket)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            info!(%peer, "unsupported protocol header; answered with AMQP 0-9-1's and closed");
            let _ = socket.write_all(PROTOCOL_HEADER).await;
            let _ = socket.shutdown().await;
            return;
        }
        Ok(Err(e)) => return debug!(%peer, error = %e, "connection lost before the protocol header"),
        Err(_) => return info!(%peer, "closing connection: no protocol header within {HANDSHAKE_TIMEOUT:?}"),
    }
    let (read_half, write_half) = socket.into_split();
    let outbound = Arc::new(Outbound::default());
    let mut reader = FrameReader {
        socket: read_half,
        buf: BytesMut::with_capacity(64 * 1024),
        frame_max: broker.limits.frame_max,
        last_read: Instant::now(),
    };

    let writer = tokio::spawn(outbound.clone().run_writer(write_half));

    let session = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&broker, &mut reader, &outbound, peer)).await
    {
        Ok(Ok(s)) => Arc::new(s),
        Ok(Err(e)) => {
            fail_handshake(e, &mut reader, &outbound, peer).await;
            outbound.close();
            let _ = writer.await;
            return;
        }
        Err(_) => {
            info!(%peer, "closing connection: handshake not completed within {HANDSHAKE_TIMEOUT:?}");
            outbound.close();
            let _ = writer.await;
            return;
        }
    };
    let heartbeat = Duration::from_secs(u64::from(session.heartbeat));
    outbound.set_heartbeat(heartbeat);
    info!(%peer, user = %session.user, vhost = %session.vhost.name, conn = session.id, "connection opened");

    let mut conn = Connection {
        session: session.clone(),
        channels: HashMap::default(),
        closing: HashSet::new(),
        peer,
        published: false,
        alarms: broker.alarms.subscribe(),
    };
    let end = conn.run(&mut reader, heartbeat, broker.shutdown_signal()).await;
    conn.teardown();
    match end {
        Ok(()) => info!(%peer, conn = session.id, "connection closed"),
        Err(ConnError::Amqp(e)) => {
            warn!(%peer, conn = session.id, error = %e, "closing connection");
            outbound.send_method(0, &e.to_close_method());
            await_close_ok(&mut reader).await;
        }
        Err(ConnError::Io(e)) => info!(%peer, conn = session.id, error = %e, "connection lost"),
        Err(ConnError::Gone(why)) => info!(%peer, conn = session.id, "connection ended: {why}"),
    }
    outbound.close();
    let _ = writer.await;
}

async fn read_protocol_header(socket: &mut TcpStream) -> std::io::Result<bool> {
    let mut buf = [0u8; 8];
    let mut have = 0;
    loop {
        match check_protocol_header(&buf[..have]) {
            ProtocolHeader::Incomplete => {}
            ProtocolHeader::Accepted => return Ok(true),
            ProtocolHeader::Refused => return Ok(false),
        }
        let n = socket.read(&mut buf[have..]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
}

/// Reads frames until `connection.close-ok` (or EOF, or a few seconds).
async fn await_close_ok(reader: &mut FrameReader) {
    let wait = async {
        loop {
            match reader.next().await {
                Ok(Read::Frame(Frame::Method { method: Method::ConnectionCloseOk(_), .. })) => return,
                Ok(Read::Frame(_)) => continue,
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_OK_TIMEOUT, wait).await;
}

async fn fail_handshake(e: ConnError, reader: &mut FrameReader, outbound: &Outbound, peer: SocketAddr) {
    match e {
        ConnError::Amqp(e) => {
            warn!(%peer, error = %e, "handshake failed");
            outbound.send_method(0, &e.to_close_method());
            await_close_ok(reader).await;
        }
        ConnError::Io(e) => info!(%peer, error = %e, "connection lost during handshake"),
        ConnError::Gone(why) => warn!(%peer, "handshake failed: {why}"),
    }
}

fn server_properties() -> FieldTable {
    let s = |v: &str| FieldValue::from(v);
    let mut caps = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(ShortStr::from_static(cap), FieldValue::Bool(true));
    }
    let mut p = FieldTable::new();
    p.insert(ShortStr::from_static("capabilities"), FieldValue::Table(caps));
    p.insert(ShortStr::from_static("cluster_name"), s("warren"));
    p.insert(ShortStr::from_static("copyright"), s("Copyright (c) the Warren authors"));
    p.insert(ShortStr::from_static("information"), s("Licensed under the Apache License 2.0"));
    p.insert(ShortStr::from_static("platform"), s(concat!("Rust ", env!("CARGO_PKG_RUST_VERSION"))));
    p.insert(ShortStr::from_static("product"), s("Warren"));
    p.insert(ShortStr::from_static("version"), s(env!("CARGO_PKG_VERSION")));
    p
}

async fn expect_method(reader: &mut FrameReader, what: &'static str) -> Result<Method, ConnError> {
    loop {
        match reader.next().await? {
            Read::Eof => return Err(ConnError::Gone("client closed the socket during the handshake")),
            Read::Frame(Frame::Heartbeat) => continue,
            Read::Frame(Frame::Method { channel: 0, method }) => return Ok(method),
            Read::Frame(_) => {
                return Err(
                    AmqpError::connection(ReplyCode::CommandInvalid, format!("expected {what} on channel 0")).into()
                )
            }
        }
    }
}

fn client_capabilities(props: &FieldTable) -> ClientCapabilities {
    let caps = match props.get("capabilities") {
        Some(FieldValue::Table(t)) => t.clone(),
        _ => FieldTable::new(),
    };
    let on = |k: &str| matches!(caps.get(k), Some(FieldValue::Bool(true)));
    ClientCapabilities {
        consumer_cancel_notify: on("consumer_cancel_notify"),
        authentication_failure_close: on("authentication_failure_close"),
        publisher_confirms: on("publisher_confirms"),
        connection_blocked: on("connection.blocked"),
    }
}

/// Splits a SASL response into user and password.
fn credentials(mechanism: &ShortStr, response: &LongStr) -> Result<(String, String), AmqpError> {
    let refused = |why: &str| AmqpError::connection(ReplyCode::AccessRefused, why.to_string());
    match mechanism.as_bytes() {
        b"PLAIN" => {
            // authzid \0 authcid \0 password
            let mut parts = response.as_bytes().splitn(3, |&b| b == 0);
            let (_authz, user, pass) = (parts.next(), parts.next(), parts.next());
            match (user, pass) {
                (Some(u), Some(p)) => {
                    Ok((String::from_utf8_lossy(u).into_owned(), String::from_utf8_lossy(p).into_owned()))
                }
                _ => Err(refused("malformed PLAIN response")),
            }
        }
        b"AMQPLAIN" => {
            let t = FieldTable::decode_entries(&Bytes::copy_from_slice(response.as_bytes()))
                .map_err(|_| refused("malformed AMQPLAIN response"))?;
            let get = |k| t.get(k).and_then(|v| v.as_bytes()).map(|b| String::from_utf8_lossy(b).into_owned());
            match (get("LOGIN"), get("PASSWORD")) {
                (Some(u), Some(p)) => Ok((u, p)),
                _ => Err(refused("AMQPLAIN response without LOGIN and PASSWORD")),
            }
        }
        other => Err(AmqpError::connection(
            ReplyCode::CommandInvalid,
            format!("unknown authentication mechanism '{}'", String::from_utf8_lossy(other)),
        )),
    }
}

async fn handshake(
    broker: &Arc<Broker>,
    reader: &mut FrameReader,
    outbound: &Arc<Outbound>,
    peer: SocketAddr,
) -> Result<Session, ConnError> {
    outbound.send_method(
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongStr::from("PLAIN AMQPLAIN"),
            locales: LongStr::from("en_US"),
        }),
    );
    let Method::ConnectionStartOk(start_ok) = expect_method(reader, "connection.start-ok").await? else {
        return Err(AmqpError::connection(ReplyCode::CommandInvalid, "expected connection.start-ok").into());
    };
    let capabilities = client_capabilities(&start_ok.client_properties);
    let (user, password) = credentials(&start_ok.mechanism, &start_ok.response)?;
    if let Err(why) = broker.users.authenticate(&user, &password, peer.ip()) {
        warn!(%peer, %user, mechanism = %start_ok.mechanism, reason = ?why, "login refused");
        if !capabilities.authentication_failure_close {
            return Err(ConnError::Gone("login refused (client cannot take connection.close for it)"));
        }
        return Err(AmqpError::connection(
            ReplyCode::AccessRefused,
            format!(
                "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                start_ok.mechanism
            ),
        )
        .in_method(10, 11)
        .into());
    }

    let limits = &broker.limits;
    outbound.send_method(
        0,
        &Method::ConnectionTune(ConnectionTune {
            channel_max: limits.channel_max,
            frame_max: limits.frame_max,
            heartbeat: limits.heartbeat,
        }),
    );
    let Method::ConnectionTuneOk(tune) = expect_method(reader, "connection.tune-ok").await? else {
        return Err(AmqpError::connection(ReplyCode::CommandInvalid, "expected connection.tune-ok").into());
    };
    let not_allowed = |m: String| AmqpError::connection(ReplyCode::NotAllowed, m).in_method(10, 31);
    if tune.frame_max != 0 && tune.frame_max < constants::FRAME_MIN_SIZE {
        return Err(
            not_allowed(format!("frame_max={} < {} min size", tune.frame_max, constants::FRAME_MIN_SIZE)).into()
        );
    }
    if tune.frame_max > limits.frame_max {
        return Err(not_allowed(format!("frame_max={} > {} max size", tune.frame_max, limits.frame_max)).into());
    }
    if tune.channel_max > limits.channel_max {
        return Err(not_allowed(format!("channel_max={} > {} max size", tune.channel_max, limits.channel_max)).into());
    }
    let frame_max = if tune.frame_max == 0 { limits.frame_max } else { tune.frame_max };
    let channel_max = if tune.channel_max == 0 { limits.channel_max } else { tune.channel_max };
    reader.frame_max = frame_max;

    let Method::ConnectionOpen(open) = expect_method(reader, "connection.open").await? else {
        return Err(AmqpError::connection(ReplyCode::CommandInvalid, "expected connection.open").into());
    };
    let Some(vhost) = broker.vhost(&open.virtual_host) else {
        return Err(AmqpError::connection(ReplyCode::NotAllowed, format!("vhost {} not found", open.virtual_host))
            .in_method(10, 40)
            .into());
    };
    outbound.send_method(0, &Method::ConnectionOpenOk(ConnectionOpenOk {}));
    Ok(Session {
        id: broker.next_connection_id(),
        broker: broker.clone(),
        vhost,
        user,
        outbound: outbound.clone(),
        frame_max,
        channel_max,
        heartbeat: tune.heartbeat,
        capabilities,
    })
}

struct Connection {
    session: Arc<Session>,
    channels: HashMap<u16, Channel, foldhash::fast::RandomState>,
    /// Channels we closed on an error, waiting for the client's `channel.close-ok`.
    closing: HashSet<u16>,
    peer: SocketAddr,
    /// A `basic.publish` arrived since the last read: under an alarm, this connection blocks.
    published: bool,
    alarms: tokio::sync::watch::Receiver<AlarmSet>,
}

impl Connection {
    async fn run(
        &mut self,
        reader: &mut FrameReader,
        heartbeat: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ConnError> {
        // Two missed heartbeat intervals without a byte from the client and it is gone.
        let check_every = if heartbeat.is_zero() { Duration::from_secs(3600) } else { heartbeat };
        let mut ticker = tokio::time::interval(check_every);
        ticker.tick().await;
        // One timer for consumer ack timeouts, moved only when the earliest deadline changes
        // (not re-created on every read).
        let ack_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(ack_timer);
        let mut armed_for: Option<u64> = None;
        loop {
            while let Some(frame) = decode_frame(&mut reader.buf, reader.frame_max)? {
                if self.handle(frame)? {
                    return Ok(());
                }
            }
            for ch in self.channels.values_mut() {
                ch.flush_confirms();
            }
            if std::mem::take(&mut self.published) && self.alarms.borrow().any() {
                self.block(reader, &mut shutdown).await?;
            }
            // Back-pressure: a client that does not read what we send gets nothing more read.
            if self.session.outbound.is_congested() {
                self.session.outbound.wait_drained().await;
            }
            if self.session.outbound.is_closed() {
                return Err(ConnError::Gone("socket closed for writing"));
            }
            let ack_deadline = self.channels.values().filter_map(|ch| ch.shared.ack_deadline()).min();
            if ack_deadline != armed_for {
                if let Some(at) = ack_deadline {
                    let wait = Duration::from_millis(at.saturating_sub(now_ms()));
                    ack_timer.as_mut().reset(tokio::time::Instant::now() + wait);
                }
                armed_for = ack_deadline;
            }
            tokio::select! {
                _ = &mut ack_timer, if armed_for.is_some() => {
                    armed_for = None; // re-armed from the channels' deadlines on the next turn
                    self.enforce_ack_timeouts();
                }
                more = reader.fill() => {
                    if !more? {
                        return Err(ConnError::Gone("client closed the socket"));
                    }
                }
                _ = shutdown.wait_for(|stopping| *stopping) => {
                    return Err(AmqpError::connection(ReplyCode::ConnectionForced, "broker shutdown").into());
                }
                _ = ticker.tick() => {
                    if !heartbeat.is_zero() && reader.last_read.elapsed() > heartbeat * 2 {
                        return Err(ConnError::Gone("missed heartbeats from client"));
                    }
                }
            }
        }
    }

    /// Stops reading from a publisher while a resource alarm is raised (RabbitMQ's flow for
    /// its disk and memory alarms), telling the client if it understands `connection.blocked`.
    async fn block(
        &mut self,
        reader: &mut FrameReader,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), ConnError> {
        let reason = self.alarms.borrow().reason();
        info!(peer = %self.peer, conn = self.session.id, reason, "connection blocked: not reading until the alarm clears");
        let tell = self.session.capabilities.connection_blocked;
        if tell {
            let blocked = ConnectionBlocked { reason: ShortStr::from_static(reason) };
            self.session.outbound.send_method(0, &Method::ConnectionBlocked(blocked));
        }
        tokio::select! {
            cleared = self.alarms.wait_for(|a| !a.any()) => {
                if cleared.is_err() {
                    return Err(ConnError::Gone("broker stopped"));
                }
            }
            _ = shutdown.wait_for(|stopping| *stopping) => {
                return Err(AmqpError::connection(ReplyCode::ConnectionForced, "broker shutdown").into());
            }
        }
        if tell {
            self.session.outbound.send_method(0, &Method::ConnectionUnblocked(ConnectionUnblocked {}));
        }
        info!(peer = %self.peer, conn = self.session.id, "connection unblocked");
        // The client's heartbeats went unread while blocked; they do not count as missed.
        reader.last_read = Instant::now();
        Ok(())
    }

    /// Handles one frame; true when the connection is done (client closed it).
    fn handle(&mut self, frame: Frame) -> Result<bool, ConnError> {
        if let Frame::Method { method: Method::BasicPublish(_), .. } = &frame {
            self.published = true;
        }
        let channel = frame.channel();
        if channel == 0 {
            return self.handle_connection_frame(frame);
        }
        if self.closing.contains(&channel) {
            match frame {
                Frame::Method { method: Method::ChannelCloseOk(_), .. } => {
                    self.closing.remove(&channel);
                }
                Frame::Method { method: Method::ChannelClose(_), .. } => {
                    self.closing.remove(&channel);
                    self.session.outbound.send_method(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
                }
                _ => {} // discarded until the client acknowledges the close
            }
            return Ok(false);
        }
        let Some(ch) = self.channels.get_mut(&channel) else {
            return self.open_channel(channel, frame).map(|()| false);
        };
        match frame {
            Frame::Method { method: Method::ChannelClose(_), .. } => {
                ch.close();
                self.channels.remove(&channel);
                self.session.outbound.send_method(channel, &Method::ChannelCloseOk(ChannelCloseOk {}));
                Ok(false)
            }
            Frame::Method { method: Method::ChannelCloseOk(_), .. } => Ok(false),
            frame => match ch.handle(frame) {
                Ok(()) => Ok(false),
                Err(e) if e.is_connection_error() => Err(e.into()),
                Err(e) => {
                    self.close_channel_on_error(channel, e);
                    Ok(false)
                }
            },
        }
    }

    /// Closes a channel with a soft error: its unacked messages are requeued and the client is
    /// sent `channel.close`; frames for it are then dropped until `channel.close-ok`.
    fn close_channel_on_error(&mut self, channel: u16, e: AmqpError) {
        let Some(mut ch) = self.channels.remove(&channel) else { return };
        info!(peer = %self.peer, conn = self.session.id, channel, error = %e, "closing channel");
        ch.flush_confirms();
        ch.close();
        self.closing.insert(channel);
        self.session.outbound.send_method(channel, &e.to_close_method());
    }

    /// Consumer timeouts: a channel with a delivery unacked past its deadline is closed.
    fn enforce_ack_timeouts(&mut self) {
        let now = now_ms();
        let late: Vec<(u16, AmqpError)> =
            self.channels.iter().filter_map(|(id, ch)| Some((*id, ch.shared.check_ack_timeouts(now)?))).collect();
        for (channel, e) in late {
            warn!(peer = %self.peer, conn = self.session.id, channel, "consumer ack timeout");
            self.close_channel_on_error(channel, e);
        }
    }

    fn open_channel(&mut self, channel: u16, frame: Frame) -> Result<(), ConnError> {
        let Frame::Method { method: Method::ChannelOpen(_), .. } = frame else {
            return Err(AmqpError::connection(ReplyCode::ChannelError, "expected 'channel.open'").into());
        };
        if channel > self.session.channel_max {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format!("channel number {channel} exceeds the negotiated channel_max ({})", self.session.channel_max),
            )
            .in_method(20, 10)
            .into());
        }
        self.channels.insert(channel, Channel::new(channel, self.session.clone()));
        self.session.outbound.send_method(channel, &Method::ChannelOpenOk(ChannelOpenOk {}));
        Ok(())
    }

    fn handle_connection_frame(&mut self, frame: Frame) -> Result<bool, ConnError> {
        match frame {
            Frame::Heartbeat => Ok(false),
            Frame::Method { method: Method::ConnectionClose(close), .. } => {
                debug!(peer = %self.peer, code = close.reply_code, text = %close.reply_text, "client closed the connection");
                self.teardown();
                self.session.outbound.send_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                Ok(true)
            }
            Frame::Method { method: Method::ConnectionCloseOk(_), .. } => Ok(true),
            Frame::Method { method: Method::ConnectionUpdateSecret(_), .. } => {
                // No credential here expires, so a new secret changes nothing; acknowledge it.
                self.session.outbound.send_method(0, &Method::ConnectionUpdateSecretOk(ConnectionUpdateSecretOk {}));
                Ok(false)
            }
            Frame::Method { method, .. } => Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format!("unexpected method {} on channel 0", method.name()),
            )
            .in_method(method.class_id(), method.method_id())
            .into()),
            Frame::Header { .. } | Frame::Body { .. } => {
                Err(AmqpError::unexpected_frame("content frame on channel 0").into())
            }
        }
    }

    /// Whatever way the connection ends: channels closed (unacked messages requeued, consumers
    /// cancelled) and the connection's exclusive queues deleted. Safe to call twice.
    fn teardown(&mut self) {
        for (_, mut ch) in self.channels.drain() {
            ch.close();
        }
        for q in self.session.vhost.exclusive_queues_of(self.session.id) {
            self.session.vhost.remove_queue(&q);
        }
    }
}
