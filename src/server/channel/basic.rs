//! The `basic` class apart from publishing and settling: prefetch (`basic.qos`), consumers
//! (`basic.consume`, `basic.cancel`, direct reply-to's pseudo-queue) and `basic.get`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::deliveries::ConsumerEntry;
use super::Channel;
use crate::auth::access::{Perm, Resource};
use crate::broker::errors;
use crate::broker::queue::{consumer_priority, ConsumeRefused, Consumer, ConsumerSink, Queue};
use crate::broker::stream::{consume_spec, errors as stream_errors, ConsumeSpec};
use crate::broker::REPLY_TO_QUEUE;
use crate::protocol::methods::*;
use crate::protocol::{encode_content, AmqpError, FieldTable, Method};

impl Channel {
    pub(super) fn qos(&mut self, m: BasicQos) -> Result<(), AmqpError> {
        if m.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!("prefetch_size!=0 ({})", m.prefetch_size)));
        }
        if m.global {
            self.shared.lock().global_prefetch = m.prefetch_count;
        } else {
            self.shared.consumer_prefetch.store(m.prefetch_count, Ordering::Relaxed);
            // RabbitMQ lifts the channel's global limit here too (`unlimit_prefetch`).
            self.shared.lock().global_prefetch = 0;
        }
        self.send(Method::BasicQosOk(BasicQosOk {}));
        // A raised limit may let waiting messages through.
        for q in self.consumer_queues() {
            q.dispatch();
        }
        Ok(())
    }

    pub(super) fn consumer_queues(&self) -> Vec<Arc<Queue>> {
        let d = self.shared.lock();
        let mut qs: Vec<Arc<Queue>> = Vec::new();
        for c in d.consumers.values() {
            if !qs.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                qs.push(c.queue.clone());
            }
        }
        qs
    }

    pub(super) fn consume(&mut self, m: BasicConsume) -> Result<(), AmqpError> {
        if m.queue == REPLY_TO_QUEUE {
            return self.consume_replies(m);
        }
        let session = self.shared.session.clone();
        session.allow(Perm::Read, Resource::Queue, m.queue.as_bytes())?;
        let q = session.vhost.queue_for(&m.queue, session.id)?;
        let tag = if m.consumer_tag.is_empty() { crate::broker::random_name("amq.ctag-") } else { m.consumer_tag };
        if self.shared.lock().consumers.contains_key(&tag) {
            return Err(errors::consumer_tag_reused(&tag));
        }
        let (name, vhost) = (q.name.to_string_lossy(), session.vhost.name.to_string_lossy());
        let stream_spec = match q.is_stream() {
            true => Some(self.stream_consumer_spec(m.no_ack, &m.arguments, &name, &vhost)?),
            false => None,
        };
        let priority = if q.is_stream() { 0 } else { consumer_priority(&m.arguments, &name, &vhost)? };
        let sink: Arc<dyn ConsumerSink> = self.shared.clone();
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority,
            arguments: m.arguments,
            sink,
            parked: Default::default(),
        });
        // Registered with the channel first so the deliveries that follow consume-ok find it.
        self.shared.lock().consumers.insert(
            tag.clone(),
            ConsumerEntry {
                queue: q.clone(),
                consumer: consumer.clone(),
                prefetch: self.shared.consumer_prefetch.load(Ordering::Relaxed),
                unacked: 0,
            },
        );
        let ok = Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag.clone() });
        let (out, id, no_wait) = (session.outbound.clone(), self.shared.id, m.no_wait);
        let on_added = || {
            if !no_wait {
                out.send_method(id, &ok);
            }
        };
        let added = match (q.stream(), stream_spec) {
            (Some(stream), Some(spec)) => stream.add_consumer(&q, consumer, spec, on_added),
            _ => q.add_consumer(consumer, on_added),
        };
        match added {
            Ok(()) => Ok(()),
            Err(refused) => {
                self.shared.lock().consumers.remove(&tag);
                Err(match refused {
                    ConsumeRefused::ExclusiveInUse => errors::exclusive_consumer(&q.name, &session.vhost.name),
                    ConsumeRefused::Deleted => errors::not_found("queue", &q.name, &session.vhost.name),
                })
            }
        }
    }

    /// What a stream asks of its consumers (RabbitMQ's checks and order): manual acks, a
    /// per-consumer prefetch, and stream arguments only.
    fn stream_consumer_spec(
        &self,
        no_ack: bool,
        arguments: &FieldTable,
        queue: &str,
        vhost: &str,
    ) -> Result<ConsumeSpec, AmqpError> {
        if no_ack {
            return Err(stream_errors::no_ack(queue, vhost));
        }
        if self.shared.consumer_prefetch.load(Ordering::Relaxed) == 0 {
            return Err(stream_errors::prefetch_required(queue, vhost));
        }
        if self.shared.lock().global_prefetch > 0 {
            return Err(stream_errors::global_qos(queue, vhost));
        }
        consume_spec(arguments, queue, vhost)
    }

    /// `basic.consume` from `amq.rabbitmq.reply-to`: one no-ack consumer per channel, fed
    /// directly by whoever publishes to the reply address this channel hands out.
    pub(super) fn consume_replies(&mut self, m: BasicConsume) -> Result<(), AmqpError> {
        if !m.no_ack {
            return Err(errors::reply_to("reply consumer cannot acknowledge"));
        }
        if self.shared.lock().reply_consumer.is_some() {
            return Err(errors::reply_to("reply consumer already set"));
        }
        let tag = if m.consumer_tag.is_empty() { crate::broker::random_name("amq.ctag-") } else { m.consumer_tag };
        let key = crate::broker::random_name("");
        let sink: Arc<dyn ConsumerSink> = self.shared.clone();
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            no_ack: true,
            exclusive: false,
            priority: 0,
            arguments: m.arguments,
            sink,
            parked: Default::default(),
        });
        self.shared.lock().reply_consumer = Some((key.clone(), tag.clone()));
        self.reply(m.no_wait, Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag }));
        self.session().broker.replies().register(key, consumer);
        Ok(())
    }

    pub(super) fn cancel_replies(&self) {
        if let Some((key, _)) = self.shared.lock().reply_consumer.take() {
            self.session().broker.replies().unregister(&key);
        }
    }

    pub(super) fn cancel(&mut self, m: BasicCancel) -> Result<(), AmqpError> {
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

    pub(super) fn drop_consumer(&self, entry: ConsumerEntry) {
        let sink: Arc<dyn ConsumerSink> = self.shared.clone();
        if entry.queue.remove_consumer(&entry.consumer.tag, &sink) {
            self.session().vhost.remove_queue(&entry.queue);
        }
    }

    pub(super) fn get(&mut self, m: BasicGet) -> Result<(), AmqpError> {
        let session = self.session();
        session.allow(Perm::Read, Resource::Queue, m.queue.as_bytes())?;
        let q = session.vhost.queue_for(&m.queue, session.id)?;
        if q.is_stream() {
            return Err(stream_errors::unsupported("basic.get", &q.name, &session.vhost.name));
        }
        // Queue first, then the channel: LOCKS.md forbids the other order (the queue's
        // arguments too are read under its lock, so before the channel's is taken).
        let Some((message, message_count)) = q.get() else {
            session.broker.stats().get_empty.inc();
            self.send(Method::BasicGetEmpty(BasicGetEmpty {}));
            return Ok(());
        };
        let args = q.args();
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
        let counted = args.delivery_properties(&message, true);
        let properties = counted.as_ref().unwrap_or(&msg.properties);
        session.outbound.write(|buf| encode_content(buf, self.shared.id, &get_ok, properties, &msg.body, frame_max));
        session.broker.stats().delivered(true, m.no_ack, message.redelivered);
        if m.no_ack {
            q.forget(&message);
        } else {
            q.delivered(&message);
            let unacked = self.shared.unacked(tag, q, &args, message, None);
            d.unacked.push_back(unacked);
        }
        Ok(())
    }
}
