//! Direct reply-to: RPC clients consume from the pseudo-queue `amq.rabbitmq.reply-to` and hand
//! out `amq.rabbitmq.reply-to.<key>` as their reply address; a reply published to that address
//! through the default exchange goes straight to the consumer, with no queue and no ack.

use std::sync::Arc;

use dashmap::DashMap;

use super::message::Message;
use super::queue::Consumer;
use crate::protocol::ShortStr;

/// The pseudo-queue RPC clients consume from for direct reply-to.
pub const REPLY_TO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// Prefix of the reply addresses handed to RPC servers: `amq.rabbitmq.reply-to.<key>`.
pub const REPLY_TO_PREFIX: &str = "amq.rabbitmq.reply-to.";

/// The broker's reply consumers by the key in their reply address (shared by its vhosts: the
/// address names a channel, wherever the reply is published from).
#[derive(Default)]
pub struct ReplyConsumers(DashMap<ShortStr, Arc<Consumer>>);

impl ReplyConsumers {
    pub fn register(&self, key: ShortStr, consumer: Arc<Consumer>) {
        self.0.insert(key, consumer);
    }

    pub fn unregister(&self, key: &ShortStr) {
        self.0.remove(key);
    }

    /// Delivers a message published to `amq.rabbitmq.reply-to.<key>`; false when no such
    /// consumer exists (any more), which makes the message unroutable.
    pub fn deliver(&self, routing_key: &ShortStr, message: &Arc<Message>) -> bool {
        let Some(key) = routing_key.as_bytes().strip_prefix(REPLY_TO_PREFIX.as_bytes()) else { return false };
        let Some(consumer) = self.0.get(key).map(|c| c.clone()) else { return false };
        consumer.sink.deliver_reply(&consumer, message)
    }
}
