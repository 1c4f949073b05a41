//! A channel: content assembly (method → header → bodies), the protocol's ordering rules, and
//! every channel-level method, each violation turned into RabbitMQ's error.
//!
//! The connection's read loop owns the [`Channel`]; queues reach its consumers through the
//! shared half, [`ChannelShared`] (`deliveries.rs`), which tracks delivery tags, unacked
//! messages and credit. The methods live by AMQP class, as mini-redis keeps a file per
//! command: `publish.rs` (`basic.publish`), `basic.rs` (consumers, `basic.get`, qos),
//! `deliveries.rs` (acks), `definitions.rs` (the exchange and queue classes), `tx.rs`
//! (transactions and confirm mode). This file dispatches.

mod basic;
mod definitions;
mod deliveries;
mod publish;
mod tx;

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tracing::debug;

use crate::auth::limits::Place;
use crate::broker::errors;
use crate::protocol::methods::*;
use crate::protocol::{AmqpError, ContentHeader, Frame, Method};
use crate::server::confirms::Confirms;
use crate::server::session::Session;
pub use deliveries::ChannelShared;
use deliveries::DeliveryState;
use tx::TxOp;

pub(super) enum Content {
    Idle,
    Header(BasicPublish),
    Body { method: BasicPublish, header: ContentHeader, body: BytesMut, first: Option<Bytes> },
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Settle {
    tag: u64,
    multiple: bool,
    requeue: Option<bool>,
}

pub struct Channel {
    pub shared: Arc<ChannelShared>,
    content: Content,
    tx: Option<Vec<TxOp>>,
    /// The last exchange this channel was allowed to publish to: a publisher sends to one
    /// exchange again and again, and a name comparison is cheaper than a regex per message.
    publish_allowed: Option<crate::protocol::ShortStr>,
    /// The channel's place in its user's channel count (`max-channels`), until it is dropped.
    _place: Place,
    /// Counted in the broker's `publishers` gauge (it has published) until it closes.
    publisher: bool,
    /// A queue this channel published to that holds back its publishers (`queue::flow`): the
    /// connection waits for it after the read batch.
    pub flow: Option<Arc<crate::broker::queue::Queue>>,
}

impl Channel {
    pub fn new(id: u16, session: Arc<Session>, place: Place) -> Channel {
        let state = DeliveryState { open: true, ..Default::default() };
        let confirms = Confirms::new(id, session.outbound.clone());
        Channel {
            shared: Arc::new(ChannelShared {
                id,
                session,
                state: Mutex::new(state),
                confirms,
                ack_deadline: std::sync::atomic::AtomicU64::new(u64::MAX),
                consumer_prefetch: Default::default(),
                transactional: Default::default(),
            }),
            content: Content::Idle,
            tx: None,
            publish_allowed: None,
            _place: place,
            publisher: false,
            flow: None,
        }
    }

    fn session(&self) -> &Session {
        &self.shared.session
    }

    fn send(&self, method: Method) {
        self.session().outbound.send_method(self.shared.id, &method);
    }

    fn reply(&self, no_wait: bool, method: Method) {
        if !no_wait {
            self.send(method);
        }
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
            Method::ExchangeDelete(m) => self.exchange_delete(m),
            Method::ExchangeBind(m) => self.exchange_bind(m),
            Method::ExchangeUnbind(m) => self.exchange_unbind(m),
            Method::QueueDeclare(m) => self.queue_declare(m),
            Method::QueueBind(m) => self.queue_bind(m),
            Method::QueueUnbind(m) => self.queue_unbind(m),
            Method::QueuePurge(m) => self.queue_purge(m),
            Method::QueueDelete(m) => self.queue_delete(m),
            Method::ConfirmSelect(m) => self.confirm_select(m),
            Method::TxSelect(_) => self.tx_select(),
            Method::TxCommit(_) => self.tx_commit(),
            Method::TxRollback(_) => self.tx_rollback(),
            Method::ChannelFlow(m) => {
                if !m.active {
                    return Err(AmqpError::not_implemented("active=false"));
                }
                self.send(Method::ChannelFlowOk(ChannelFlowOk { active: true }));
                Ok(())
            }
            Method::ChannelFlowOk(_) => Ok(()),
            Method::ChannelOpen(_) => Err(errors::channel_already_open()),
            other => Err(errors::unimplemented_method(other.name())),
        }
    }

    /// Sends the confirms owed for what this read batch published: one `basic.ack` with
    /// `multiple` covering the run when there are several. True while others still wait for
    /// the disk.
    pub fn flush_confirms(&mut self) -> bool {
        self.shared.confirms.flush()
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
        if std::mem::take(&mut self.publisher) {
            self.shared.session.broker.stats().publishers.dec();
        }
        debug!(channel = self.shared.id, "channel closed");
    }
}
