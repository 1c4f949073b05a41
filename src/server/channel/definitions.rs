//! The `exchange` and `queue` classes: each method handed to the broker's definitions funnel
//! (`broker::definitions`), which checks RabbitMQ's rules and stores what must survive.

use super::Channel;
use crate::auth::access::{Perm, Resource};
use crate::broker::definitions::{ExchangeSpec, QueueSpec};
use crate::broker::errors;
use crate::broker::exchange::{Destination, ExchangeKind};
use crate::broker::REPLY_TO_QUEUE;
use crate::protocol::methods::*;
use crate::protocol::{AmqpError, Method, ShortStr};

impl Channel {
    pub(super) fn exchange_declare(&mut self, m: ExchangeDeclare) -> Result<(), AmqpError> {
        let session = self.session();
        let vhost = &session.vhost;
        if m.passive {
            if !m.exchange.is_empty() {
                session.allow_any(Resource::Exchange, m.exchange.as_bytes())?;
                vhost.exchange(&m.exchange)?;
            }
            self.reply(m.no_wait, Method::ExchangeDeclareOk(ExchangeDeclareOk {}));
            return Ok(());
        }
        session.check(|a| a.check_exchange_declare(m.exchange.as_bytes(), &m.arguments))?;
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
        // RabbitMQ refuses a system exchange's deletion before it looks at permissions.
        if m.exchange.as_bytes().starts_with(b"amq.") {
            return Err(errors::system_exchange_deletion(&m.exchange, &self.session().vhost.name));
        }
        self.session().allow(Perm::Configure, Resource::Exchange, m.exchange.as_bytes())?;
        self.session().vhost.delete_exchange(&m.exchange, m.if_unused)?;
        self.reply(m.no_wait, Method::ExchangeDeleteOk(ExchangeDeleteOk {}));
        Ok(())
    }

    pub(super) fn exchange_bind(&mut self, m: ExchangeBind) -> Result<(), AmqpError> {
        self.allow_binding(Resource::Exchange, &m.destination, &m.source, &m.routing_key)?;
        let dest = Destination::Exchange(self.session().vhost.exchange(&m.destination)?);
        self.session().vhost.bind(&m.source, dest, m.routing_key, m.arguments)?;
        self.reply(m.no_wait, Method::ExchangeBindOk(ExchangeBindOk {}));
        Ok(())
    }

    pub(super) fn exchange_unbind(&mut self, m: ExchangeUnbind) -> Result<(), AmqpError> {
        self.allow_binding(Resource::Exchange, &m.destination, &m.source, &m.routing_key)?;
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
        if m.passive {
            session.allow_any(Resource::Queue, name.as_bytes())?;
        } else {
            session.check(|a| a.check_queue_declare(name.as_bytes(), &m.arguments))?;
        }
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
        self.allow_binding(Resource::Queue, &m.queue, &m.exchange, &m.routing_key)?;
        let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
        self.session().vhost.bind(&m.exchange, Destination::Queue(q), m.routing_key, m.arguments)?;
        self.reply(m.no_wait, Method::QueueBindOk(QueueBindOk {}));
        Ok(())
    }

    pub(super) fn queue_unbind(&mut self, m: QueueUnbind) -> Result<(), AmqpError> {
        self.allow_binding(Resource::Queue, &m.queue, &m.exchange, &m.routing_key)?;
        let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
        self.session().vhost.unbind(&m.exchange, Destination::Queue(q), m.routing_key, m.arguments)?;
        self.send(Method::QueueUnbindOk(QueueUnbindOk {}));
        Ok(())
    }

    pub(super) fn queue_purge(&mut self, m: QueuePurge) -> Result<(), AmqpError> {
        self.session().allow(Perm::Read, Resource::Queue, m.queue.as_bytes())?;
        let q = self.session().vhost.queue_for(&m.queue, self.session().id)?;
        if q.is_stream() {
            let vhost = &self.session().vhost.name;
            return Err(crate::broker::stream::errors::unsupported("queue.purge", &q.name, vhost));
        }
        let message_count = q.purge();
        self.reply(m.no_wait, Method::QueuePurgeOk(QueuePurgeOk { message_count }));
        Ok(())
    }

    pub(super) fn queue_delete(&mut self, m: QueueDelete) -> Result<(), AmqpError> {
        self.session().allow(Perm::Configure, Resource::Queue, m.queue.as_bytes())?;
        let message_count = self.session().vhost.delete_queue(&m.queue, m.if_unused, m.if_empty, self.session().id)?;
        self.reply(m.no_wait, Method::QueueDeleteOk(QueueDeleteOk { message_count }));
        Ok(())
    }
}

impl Channel {
    /// A binding (or unbinding): write on its destination, read on its source, and on a topic
    /// exchange the user's topic read permission on the binding key.
    fn allow_binding(
        &self,
        destination_kind: Resource,
        destination: &ShortStr,
        source: &ShortStr,
        key: &ShortStr,
    ) -> Result<(), AmqpError> {
        let session = self.session();
        session.check(|a| a.check_binding(destination_kind, destination.as_bytes(), source.as_bytes()))?;
        if session.access.has_topic_rules(source.as_bytes()) {
            if let Ok(x) = session.vhost.exchange(source) {
                if x.routing_kind() == ExchangeKind::Topic {
                    session.allow_topic(Perm::Read, source.as_bytes(), key.as_bytes())?;
                }
            }
        }
        Ok(())
    }
}
