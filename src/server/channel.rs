//! A channel: content assembly (method → header → bodies), the protocol's ordering rules, and
//! every channel-level method, each violation turned into RabbitMQ's error.
//!
//! The connection's read loop owns the [`Channel`]; queues reach its consumers through the
//! shared half, [`ChannelShared`], which tracks delivery tags, unacked messages and credit.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use tracing::debug;

use crate::broker::exchange::{Destination, Exchange, ExchangeKind};
use crate::broker::message::Message;
use crate::broker::queue::{
    consumer_priority, ConsumeRefused, Consumer, ConsumerSink, Offer, Published, Queue, QueuedMessage,
};
use crate::broker::vhost::{ExchangeSpec, QueueSpec};
use crate::broker::{REPLY_TO_PREFIX, REPLY_TO_QUEUE};
use crate::protocol::methods::*;
use crate::protocol::{
    encode_content, AmqpError, BasicProperties, ContentHeader, FieldValue, Frame, Method, ReplyCode, ShortStr,
};
use crate::server::confirms::{Confirms, Countdown};
use crate::server::session::Session;
use crate::store::writer::unawaited;

/// A message delivered and not yet acknowledged.
struct Unacked {
    tag: u64,
    queue: Arc<Queue>,
    message: QueuedMessage,
    consumer_tag: Option<ShortStr>,
    /// When the client must have acked it (ms since the UNIX epoch), and the timeout that gave.
    deadline: u64,
    timeout: u64,
}

struct ConsumerEntry {
    queue: Arc<Queue>,
    consumer: Arc<Consumer>,
    prefetch: u16,
    unacked: u32,
}

#[derive(Default)]
struct DeliveryState {
    open: bool,
    next_tag: u64,
    unacked: VecDeque<Unacked>,
    /// `basic.qos global=true`: a limit shared by all consumers of the channel.
    global_prefetch: u16,
    consumers: HashMap<ShortStr, ConsumerEntry>,
    /// The direct reply-to consumer: its key in reply addresses and its consumer tag.
    reply_consumer: Option<(ShortStr, ShortStr)>,
}

/// The half of a channel that queues deliver through (any task may call it).
pub struct ChannelShared {
    pub id: u16,
    pub session: Arc<Session>,
    state: Mutex<DeliveryState>,
    /// Publisher confirms; the store writer settles them from its thread.
    pub confirms: Confirms,
    /// The earliest ack deadline of an unacked delivery (`u64::MAX`: none). Read without the
    /// lock by the connection, which wakes up then to enforce consumer timeouts.
    ack_deadline: std::sync::atomic::AtomicU64,
}

impl ChannelShared {
    fn lock(&self) -> MutexGuard<'_, DeliveryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn has_credit(d: &DeliveryState, consumer_tag: &ShortStr) -> bool {
        if d.global_prefetch > 0 && d.unacked.len() >= d.global_prefetch as usize {
            return false;
        }
        match d.consumers.get(consumer_tag) {
            Some(c) => c.prefetch == 0 || c.unacked < c.prefetch as u32,
            None => false,
        }
    }
}

impl ChannelShared {
    /// The ack deadline of a delivery from `queue` made now (its `x-consumer-timeout`, or the
    /// broker's `consumer_timeout`), noted as the channel's earliest if it is.
    fn ack_deadline_for(&self, queue: &Queue) -> (u64, u64) {
        let timeout = queue.args.consumer_timeout.unwrap_or(self.session.broker.limits.consumer_timeout_ms);
        if timeout == 0 {
            return (u64::MAX, 0);
        }
        let deadline = crate::broker::timer::now_ms().saturating_add(timeout);
        self.ack_deadline.fetch_min(deadline, std::sync::atomic::Ordering::Relaxed);
        (deadline, timeout)
    }

    /// The record of a delivery awaiting its ack: one more delivery of the message, and the
    /// deadline its ack must meet.
    fn unacked(
        &self,
        tag: u64,
        queue: Arc<Queue>,
        mut message: QueuedMessage,
        consumer_tag: Option<ShortStr>,
    ) -> Unacked {
        message.deliveries += 1;
        let (deadline, timeout) = self.ack_deadline_for(&queue);
        Unacked { tag, queue, message, consumer_tag, deadline, timeout }
    }

    /// The earliest ack deadline among unacked deliveries, if any.
    pub fn ack_deadline(&self) -> Option<u64> {
        let d = self.ack_deadline.load(std::sync::atomic::Ordering::Relaxed);
        (d != u64::MAX).then_some(d)
    }

    /// Checks the unacked deliveries against their deadlines: the error to close the channel
    /// with if one has passed (RabbitMQ's consumer timeout), and the earliest deadline kept.
    pub fn check_ack_timeouts(&self, now: u64) -> Option<AmqpError> {
        let d = self.lock();
        let late = d.unacked.iter().find(|u| u.deadline <= now);
        let earliest = d.unacked.iter().map(|u| u.deadline).min().unwrap_or(u64::MAX);
        self.ack_deadline.store(earliest, std::sync::atomic::Ordering::Relaxed);
        late.map(|u| {
            precondition(format!(
                "delivery acknowledgement on channel {} timed out. Timeout value used: {} ms. This timeout value \
                 can be configured, see consumers doc guide to learn more",
                self.id, u.timeout
            ))
        })
    }
}

impl ConsumerSink for ChannelShared {
    fn offer(&self, consumer: &Consumer, queue: &Arc<Queue>, message: &QueuedMessage) -> Offer {
        let out = &self.session.outbound;
        if out.is_congested() {
            // Register before re-checking, so a drain in between cannot be missed.
            out.wake_when_drained(queue);
            if out.is_congested() {
                return Offer::Busy;
            }
        }
        let mut d = self.lock();
        if !d.open || !d.consumers.contains_key(&consumer.tag) {
            return Offer::Busy;
        }
        if !consumer.no_ack && !Self::has_credit(&d, &consumer.tag) {
            return Offer::Busy;
        }
        d.next_tag += 1;
        let tag = d.next_tag;
        let m = &message.msg;
        let deliver = Method::BasicDeliver(BasicDeliver {
            consumer_tag: consumer.tag.clone(),
            delivery_tag: tag,
            redelivered: message.redelivered,
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
        });
        let frame_max = self.session.frame_max;
        // Encoded under the channel lock so delivery tags reach the socket in order.
        let counted = delivery_count_properties(queue, message, false);
        let properties = counted.as_ref().unwrap_or(&m.properties);
        out.write(|buf| encode_content(buf, self.id, &deliver, properties, &m.body, frame_max));
        if consumer.no_ack {
            queue.forget(message);
        } else {
            queue.delivered(message);
            if let Some(c) = d.consumers.get_mut(&consumer.tag) {
                c.unacked += 1;
            }
            let unacked = self.unacked(tag, queue.clone(), message.clone(), Some(consumer.tag.clone()));
            d.unacked.push_back(unacked);
        }
        Offer::Taken
    }

    fn deliver_reply(&self, consumer: &Consumer, m: &Arc<Message>) -> bool {
        let mut d = self.lock();
        if !d.open {
            return false;
        }
        d.next_tag += 1;
        let deliver = Method::BasicDeliver(BasicDeliver {
            consumer_tag: consumer.tag.clone(),
            delivery_tag: d.next_tag,
            redelivered: false,
            exchange: m.exchange.clone(),
            routing_key: m.routing_key.clone(),
        });
        let frame_max = self.session.frame_max;
        self.session.outbound.write(|buf| encode_content(buf, self.id, &deliver, &m.properties, &m.body, frame_max));
        true
    }

    fn cancelled_by_server(&self, consumer: &Consumer) {
        let removed = self.lock().consumers.remove(&consumer.tag).is_some();
        if removed && self.session.capabilities.consumer_cancel_notify {
            let cancel = Method::BasicCancel(BasicCancel { consumer_tag: consumer.tag.clone(), no_wait: true });
            self.session.outbound.send_method(self.id, &cancel);
        }
    }
}

enum Content {
    Idle,
    Header(BasicPublish),
    Body { method: BasicPublish, header: ContentHeader, body: BytesMut, first: Option<Bytes> },
}

/// `basic.ack`, or `basic.nack`/`basic.reject` (with `requeue`).
#[derive(Debug, Clone, Copy)]
struct Settle {
    tag: u64,
    multiple: bool,
    requeue: Option<bool>,
}

/// What a transaction defers until `tx.commit`.
enum TxOp {
    Publish { method: BasicPublish, message: Message, extra_keys: Vec<Bytes> },
    Settle(Settle),
}

pub struct Channel {
    pub shared: Arc<ChannelShared>,
    content: Content,
    tx: Option<Vec<TxOp>>,
    /// `basic.qos global=false`: the limit for consumers started after it.
    consumer_prefetch: u16,
}

fn precondition(message: String) -> AmqpError {
    AmqpError::new(ReplyCode::PreconditionFailed, message)
}

/// A random-enough suffix for server-generated names (`amq.gen-…`, `amq.ctag-…`): 22
/// URL-safe characters, as RabbitMQ's are, from the process's randomly keyed hasher.
pub fn random_name(prefix: &str) -> ShortStr {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::from(prefix);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let mut bits =
        h.finish() as u128 | ((std::collections::hash_map::RandomState::new().build_hasher().finish() as u128) << 64);
    for _ in 0..22 {
        out.push(ALPHABET[(bits & 63) as usize] as char);
        bits >>= 6;
    }
    ShortStr::try_from(out).unwrap_or_default()
}

impl Channel {
    pub fn new(id: u16, session: Arc<Session>) -> Channel {
        let state = DeliveryState { open: true, ..Default::default() };
        let confirms = Confirms::new(id, session.outbound.clone());
        Channel {
            shared: Arc::new(ChannelShared {
                id,
                session,
                state: Mutex::new(state),
                confirms,
                ack_deadline: std::sync::atomic::AtomicU64::new(u64::MAX),
            }),
            content: Content::Idle,
            tx: None,
            consumer_prefetch: 0,
        }
    }

    fn session(&self) -> &Session {
        &self.shared.session
    }

    fn send(&self, method: Method) {
        self.session().outbound.send_method(self.shared.id, &method);
    }

    /// Handles one frame addressed to this (open) channel.
    pub fn handle(&mut self, frame: Frame) -> Result<(), AmqpError> {
        match (std::mem::replace(&mut self.content, Content::Idle), frame) {
            (Content::Idle, Frame::Method { method, .. }) => {
                let (class_id, method_id) = (method.class_id(), method.method_id());
                self.handle_method(method).map_err(
                    |e| {
                        if e.class_id == 0 {
                            e.in_method(class_id, method_id)
                        } else {
                            e
                        }
                    },
                )
            }
            (Content::Idle, _) => {
                Err(AmqpError::unexpected_frame("expected method frame, got non method frame instead"))
            }
            (Content::Header(method), Frame::Header { header, .. }) => self.on_header(method, header),
            (Content::Header(_), _) => Err(AmqpError::unexpected_frame(
                "expected content header for class 60, got non content header frame instead",
            )),
            (Content::Body { method, header, mut body, mut first }, Frame::Body { payload, .. }) => {
                let received = body.len() as u64 + first.as_ref().map_or(0, |b| b.len() as u64) + payload.len() as u64;
                if received > header.body_size {
                    return Err(AmqpError::frame_error(format!(
                        "content body of {received} octets exceeds the declared {} octets",
                        header.body_size
                    )));
                }
                // The common single-frame body stays a zero-copy slice of the read buffer.
                match (&first, body.is_empty()) {
                    (None, true) => first = Some(payload),
                    _ => {
                        if let Some(f) = first.take() {
                            body.extend_from_slice(&f);
                        }
                        body.extend_from_slice(&payload);
                    }
                }
                if received == header.body_size {
                    let body = first.unwrap_or_else(|| body.freeze());
                    return self.on_message(method, header.properties, body);
                }
                self.content = Content::Body { method, header, body, first };
                Ok(())
            }
            (Content::Body { .. }, _) => {
                Err(AmqpError::unexpected_frame("expected content body, got non content body frame instead"))
            }
        }
    }

    fn on_header(&mut self, method: BasicPublish, header: ContentHeader) -> Result<(), AmqpError> {
        let max = self.session().broker.limits.max_message_size;
        if header.body_size > max {
            return Err(precondition(format!(
                "message size {} is larger than configured max size {max}",
                header.body_size
            ))
            .in_method(BasicPublish::CLASS_ID, BasicPublish::METHOD_ID));
        }
        if header.body_size == 0 {
            return self.on_message(method, header.properties, Bytes::new());
        }
        self.content = Content::Body { method, header, body: BytesMut::new(), first: None };
        Ok(())
    }

    fn handle_method(&mut self, method: Method) -> Result<(), AmqpError> {
        match method {
            Method::BasicPublish(m) => {
                self.content = Content::Header(m);
                Ok(())
            }
            Method::BasicAck(m) => {
                self.settle_or_defer(Settle { tag: m.delivery_tag, multiple: m.multiple, requeue: None })
            }
            Method::BasicNack(m) => {
                self.settle_or_defer(Settle { tag: m.delivery_tag, multiple: m.multiple, requeue: Some(m.requeue) })
            }
            Method::BasicReject(m) => {
                self.settle_or_defer(Settle { tag: m.delivery_tag, multiple: false, requeue: Some(m.requeue) })
            }
            Method::BasicQos(m) => self.qos(m),
            Method::BasicConsume(m) => self.consume(m),
            Method::BasicCancel(m) => self.cancel(m),
            Method::BasicGet(m) => self.get(m),
            Method::BasicRecover(m) => {
                self.recover(m.requeue)?;
                self.send(Method::BasicRecoverOk(BasicRecoverOk {}));
                Ok(())
            }
            Method::BasicRecoverAsync(m) => self.recover(m.requeue),
            Method::ExchangeDeclare(m) => self.exchange_declare(m),
            Method::ExchangeDelete(m) => {
                self.session().vhost.delete_exchange(&m.exchange, m.if_unused)?;
                self.reply(m.no_wait, Method::ExchangeDeleteOk(ExchangeDeleteOk {}));
                Ok(())
            }
            Method::ExchangeBind(m) => {
                let dest = Destination::Exchange(self.session().vhost.exchange(&m.destination)?);
                self.session().vhost.bind(&m.source, dest, m.routing_key, m.arguments)?;
                self.reply(m.no_wait, Method::ExchangeBindOk(ExchangeBindOk {}));
                Ok(())
            }
            Method::ExchangeUnbind(m) => {
                let dest = Destination::Exchange(self.session().vhost.exchange(&m.destination)?);
                self.session().vhost.unbind(&m.source, dest, m.routing_key, m.arguments)?;
                self.reply(m.no_wait, Method::ExchangeUnbindOk(ExchangeUnbindOk {}));
                Ok(())
            }
            Method::QueueDeclare(m) => self.queue_declare(m),
            Method::QueueBind(m) => {
                let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
                self.session().vhost.bind(&m.exchange, Destination::Queue(q), m.routing_key, m.arguments)?;
                self.reply(m.no_wait, Method::QueueBindOk(QueueBindOk {}));
                Ok(())
            }
            Method::QueueUnbind(m) => {
                let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
                self.session().vhost.unbind(&m.exchange, Destination::Queue(q), m.routing_key, m.arguments)?;
                self.send(Method::QueueUnbindOk(QueueUnbindOk {}));
                Ok(())
            }
            Method::QueuePurge(m) => {
                let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
                let message_count = q.purge();
                self.reply(m.no_wait, Method::QueuePurgeOk(QueuePurgeOk { message_count }));
                Ok(())
            }
            Method::QueueDelete(m) => {
                let message_count =
                    self.session().vhost.delete_queue(&m.queue, m.if_unused, m.if_empty, self.session().id)?;
                self.reply(m.no_wait, Method::QueueDeleteOk(QueueDeleteOk { message_count }));
                Ok(())
            }
            Method::ConfirmSelect(m) => {
                if self.tx.is_some() {
                    return Err(precondition("cannot switch from tx to confirm mode".into()));
                }
                self.shared.confirms.enable();
                self.reply(m.nowait, Method::ConfirmSelectOk(ConfirmSelectOk {}));
                Ok(())
            }
            Method::TxSelect(_) => {
                if self.shared.confirms.is_enabled() {
                    return Err(precondition("cannot switch from confirm to tx mode".into()));
                }
                self.tx.get_or_insert_with(Vec::new);
                self.send(Method::TxSelectOk(TxSelectOk {}));
                Ok(())
            }
            Method::TxCommit(_) => self.tx_commit(),
            Method::TxRollback(_) => {
                let Some(ops) = self.tx.as_mut() else {
                    return Err(precondition("channel is not transactional".into()));
                };
                ops.clear();
                self.send(Method::TxRollbackOk(TxRollbackOk {}));
                Ok(())
            }
            Method::ChannelFlow(m) => {
                if !m.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.send(Method::ChannelFlowOk(ChannelFlowOk { active: true }));
                Ok(())
            }
            Method::ChannelFlowOk(_) => Ok(()),
            Method::ChannelOpen(_) => {
                Err(AmqpError::new(ReplyCode::ChannelError, "second 'channel.open' seen").in_method(20, 10))
            }
            other => Err(AmqpError::new(ReplyCode::CommandInvalid, format!("unimplemented method {}", other.name()))),
        }
    }

    fn reply(&self, no_wait: bool, method: Method) {
        if !no_wait {
            self.send(method);
        }
    }

    fn exchange_declare(&mut self, m: ExchangeDeclare) -> Result<(), AmqpError> {
        let vhost = &self.session().vhost;
        if m.passive {
            if !m.exchange.is_empty() {
                vhost.exchange(&m.exchange)?;
            }
            self.reply(m.no_wait, Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
            return Ok(());
        }
        let kind = ExchangeKind::parse(m.kind.as_bytes())
            .ok_or_else(|| AmqpError::new(ReplyCode::CommandInvalid, format!("unknown exchange type '{}'", m.kind)))?;
        vhost.declare_exchange(ExchangeSpec {
            name: m.exchange,
            kind,
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: m.arguments,
        })?;
        self.reply(m.no_wait, Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
        Ok(())
    }

    fn queue_declare(&mut self, m: QueueDeclare) -> Result<(), AmqpError> {
        let session = self.session();
        if m.queue == REPLY_TO_QUEUE {
            // The pseudo-queue exists for every channel; declaring it just says so.
            let ok = QueueDeclareOk { queue: m.queue, message_count: 0, consumer_count: 0 };
            self.reply(m.no_wait, Method::QueueDeclareOk(ok));
            return Ok(());
        }
        let server_named = m.queue.is_empty() && !m.passive;
        let name = if server_named { random_name("amq.gen-") } else { m.queue };
        let spec = QueueSpec {
            name,
            server_named,
            durable: m.durable,
            exclusive_owner: m.exclusive.then_some(session.id),
            auto_delete: m.auto_delete,
            arguments: m.arguments,
        };
        let (q, _created) = session.vhost.declare_queue(spec, m.passive, session.id)?;
        self.reply(
            m.no_wait,
            Method::QueueDeclareOk(QueueDeclareOk {
                queue: q.name.clone(),
                message_count: q.message_count(),
                consumer_count: q.consumer_count(),
            }),
        );
        Ok(())
    }

    fn qos(&mut self, m: BasicQos) -> Result<(), AmqpError> {
        if m.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!("prefetch_size!=0 ({})", m.prefetch_size)));
        }
        if m.global {
            self.shared.lock().global_prefetch = m.prefetch_count;
        } else {
            self.consumer_prefetch = m.prefetch_count;
        }
        self.send(Method::BasicQosOk(BasicQosOk {}));
        // A raised limit may let waiting messages through.
        for q in self.consumer_queues() {
            q.dispatch();
        }
        Ok(())
    }

    fn consumer_queues(&self) -> Vec<Arc<Queue>> {
        let d = self.shared.lock();
        let mut qs: Vec<Arc<Queue>> = Vec::new();
        for c in d.consumers.values() {
            if !qs.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                qs.push(c.queue.clone());
            }
        }
        qs
    }

    fn consume(&mut self, m: BasicConsume) -> Result<(), AmqpError> {
        if m.queue == REPLY_TO_QUEUE {
            return self.consume_replies(m);
        }
        let session = self.shared.session.clone();
        let q = session.vhost.queue_for(&m.queue, session.id)?;
        let tag = if m.consumer_tag.is_empty() { random_name("amq.ctag-") } else { m.consumer_tag };
        if self.shared.lock().consumers.contains_key(&tag) {
            return Err(AmqpError::connection(ReplyCode::NotAllowed, format!("attempt to reuse consumer tag '{tag}'")));
        }
        let priority =
            consumer_priority(&m.arguments, &q.name.to_string_lossy(), &session.vhost.name.to_string_lossy())?;
        let sink: Arc<dyn ConsumerSink> = self.shared.clone();
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority,
            arguments: m.arguments,
            sink,
        });
        // Registered with the channel first so the deliveries that follow consume-ok find it.
        self.shared.lock().consumers.insert(
            tag.clone(),
            ConsumerEntry {
                queue: q.clone(),
                consumer: consumer.clone(),
                prefetch: self.consumer_prefetch,
                unacked: 0,
            },
        );
        let ok = Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag.clone() });
        let (out, id, no_wait) = (session.outbound.clone(), self.shared.id, m.no_wait);
        match q.add_consumer(consumer, || {
            if !no_wait {
                out.send_method(id, &ok);
            }
        }) {
            Ok(()) => Ok(()),
            Err(refused) => {
                self.shared.lock().consumers.remove(&tag);
                Err(match refused {
                    ConsumeRefused::ExclusiveInUse => AmqpError::new(
                        ReplyCode::AccessRefused,
                        format!("queue '{}' in vhost '{}' in exclusive use", q.name, session.vhost.name),
                    ),
                    ConsumeRefused::Deleted => AmqpError::new(
                        ReplyCode::NotFound,
                        format!("no queue '{}' in vhost '{}'", q.name, session.vhost.name),
                    ),
                })
            }
        }
    }

    /// `basic.consume` from `amq.rabbitmq.reply-to`: one no-ack consumer per channel, fed
    /// directly by whoever publishes to the reply address this channel hands out.
    fn consume_replies(&mut self, m: BasicConsume) -> Result<(), AmqpError> {
        if !m.no_ack {
            return Err(precondition("reply consumer cannot acknowledge".into()));
        }
        if self.shared.lock().reply_consumer.is_some() {
            return Err(precondition("reply consumer already set".into()));
        }
        let tag = if m.consumer_tag.is_empty() { random_name("amq.ctag-") } else { m.consumer_tag };
        let key = random_name("");
        let sink: Arc<dyn ConsumerSink> = self.shared.clone();
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            no_ack: true,
            exclusive: false,
            priority: 0,
            arguments: m.arguments,
            sink,
        });
        self.shared.lock().reply_consumer = Some((key.clone(), tag.clone()));
        self.reply(m.no_wait, Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag }));
        self.session().broker.register_reply_consumer(key, consumer);
        Ok(())
    }

    fn cancel_replies(&self) {
        if let Some((key, _)) = self.shared.lock().reply_consumer.take() {
            self.session().broker.unregister_reply_consumer(&key);
        }
    }

    fn cancel(&mut self, m: BasicCancel) -> Result<(), AmqpError> {
        let is_reply = matches!(&self.shared.lock().reply_consumer, Some((_, tag)) if *tag == m.consumer_tag);
        if is_reply {
            self.cancel_replies();
        }
        let entry = self.shared.lock().consumers.remove(&m.consumer_tag);
        if let Some(entry) = entry {
            self.drop_consumer(entry);
        }
        // Cancelling an unknown tag is fine (it may have been cancelled by the server already).
        self.reply(m.no_wait, Method::BasicCancelOk(BasicCancelOk { consumer_tag: m.consumer_tag }));
        Ok(())
    }

    fn drop_consumer(&self, entry: ConsumerEntry) {
        let sink: Arc<dyn ConsumerSink> = self.shared.clone();
        if entry.queue.remove_consumer(&entry.consumer.tag, &sink) {
            self.session().vhost.remove_queue(&entry.queue);
        }
    }

    fn get(&mut self, m: BasicGet) -> Result<(), AmqpError> {
        let session = self.session();
        let q = session.vhost.queue_for(&m.queue, session.id)?;
        // Queue first, then the channel: LOCKS.md forbids the other order.
        let Some((message, message_count)) = q.get() else {
            self.send(Method::BasicGetEmpty(BasicGetEmpty {}));
            return Ok(());
        };
        let mut d = self.shared.lock();
        d.next_tag += 1;
        let tag = d.next_tag;
        let msg = &message.msg;
        let get_ok = Method::BasicGetOk(BasicGetOk {
            delivery_tag: tag,
            redelivered: message.redelivered,
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
            message_count,
        });
        let frame_max = session.frame_max;
        let counted = delivery_count_properties(&q, &message, true);
        let properties = counted.as_ref().unwrap_or(&msg.properties);
        session.outbound.write(|buf| encode_content(buf, self.shared.id, &get_ok, properties, &msg.body, frame_max));
        if m.no_ack {
            q.forget(&message);
        } else {
            q.delivered(&message);
            let unacked = self.shared.unacked(tag, q, message, None);
            d.unacked.push_back(unacked);
        }
        Ok(())
    }

    fn settle_or_defer(&mut self, op: Settle) -> Result<(), AmqpError> {
        // Validate now (RabbitMQ rejects an unknown tag at once, even in a transaction).
        let all_outstanding = op.multiple && op.tag == 0;
        if !all_outstanding && !self.shared.lock().unacked.iter().any(|u| u.tag == op.tag) {
            return Err(precondition(format!("unknown delivery tag {}", op.tag)));
        }
        if let Some(ops) = self.tx.as_mut() {
            ops.push(TxOp::Settle(op));
            return Ok(());
        }
        self.apply_settle(op)
    }

    fn apply_settle(&mut self, op: Settle) -> Result<(), AmqpError> {
        let taken = self.take_unacked(op.tag, op.multiple)?;
        self.settle(taken, op.requeue);
        Ok(())
    }

    /// Removes the acknowledged deliveries (`tag`, or all up to it with `multiple`; tag 0 with
    /// `multiple` means all) and returns their consumers' credit.
    fn take_unacked(&self, tag: u64, multiple: bool) -> Result<Vec<Unacked>, AmqpError> {
        let mut d = self.shared.lock();
        let taken: Vec<Unacked> = if multiple {
            if tag != 0 && !d.unacked.iter().any(|u| u.tag == tag) {
                return Err(precondition(format!("unknown delivery tag {tag}")));
            }
            let n = if tag == 0 { d.unacked.len() } else { d.unacked.partition_point(|u| u.tag <= tag) };
            d.unacked.drain(..n).collect()
        } else {
            match d.unacked.iter().position(|u| u.tag == tag) {
                Some(at) => d.unacked.remove(at).into_iter().collect(),
                None => return Err(precondition(format!("unknown delivery tag {tag}"))),
            }
        };
        for u in &taken {
            if let Some(c) = u.consumer_tag.as_ref().and_then(|t| d.consumers.get_mut(t)) {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        Ok(taken)
    }

    /// Requeues (or drops) settled deliveries and lets their queues deliver again now that
    /// credit is back.
    /// `requeue`: `None` for an ack, `Some(true)` to put them back, `Some(false)` for a
    /// rejection (dead-lettered where the queue says so).
    fn settle(&self, taken: Vec<Unacked>, requeue: Option<bool>) {
        let rejected = requeue == Some(false);
        let requeue = requeue == Some(true);
        let mut by_queue: Vec<(Arc<Queue>, Vec<QueuedMessage>)> = Vec::new();
        for u in taken {
            match by_queue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
                Some((_, msgs)) => msgs.push(u.message),
                None => by_queue.push((u.queue, vec![u.message])),
            }
        }
        let shared_credit = self.shared.lock().global_prefetch > 0;
        for (q, msgs) in &mut by_queue {
            if requeue {
                q.requeue(std::mem::take(msgs));
            } else if rejected {
                q.reject(std::mem::take(msgs));
            } else {
                msgs.iter().for_each(|m| q.forget(m));
                q.dispatch();
            }
        }
        // A channel-wide limit (`global=true`) frees credit for every consumer of the channel,
        // not only those of the queues the settled messages came from.
        if shared_credit {
            for q in self.consumer_queues() {
                if !by_queue.iter().any(|(done, _)| Arc::ptr_eq(done, &q)) {
                    q.dispatch();
                }
            }
        }
    }

    fn recover(&mut self, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let taken = self.take_unacked(0, true)?;
        self.settle(taken, Some(true));
        Ok(())
    }

    fn tx_commit(&mut self) -> Result<(), AmqpError> {
        let Some(ops) = self.tx.as_mut().map(std::mem::take) else {
            return Err(precondition("channel is not transactional".into()));
        };
        // commit-ok waits until the transaction's persistent messages are on disk.
        let (outbound, id) = (self.session().outbound.clone(), self.shared.id);
        let durable = Countdown::new(move |ok, _| {
            if ok {
                outbound.send_method(id, &Method::TxCommitOk(TxCommitOk {}));
            } else {
                let e = AmqpError::connection(ReplyCode::InternalError, "could not write the transaction to disk");
                outbound.send_method(0, &e.in_method(90, 20).to_close_method());
            }
        });
        for op in ops {
            match op {
                TxOp::Publish { method, message, extra_keys } => {
                    // Looked up again: the exchange may have gone since the publish.
                    let x = self.session().vhost.exchange(&method.exchange)?;
                    self.route(&x, method, message, extra_keys, Some(&durable))?
                }
                TxOp::Settle(op) => self.apply_settle(op)?,
            }
        }
        durable.release();
        Ok(())
    }

    fn on_message(
        &mut self,
        method: BasicPublish,
        mut properties: Box<BasicProperties>,
        body: Bytes,
    ) -> Result<(), AmqpError> {
        let in_publish = |e: AmqpError| e.in_method(BasicPublish::CLASS_ID, BasicPublish::METHOD_ID);
        if method.immediate {
            return Err(in_publish(AmqpError::not_implemented("immediate=true")));
        }
        let session = self.session();
        let x = session.vhost.exchange(&method.exchange).map_err(in_publish)?;
        if x.internal {
            return Err(in_publish(AmqpError::new(
                ReplyCode::AccessRefused,
                format!("cannot publish to internal exchange '{}' in vhost '{}'", x.name, session.vhost.name),
            )));
        }
        if let Some(user_id) = &properties.user_id {
            if user_id.as_bytes() != session.user.as_bytes() {
                return Err(in_publish(precondition(format!(
                    "user_id property set to '{user_id}' but authenticated user was '{}'",
                    session.user
                ))));
            }
        }
        if properties.reply_to.as_ref().is_some_and(|r| *r == REPLY_TO_QUEUE) {
            let key = self.shared.lock().reply_consumer.as_ref().map(|(key, _)| key.clone());
            let Some(key) = key else {
                return Err(in_publish(precondition("fast reply consumer does not exist".into())));
            };
            let address = format!("{REPLY_TO_PREFIX}{key}");
            properties.reply_to = Some(ShortStr::try_from(address).map_err(in_publish)?);
        }
        let extra_keys = sender_selected_keys(&mut properties).map_err(in_publish)?;
        let message = Message {
            exchange: method.exchange.clone(),
            routing_key: method.routing_key.clone(),
            properties,
            body,
            timestamp_ms: crate::broker::timer::now_ms(),
        };
        if let Err(reason) = message.expiration_ms() {
            let given = message.properties.expiration.as_ref().map(ShortStr::to_string_lossy).unwrap_or_default();
            return Err(in_publish(precondition(format!("invalid expiration '{given}': {reason}"))));
        }
        if let Some(ops) = self.tx.as_mut() {
            ops.push(TxOp::Publish { method, message, extra_keys });
            return Ok(());
        }
        // Without confirms nobody waits for the writes: no countdown to allocate per message.
        let Some(seq) = self.shared.confirms.register() else {
            return self.route(&x, method, message, extra_keys, None);
        };
        let shared = self.shared.clone();
        let durable = Countdown::new(move |ok, from_writer| {
            shared.confirms.settle(seq, ok);
            // From the writer thread nobody else will flush; in the read loop the end of the
            // batch does, coalescing the acks.
            if from_writer {
                shared.confirms.flush();
            }
        });
        let routed = self.route(&x, method, message, extra_keys, Some(&durable));
        durable.release();
        routed
    }

    /// Delivers to the queues the message reaches; each durable write it needs takes a
    /// completion from `durable` (none: nobody waits for them).
    fn route(
        &mut self,
        x: &Arc<Exchange>,
        method: BasicPublish,
        message: Message,
        extra_keys: Vec<Bytes>,
        durable: Option<&Arc<Countdown>>,
    ) -> Result<(), AmqpError> {
        let completion = || durable.map_or_else(unawaited, |d| d.completion());
        let session = self.shared.session.clone();
        let keys: Vec<&[u8]> = extra_keys.iter().map(|k| &k[..]).collect();
        let message = Arc::new(message);
        let queues = session.vhost.route_holding(x, &message, &keys, &mut || durable.map(|d| d.completion()));
        let replied = x.name.is_empty()
            && message.routing_key.as_bytes().starts_with(REPLY_TO_PREFIX.as_bytes())
            && session.broker.deliver_reply(&message.routing_key, &message);
        if queues.is_empty() && !replied && method.mandatory {
            let ret = Method::BasicReturn(BasicReturn {
                reply_code: ReplyCode::NoRoute.value(),
                reply_text: ShortStr::from_static("NO_ROUTE"),
                exchange: message.exchange.clone(),
                routing_key: message.routing_key.clone(),
            });
            let frame_max = session.frame_max;
            session
                .outbound
                .write(|buf| encode_content(buf, self.shared.id, &ret, &message.properties, &message.body, frame_max));
        }
        // Encoded once, however many durable queues it goes to.
        let mut record = None;
        for q in &queues {
            let persist = q.persists(&message).then(|| {
                let r = record.get_or_insert_with(|| crate::store::messages::encode(&message)).clone();
                (r, completion())
            });
            let persisting = persist.is_some();
            if q.publish(message.clone(), persist) == Published::Rejected && !persisting {
                // A full queue refused it (x-overflow reject-publish): the publisher is nacked,
                // though other queues may have taken it.
                completion()(Err("queue full".into()));
            }
        }
        Ok(())
    }

    /// Sends the confirms owed for what this read batch published: one `basic.ack` with
    /// `multiple` covering the run when there are several.
    pub fn flush_confirms(&mut self) {
        self.shared.confirms.flush();
    }

    /// Ends the channel: consumers cancelled, unacked messages requeued (redelivered), a
    /// half-received message dropped. Called on channel.close, on errors and when the
    /// connection goes.
    pub fn close(&mut self) {
        self.cancel_replies();
        let (consumers, unacked) = {
            let mut d = self.shared.lock();
            d.open = false;
            (std::mem::take(&mut d.consumers), std::mem::take(&mut d.unacked))
        };
        // Unacked messages go back first (this channel is closed, so they are not offered to
        // it again): a single active consumer's successor then gets them before newer ones.
        self.settle(unacked.into_iter().collect(), Some(true));
        for (_, entry) in consumers {
            self.drop_consumer(entry);
        }
        self.content = Content::Idle;
        self.tx = None;
        debug!(channel = self.shared.id, "channel closed");
    }
}

/// Sender-selected distribution: the `CC` and `BCC` headers (arrays of strings) add routing
/// keys; `BCC` is removed before the message is stored, so consumers never see it.
/// The properties to deliver with when the queue counts deliveries: `x-delivery-count` says
/// how often the message was delivered before (as RabbitMQ's quorum queues do: from the first
/// redelivery on, and on `basic.get` from the first). `None`: deliver the properties as they are.
fn delivery_count_properties(queue: &Queue, message: &QueuedMessage, on_get: bool) -> Option<Box<BasicProperties>> {
    if !queue.counts_deliveries() || (message.deliveries == 0 && !on_get) {
        return None;
    }
    let mut properties = message.msg.properties.clone();
    let headers = properties.headers.get_or_insert_with(Default::default);
    headers.insert(ShortStr::from_static("x-delivery-count"), FieldValue::I64(i64::from(message.deliveries)));
    Some(properties)
}

fn sender_selected_keys(properties: &mut BasicProperties) -> Result<Vec<Bytes>, AmqpError> {
    let Some(headers) = properties.headers.as_mut() else { return Ok(Vec::new()) };
    let mut keys = Vec::new();
    for name in ["CC", "BCC"] {
        match headers.get(name) {
            None => {}
            Some(FieldValue::Array(values)) => {
                keys.extend(values.iter().filter_map(|v| match v {
                    FieldValue::LongStr(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
                    _ => None,
                }));
            }
            Some(other) => {
                return Err(precondition(format!(
                    "invalid header '{name}': expected an array of strings, got type '{}'",
                    other.tag() as char
                )))
            }
        }
    }
    if headers.get("BCC").is_some() {
        headers.remove("BCC");
    }
    Ok(keys)
}
