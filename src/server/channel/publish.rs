//! `basic.publish` on a channel: the assembled message checked as RabbitMQ checks it (size,
//! internal exchange, `user_id`, direct reply-to, `CC`/`BCC`, `expiration`), then handed to
//! the broker's one publish path ([`VHost::publish`](crate::broker::VHost::publish)). What stays
//! here is the channel's: the confirm sequence number, the `mandatory` return and deferring to
//! a transaction.

use std::sync::Arc;

use bytes::Bytes;

use super::{Channel, Content};
use crate::auth::access::{Perm, Resource};
use crate::broker::errors;
use crate::broker::exchange::Exchange;
use crate::broker::exchange::ExchangeKind;
use crate::broker::message::Message;
use crate::broker::publish::{Publish, PublishOutcome};
use crate::broker::{REPLY_TO_PREFIX, REPLY_TO_QUEUE};
use crate::protocol::methods::*;
use crate::protocol::{
    encode_content, AmqpError, BasicProperties, ContentHeader, FieldValue, Method, ReplyCode, ShortStr,
};

/// A publish deferred until `tx.commit`.
pub(super) struct Deferred {
    pub(super) method: BasicPublish,
    pub(super) message: Message,
    pub(super) extra_keys: Vec<Bytes>,
}

impl Channel {
    pub(super) fn on_header(&mut self, method: BasicPublish, header: ContentHeader) -> Result<(), AmqpError> {
        let max = self.session().broker.limits.max_message_size;
        if header.body_size > max {
            return Err(errors::message_too_large(header.body_size, max)
                .in_method(BasicPublish::CLASS_ID, BasicPublish::METHOD_ID));
        }
        if header.body_size == 0 {
            return self.on_message(method, header.properties, Bytes::new());
        }
        self.content = Content::Body { method, header, body: bytes::BytesMut::new(), first: None };
        Ok(())
    }

    pub(super) fn on_message(
        &mut self,
        method: BasicPublish,
        mut properties: Box<BasicProperties>,
        body: Bytes,
    ) -> Result<(), AmqpError> {
        let in_publish = |e: AmqpError| e.in_method(BasicPublish::CLASS_ID, BasicPublish::METHOD_ID);
        if method.immediate {
            return Err(in_publish(AmqpError::not_implemented("immediate=true")));
        }
        if self.publish_allowed.as_ref() != Some(&method.exchange) {
            self.session().allow(Perm::Write, Resource::Exchange, method.exchange.as_bytes()).map_err(in_publish)?;
            self.publish_allowed = Some(method.exchange.clone());
            if !std::mem::replace(&mut self.publisher, true) {
                self.session().broker.stats().publishers.inc();
            }
        }
        let session = self.session();
        let x = session.vhost.exchange(&method.exchange).map_err(in_publish)?;
        if x.internal {
            return Err(in_publish(errors::internal_exchange(&x.name, &session.vhost.name)));
        }
        if let Some(user_id) = &properties.user_id {
            if user_id.as_bytes() != session.user.as_bytes() {
                return Err(in_publish(errors::user_id_mismatch(user_id, &session.user)));
            }
        }
        if properties.reply_to.as_ref().is_some_and(|r| *r == REPLY_TO_QUEUE) {
            let key = self.shared.lock().reply_consumer.as_ref().map(|(key, _)| key.clone());
            let Some(key) = key else {
                return Err(in_publish(errors::reply_to("fast reply consumer does not exist")));
            };
            let address = format!("{REPLY_TO_PREFIX}{key}");
            properties.reply_to = Some(ShortStr::try_from(address).map_err(in_publish)?);
        }
        let extra_keys = sender_selected_keys(&mut properties).map_err(in_publish)?;
        // Topic permissions: every routing key of the message, on a topic exchange that has
        // rules for this user (no rule, no check — most publishes never get here).
        if x.routing_kind() == ExchangeKind::Topic && session.access.has_topic_rules(x.name.as_bytes()) {
            for key in std::iter::once(method.routing_key.as_bytes()).chain(extra_keys.iter().map(|k| &k[..])) {
                session.allow_topic(Perm::Write, x.name.as_bytes(), key).map_err(in_publish)?;
            }
        }
        let message = Message {
            exchange: method.exchange.clone(),
            routing_key: method.routing_key.clone(),
            properties,
            body,
            timestamp_ms: crate::broker::timer::now_ms(),
        };
        if let Err(reason) = message.expiration_ms() {
            let given = message.properties.expiration.as_ref().map(ShortStr::to_string_lossy).unwrap_or_default();
            return Err(in_publish(errors::invalid_expiration(given, reason)));
        }
        if let Some(ops) = self.tx.as_mut() {
            ops.push(super::tx::TxOp::Publish(Deferred { method, message, extra_keys }));
            return Ok(());
        }
        // Without confirms nobody waits for the writes: no outcome to allocate per message.
        let Some(seq) = self.shared.confirms.register() else {
            self.publish(&x, Deferred { method, message, extra_keys }, None);
            return Ok(());
        };
        let shared = self.shared.clone();
        let received = std::time::Instant::now();
        self.session().broker.stats().received_confirm.inc();
        let outcome = PublishOutcome::new(move |ok, from_writer| {
            let stats = shared.session.broker.stats();
            if ok {
                stats.confirmed.inc();
            } else {
                stats.confirm_nacked.inc();
            }
            stats.confirm_latency_us.observe(received.elapsed().as_micros() as u64);
            shared.confirms.settle(seq, ok);
            // From the writer thread nobody else will flush; in the read loop the end of the
            // batch does, coalescing the acks.
            if from_writer {
                shared.confirms.flush_completing();
            }
        });
        self.publish(&x, Deferred { method, message, extra_keys }, Some(&outcome));
        outcome.release();
        Ok(())
    }

    /// Publishes through the broker; returns the message to the client when it is `mandatory`
    /// and reached nothing.
    pub(super) fn publish(&mut self, x: &Arc<Exchange>, p: Deferred, outcome: Option<&Arc<PublishOutcome>>) {
        let keys: Vec<&[u8]> = p.extra_keys.iter().map(|k| &k[..]).collect();
        let publish = Publish { extra_keys: &keys, outcome, ..Publish::new(Arc::new(p.message)) };
        let published = self.shared.session.vhost.publish(x, &publish);
        if published.flow.is_some() {
            self.flow = published.flow.clone();
        }
        let session = &self.shared.session;
        let message = &publish.message;
        let stats = session.broker.stats();
        match (published.unroutable(), p.method.mandatory) {
            (false, _) => stats.routed.inc(),
            (true, true) => stats.unroutable_returned.inc(),
            (true, false) => stats.unroutable_dropped.inc(),
        }
        if published.unroutable() && p.method.mandatory {
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
    }
}

/// Sender-selected distribution: the `CC` and `BCC` headers (arrays of strings) add routing
/// keys; `BCC` is removed before the message is stored, so consumers never see it.
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
            Some(other) => return Err(errors::invalid_cc_header(name, other.tag() as char)),
        }
    }
    if headers.get("BCC").is_some() {
        headers.remove("BCC");
    }
    Ok(keys)
}
