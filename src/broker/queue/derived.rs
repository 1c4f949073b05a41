//! What a publish makes of its message at most once, however many queues it reaches: the
//! index entry the durable ones store, the whole record transient ones page out, and the copy
//! of the message that waits in queues.
//!
//! Why a copy: a message published by a client is slices of its connection's read buffer
//! (body, exchange, routing key and property strings), and a slice keeps the whole buffer — up
//! to 64 KiB — alive. Messages that pass straight through to a consumer free it again within
//! microseconds, but one that *waits* in a queue holds it for as long as it waits, together with
//! everything else that arrived in that buffer and has long gone. One 16-octet message kept in
//! every hundred held 9 KiB of memory each (`scripts/pressure/pinned-buffers.sh`), where the
//! transient budget counted a few hundred octets for it. So a message left waiting after its
//! queue's delivery round is swapped for a copy in one allocation of its own, the size the
//! budget counts; the copy is made once and shared by every queue it waits in. Only a body of
//! up to [`DETACH_MAX`]: a larger one fills most of the buffer it came in (or, over several
//! frames, has a buffer of its own), and copying it would cost more than it frees.

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::message::Message;
use crate::broker::record;

/// The largest body copied out of its read buffer: a quarter of the largest read buffer
/// (`server::buffers::MAX`), so a larger body never pins more than four times its size.
pub const DETACH_MAX: usize = 16 * 1024;

#[derive(Default)]
pub struct Derived {
    entry: Option<Bytes>,
    record: Option<Bytes>,
    detached: Option<Arc<Message>>,
}

impl Derived {
    /// The message's entry in a durable queue's index (see `record::entry`).
    pub(super) fn entry(&mut self, msg: &Message) -> Bytes {
        self.entry.get_or_insert_with(|| record::entry(msg)).clone()
    }

    /// The message's whole record (see `record::encode`).
    pub(super) fn record(&mut self, msg: &Message) -> Bytes {
        let entry = &self.entry;
        self.record
            .get_or_insert_with(|| match entry {
                // A whole index entry is that record already.
                Some(e) if !record::is_split(msg.body.len()) => e.clone(),
                _ => record::encode(msg),
            })
            .clone()
    }

    /// `msg` in memory of its own: its record, decoded again, owns its strings and body. A
    /// body over [`DETACH_MAX`] stays as it is.
    pub(super) fn detached(&mut self, msg: &Arc<Message>) -> Arc<Message> {
        if msg.body.len() > DETACH_MAX {
            return msg.clone();
        }
        if let Some(d) = &self.detached {
            return d.clone();
        }
        // It decodes: it was just encoded. Were it not so, the message stays as it is.
        let copy = record::decode(&self.record(msg)).map_or_else(|| msg.clone(), Arc::new);
        self.detached.insert(copy).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BasicProperties, ShortStr};

    fn within(part: &[u8], whole: &Bytes) -> bool {
        let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
        p >= w && p < w + whole.len()
    }

    #[test]
    fn a_detached_message_is_equal_and_holds_nothing_of_the_read_buffer() {
        let read_buffer = Bytes::from(vec![b'a'; 64 * 1024]);
        let msg = Arc::new(Message {
            exchange: ShortStr::from_bytes(read_buffer.slice(0..3)).unwrap(),
            routing_key: ShortStr::from_bytes(read_buffer.slice(3..10)).unwrap(),
            properties: Box::new(BasicProperties {
                message_id: Some(ShortStr::from_bytes(read_buffer.slice(10..20)).unwrap()),
                ..Default::default()
            }),
            body: read_buffer.slice(100..116),
            timestamp_ms: 7,
        });
        let mut derived = Derived::default();
        let copy = derived.detached(&msg);
        assert_eq!(*copy, *msg);
        for part in [copy.exchange.as_bytes(), copy.routing_key.as_bytes(), &copy.body[..]] {
            assert!(!within(part, &read_buffer), "a slice of the read buffer kept");
        }
        let id = copy.properties.message_id.as_ref().unwrap();
        assert!(!within(id.as_bytes(), &read_buffer));
        assert!(Arc::ptr_eq(&copy, &derived.detached(&msg)), "one copy per publish, shared by its queues");

        let mut large = (*msg).clone();
        large.body = Bytes::from(vec![0u8; DETACH_MAX + 1]);
        let large = Arc::new(large);
        assert!(Arc::ptr_eq(&Derived::default().detached(&large), &large), "a large body is not copied");
    }
}
