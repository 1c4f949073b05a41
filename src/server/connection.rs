//! One client connection after its protocol header: the handshake (`handshake.rs`), then the
//! read loop that hands frames to channels; close handling; and the teardown that requeues
//! unacked messages and deletes exclusive queues whichever way the connection ends.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::auth::limits::MAX_CHANNELS;
use crate::broker::alarms::AlarmSet;
use crate::broker::connections::{ChannelView, ConnectionState, ConnectionStats};
use crate::broker::queue::Queue;
use crate::broker::timer::now_ms;
use crate::broker::{errors, Broker};
use crate::protocol::methods::*;
use crate::protocol::{decode_frame, AmqpError, Frame, Method, ShortStr, PROTOCOL_HEADER};
use crate::server::channel::Channel;
use crate::server::frames::{ConnError, FrameReader, Read, LINGER};
pub use crate::server::handshake::HANDSHAKE_TIMEOUT;
use crate::server::handshake::{handshake, read_protocol_header, Origin};
use crate::server::outbound::Outbound;
use crate::server::session::Session;
use crate::server::transport::Transport;

/// How often a publisher held back by flow control looks again at the queue it waits for.
const FLOW_RECHECK: Duration = Duration::from_millis(100);

/// How long we wait for `connection.close-ok` after closing a connection on an error.
const CLOSE_OK_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves one client on `socket` (TCP, or any [`Transport`]) until the connection ends.
pub async fn serve_connection<T: Transport>(broker: Arc<Broker>, mut socket: T, peer: SocketAddr) {
    let mut guard = broker.connection_guard();
    let connected_at = now_ms();
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_protocol_header(&mut socket)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            info!(%peer, "unsupported protocol header (TLS to the plain port?); answered with AMQP 0-9-1's and closed");
            let _ = socket.write_all(PROTOCOL_HEADER).await;
            let _ = socket.shutdown().await;
            // Read what else it sent (a TLS hello is longer than 8 octets) before closing, so
            // that our header is not destroyed by a reset (see `FrameReader::drain`).
            let mut rest = [0u8; 4096];
            let _ =
                tokio::time::timeout(LINGER, async { while matches!(socket.read(&mut rest).await, Ok(n) if n > 0) {} })
                    .await;
            return;
        }
        Ok(Err(e)) => return debug!(%peer, error = %e, "connection lost before the protocol header"),
        Err(_) => return info!(%peer, "closing connection: no protocol header within {HANDSHAKE_TIMEOUT:?}"),
    }
    let origin = Origin {
        peer,
        local: socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        connected_at,
        stats: Arc::new(ConnectionStats::counted_in(broker.stats().clone())),
        tls: socket.tls(),
    };
    let fd = socket.tcp_fd();
    let (read_half, write_half) = socket.into_halves();
    let outbound = Arc::new(Outbound::default());
    if let Some(fd) = fd {
        outbound.send_directly_on(fd, origin.stats.clone());
    }
    let mut reader = FrameReader::new(read_half, fd, broker.limits.frame_max, origin.stats.clone());
    // Dropped before `reader` (the socket's last owner): no other thread sends from then on.
    let _detach = Detach(outbound.clone());

    let writer = tokio::spawn(outbound.clone().run_writer(write_half, origin.stats.clone()));

    // `_admission` holds the connection's places in its vhost's and user's counts until this
    // task ends.
    let (session, _admission) =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&broker, &mut reader, &outbound, &origin)).await {
            Ok(Ok((s, admission))) => (Arc::new(s), admission),
            Ok(Err(e)) => {
                fail_handshake(e, &mut reader, &outbound, peer).await;
                outbound.close();
                let _ = writer.await;
                reader.drain().await;
                return;
            }
            Err(_) => {
                info!(%peer, "closing connection: handshake not completed within {HANDSHAKE_TIMEOUT:?}");
                outbound.close();
                let _ = writer.await;
                reader.drain().await;
                return;
            }
        };
    let heartbeat = Duration::from_secs(u64::from(session.heartbeat));
    outbound.set_heartbeat(heartbeat);
    info!(%peer, user = %session.user, vhost = %session.vhost.name, conn = session.id, "connection opened");
    let close_requests = session.registry.close_requests();
    guard.register(session.registry.clone());
    broker.stats().connections_opened.inc();

    let mut conn = Connection {
        session: session.clone(),
        channels: HashMap::default(),
        closing: HashSet::new(),
        peer,
        published: 0,
        alarms: broker.alarms.subscribe(),
    };
    let stop = Stop { shutdown: broker.shutdown_signal(), close_requests };
    let end = conn.run(&mut reader, heartbeat, stop).await;
    conn.teardown();
    broker.stats().connections_closed.inc();
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
    reader.drain().await;
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

async fn fail_handshake(e: ConnError, reader: &mut FrameReader, outbound: &Arc<Outbound>, peer: SocketAddr) {
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

/// Detaches the outbound from the socket when dropped (see [`Outbound::detach_direct`]).
struct Detach(Arc<Outbound>);

impl Drop for Detach {
    fn drop(&mut self) {
        self.0.detach_direct();
    }
}

/// What ends a connection from outside: the broker shutting down, or a close request through
/// the connection registry (the management API's "close connection").
struct Stop {
    shutdown: tokio::sync::watch::Receiver<bool>,
    close_requests: tokio::sync::watch::Receiver<Option<String>>,
}

impl Stop {
    /// Resolves with the error to close the connection with, once either happens.
    async fn wait(&mut self) -> AmqpError {
        tokio::select! {
            _ = self.shutdown.wait_for(|stopping| *stopping) => errors::broker_shutdown(),
            // (An `Err` cannot happen: the registry entry lives as long as the session.)
            Ok(reason) = self.close_requests.wait_for(Option::is_some) => {
                errors::connection_forced(reason.as_deref().unwrap_or_default())
            }
        }
    }
}

struct Connection {
    session: Arc<Session>,
    channels: HashMap<u16, Channel, foldhash::fast::RandomState>,
    /// Channels we closed on an error, waiting for the client's `channel.close-ok`.
    closing: HashSet<u16>,
    peer: SocketAddr,
    /// `basic.publish`es since the last read: under an alarm, this connection blocks.
    published: u64,
    alarms: tokio::sync::watch::Receiver<AlarmSet>,
}

impl Connection {
    async fn run(&mut self, reader: &mut FrameReader, heartbeat: Duration, mut stop: Stop) -> Result<(), ConnError> {
        // Two missed heartbeat intervals without a byte from the client and it is gone.
        let check_every = if heartbeat.is_zero() { Duration::from_secs(3600) } else { heartbeat };
        let mut ticker = tokio::time::interval(check_every);
        ticker.tick().await;
        // One timer for consumer ack timeouts, moved only when the earliest deadline changes
        // (not re-created on every read).
        let ack_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(ack_timer);
        let mut armed_for: Option<u64> = None;
        let outbound = self.session.outbound.clone();
        let mut sent = outbound.total_queued();
        loop {
            let batch = outbound.begin_batch();
            let mut frames = 0;
            while let Some(frame) = decode_frame(&mut reader.buf, reader.frame_max)? {
                frames += 1;
                if self.handle(frame)? {
                    self.session.registry.stats.read_batch(frames, std::mem::take(&mut self.published));
                    return Ok(());
                }
            }
            let (mut flow, mut confirming) = (Vec::new(), false);
            for ch in self.channels.values_mut() {
                confirming |= ch.flush_confirms();
                flow.extend(ch.flow.take());
            }
            let now_sent = batch.end();
            let published = std::mem::take(&mut self.published);
            self.session.registry.stats.read_batch(frames, published);
            // A client waiting for an answer — sent now, or a confirm still owed — is not
            // made to wait for more of its frames (see `coalesce.rs`).
            if now_sent != sent || confirming {
                sent = now_sent;
                reader.answered();
            }
            if published > 0 && self.alarms.borrow().any() {
                self.block(reader, &mut stop).await?;
            }
            if published > 0 {
                self.wait_for_store(reader, &mut stop).await?;
            }
            if !flow.is_empty() {
                self.hold_back(flow, reader, &mut stop).await?;
            }
            // Back-pressure: a client that does not read what we send gets nothing more read.
            if outbound.is_congested() {
                outbound.wait_drained().await;
            }
            if outbound.is_closed() {
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
                e = stop.wait() => return Err(e.into()),
                _ = ticker.tick() => {
                    let silent = reader.last_read.elapsed();
                    if !heartbeat.is_zero() && silent > heartbeat * 2 {
                        return Err(ConnError::Gone("missed heartbeats from client"));
                    }
                    // Nothing read for half the check interval: the read buffer a burst grew
                    // is given back (an idle connection holds only a small one).
                    if silent >= check_every / 2 {
                        reader.quiet();
                    }
                }
            }
        }
    }

    /// Flow control: stops reading from a publisher while a queue it published to is held back
    /// because its consumers cannot keep up (see `queue::flow`), so the backlog stays bounded.
    async fn hold_back(
        &mut self,
        queues: Vec<Arc<Queue>>,
        reader: &mut FrameReader,
        stop: &mut Stop,
    ) -> Result<(), ConnError> {
        let stats = &self.session.registry.stats;
        stats.set_state(ConnectionState::Flow);
        for q in queues {
            // Re-checked now and then: a queue deleted or left by its consumers meanwhile may
            // not say so.
            while q.flow.is_on() && !q.is_deleted() {
                tokio::select! {
                    _ = q.flow.wait_off(FLOW_RECHECK) => {}
                    e = stop.wait() => return Err(e.into()),
                }
            }
        }
        stats.set_state(ConnectionState::Running);
        reader.last_read = Instant::now();
        Ok(())
    }

    /// Stops reading from a publisher while the store writer has more queued than it should
    /// (`store::backlog`): what a publisher sends faster than the disk takes stays in its socket.
    async fn wait_for_store(&mut self, reader: &mut FrameReader, stop: &mut Stop) -> Result<(), ConnError> {
        let Some(backlog) = self.session.broker.store_backlog().filter(|b| b.is_held()).cloned() else {
            return Ok(());
        };
        let stats = &self.session.registry.stats;
        stats.set_state(ConnectionState::Flow);
        tokio::select! {
            _ = backlog.wait_drained() => {}
            e = stop.wait() => return Err(e.into()),
        }
        stats.set_state(ConnectionState::Running);
        reader.last_read = Instant::now();
        Ok(())
    }

    /// Stops reading from a publisher while a resource alarm is raised (RabbitMQ's flow for
    /// its disk and memory alarms), telling the client if it understands `connection.blocked`.
    async fn block(&mut self, reader: &mut FrameReader, stop: &mut Stop) -> Result<(), ConnError> {
        let reason = self.alarms.borrow().reason();
        info!(peer = %self.peer, conn = self.session.id, reason, "connection blocked: not reading until the alarm clears");
        let tell = self.session.capabilities.connection_blocked;
        self.session.registry.stats.set_state(ConnectionState::Blocked);
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
            e = stop.wait() => return Err(e.into()),
        }
        if tell {
            self.session.outbound.send_method(0, &Method::ConnectionUnblocked(ConnectionUnblocked {}));
        }
        self.session.registry.stats.set_state(ConnectionState::Running);
        info!(peer = %self.peer, conn = self.session.id, "connection unblocked");
        // The client's heartbeats went unread while blocked; they do not count as missed.
        reader.last_read = Instant::now();
        Ok(())
    }

    /// Handles one frame; true when the connection is done (client closed it).
    fn handle(&mut self, frame: Frame) -> Result<bool, ConnError> {
        if let Frame::Method { method: Method::BasicPublish(_), .. } = &frame {
            self.published += 1;
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
                // The client's close crossed ours: answer it, and still wait for the close-ok of
                // ours, which the client sends next (RabbitMQ does the same; forgetting the
                // channel here made that close-ok a 504 that killed the whole connection).
                Frame::Method { method: Method::ChannelClose(_), .. } => {
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
                self.channel_gone(channel);
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
        self.channel_gone(channel);
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
        let method = match frame {
            Frame::Method { method: Method::ChannelOpen(_), .. } => None,
            Frame::Method { method, .. } => Some((method.class_id(), method.method_id())),
            _ => Some((0, 0)),
        };
        if let Some((class_id, method_id)) = method {
            return Err(errors::expected_channel_open().in_method(class_id, method_id).into());
        }
        if channel > self.session.channel_max {
            return Err(errors::channel_max_exceeded(channel, self.session.channel_max).into());
        }
        let user = &self.session.user;
        let limit = self.session.broker.users.get(user).and_then(|u| u.limits.limit(MAX_CHANNELS));
        let place = self.session.user_tallies.channels.take(limit).map_err(|limit| {
            warn!(peer = %self.peer, conn = self.session.id, %user, limit, "channel refused: user channel limit reached");
            errors::user_channel_limit(user, limit)
        })?;
        let ch = Channel::new(channel, self.session.clone(), place);
        let view: Weak<dyn ChannelView> = Arc::downgrade(&ch.shared) as Weak<dyn ChannelView>;
        self.session.registry.add_channel(channel, view);
        self.session.broker.stats().channels_opened.inc();
        self.channels.insert(channel, ch);
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
            Frame::Method { method, .. } => {
                Err(errors::unexpected_on_channel_zero(method.name(), method.class_id(), method.method_id()).into())
            }
            Frame::Header { .. } | Frame::Body { .. } => Err(errors::content_on_channel_zero().into()),
        }
    }

    /// A channel is closed: out of the registry, counted.
    fn channel_gone(&self, number: u16) {
        self.session.registry.remove_channel(number);
        self.session.broker.stats().channels_closed.inc();
    }

    /// Whatever way the connection ends: channels closed (unacked messages requeued, consumers
    /// cancelled) and the connection's exclusive queues deleted. Safe to call twice.
    fn teardown(&mut self) {
        let channels: Vec<(u16, Channel)> = self.channels.drain().collect();
        for (number, mut ch) in channels {
            ch.close();
            self.channel_gone(number);
        }
        for q in self.session.vhost.exclusive_queues_of(self.session.id) {
            self.session.vhost.remove_queue(&q);
        }
    }
}
