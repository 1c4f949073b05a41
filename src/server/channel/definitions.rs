//! The `exchange` and `queue` classes: each method handed to the broker's definitions funnel
//! (`broker::definitions`), which checks RabbitMQ's rules and stores what must survive.

use super::Channel;
use crate::broker::definitions::{ExchangeSpec, QueueSpec};
use crate::broker::errors;
use crate::broker::exchange::{Destination, ExchangeKind};
use crate::broker::REPLY_TO_QUEUE;
use crate::protocol::methods::*;
use crate::protocol::{AmqpError, Method};

impl Channel {
    pub(super) fn exchange_declare(&mut self, m: ExchangeDeclare) -> Result<(), AmqpError> {
        let vhost = &self.session().vhost;
        if m.passive {
            if !m.exchange.is_empty() {
                vhost.exchange(&m.exchange)?;
            }
            self.reply(m.no_wait, Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
            return Ok(());
        }
        let kind = ExchangeKind::parse(m.kind.as_bytes()).ok_or_else(|| errors::unknown_exchange_type(&m.kind))?;
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

    pub(super) fn exchange_delete(&mut self, m: ExchangeDelete) -> Result<(), AmqpError> {
        self.session().vhost.delete_exchange(&m.exchange, m.if_unused)?;
        self.reply(m.no_wait, Method::ExchangeDeleteOk(ExchangeDeleteOk {}));
        Ok(())
    }

    pub(super) fn exchange_bind(&mut self, m: ExchangeBind) -> Result<(), AmqpError> {
        let dest = Destination::Exchange(self.session().vhost.exchange(&m.destination)?);
        self.session().vhost.bind(&m.source, dest, m.routing_key, m.arguments)?;
        self.reply(m.no_wait, Method::ExchangeBindOk(ExchangeBindOk {}));
        Ok(())
    }

    pub(super) fn exchange_unbind(&mut self, m: ExchangeUnbind) -> Result<(), AmqpError> {
        let dest = Destination::Exchange(self.session().vhost.exchange(&m.destination)?);
        self.session().vhost.unbind(&m.source, dest, m.routing_key, m.arguments)?;
        self.reply(m.no_wait, Method::ExchangeUnbindOk(ExchangeUnbindOk {}));
        Ok(())
    }

    pub(super) fn queue_declare(&mut self, m: QueueDeclare) -> Result<(), AmqpError> {
        let session = self.session();
        if m.queue == REPLY_TO_QUEUE {
            // The pseudo-queue exists for every channel; declaring it just says so.
            let ok = QueueDeclareOk { queue: m.queue, message_count: 0, consumer_count: 0 };
            self.reply(m.no_wait, Method::QueueDeclareOk(ok));
            return Ok(());
        }
        let server_named = m.queue.is_empty() && !m.passive;
        let name = if server_named { crate::broker::random_name("amq.gen-") } else { m.queue };
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

    pub(super) fn queue_bind(&mut self, m: QueueBind) -> Result<(), AmqpError> {
        let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
        self.session().vhost.bind(&m.exchange, Destination::Queue(q), m.routing_key, m.arguments)?;
        self.reply(m.no_wait, Method::QueueBindOk(QueueBindOk {}));
        Ok(())
    }

    pub(super) fn queue_unbind(&mut self, m: QueueUnbind) -> Result<(), AmqpError> {
        let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
        self.session().vhost.unbind(&m.exchange, Destination::Queue(q), m.routing_key, m.arguments)?;
        self.send(Method::QueueUnbindOk(QueueUnbindOk {}));
        Ok(())
    }

    pub(super) fn queue_purge(&mut self, m: QueuePurge) -> Result<(), AmqpError> {
        let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
        let message_count = q.purge();
        self.reply(m.no_wait, Method::QueuePurgeOk(QueuePurgeOk { message_count }));
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, m: QueueDelete) -> Result<(), AmqpError> {
        let message_count = self.session().vhost.delete_queue(&m.queue, m.if_unused, m.if_empty, self.session().id)?;
        self.reply(m.no_wait, Method::QueueDeleteOk(QueueDeleteOk { message_count }));
        Ok(())
    }
}
