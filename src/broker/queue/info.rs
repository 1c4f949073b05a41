//! What the management API shows of a queue, read without disturbing it: counts and
//! consumers at one moment ([`Queue::info`]) and a non-destructive look at its ready messages
//! ([`Queue::peek`]) — RabbitMQ's "get messages" requeues and marks them redelivered, which its
//! users have asked to avoid for years.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ready::Ready;
use super::{Consumer, Queue, QueueArgs};
use crate::broker::message::Message;
use crate::broker::stream::{Stream, StreamInfo};

/// What went through a queue since it was created: monotonic counters, from which the
/// management API derives rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages enqueued.
    pub published: u64,
    /// Handed to consumers.
    pub delivered: u64,
    /// Taken by `basic.get`.
    pub got: u64,
    /// Deliveries and gets of messages handed out before.
    pub redelivered: u64,
    /// Deliveries acked.
    pub acked: u64,
}

impl std::ops::Add for Counters {
    type Output = Counters;

    fn add(self, o: Counters) -> Counters {
        Counters {
            published: self.published + o.published,
            delivered: self.delivered + o.delivered,
            got: self.got + o.got,
            redelivered: self.redelivered + o.redelivered,
            acked: self.acked + o.acked,
        }
    }
}

/// A queue at one moment (taken under its lock once).
#[derive(Debug, Clone)]
pub struct QueueInfo {
    /// Ready messages.
    pub ready: u64,
    /// Body bytes of the ready messages.
    pub ready_bytes: u64,
    /// Ready messages whose body is in memory.
    pub resident: u64,
    /// Deliveries awaiting an ack.
    pub unacked: u64,
    pub consumers: Vec<Arc<Consumer>>,
    /// The single active consumer's tag, with `x-single-active-consumer`.
    pub active_consumer: Option<crate::protocol::ShortStr>,
    /// When the head message arrived (ms since the UNIX epoch), if its body is in memory.
    pub head_arrived_ms: Option<u64>,
    /// The head message's `timestamp` property (seconds), if it is in memory and has one.
    pub head_timestamp: Option<u64>,
    /// Last declare, consume or get (ms since the UNIX epoch).
    pub last_used_ms: u64,
    pub args: Arc<QueueArgs>,
    pub counters: Counters,
    /// A stream's offsets, size and consumer lags.
    pub stream: Option<StreamInfo>,
}

/// A queue's numbers at one moment, without its consumer list (what a metrics scrape reads
/// of each of thousands of queues).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueGauges {
    pub ready: u64,
    pub ready_bytes: u64,
    /// Ready messages whose body is in memory.
    pub resident: u64,
    pub unacked: u64,
    pub consumers: u64,
    /// When the head message arrived (ms since the UNIX epoch), if its body is in memory.
    pub head_arrived_ms: Option<u64>,
    /// The head message's `timestamp` property (seconds), if it is in memory and has one.
    pub head_timestamp: Option<u64>,
    pub counters: Counters,
}

/// A ready message seen by [`Queue::peek`].
#[derive(Debug, Clone)]
pub struct Peeked {
    pub msg: Arc<Message>,
    pub redelivered: bool,
}

/// Most messages one peek returns: it reads paged bodies from the store.
pub const MAX_PEEK: usize = 1000;

impl Queue {
    pub fn info(&self) -> QueueInfo {
        if let Some(stream) = self.stream() {
            return self.stream_info(stream);
        }
        let st = self.lock();
        let head = match st.ready.front() {
            Some(Ready::Resident(m)) => Some(&m.msg),
            _ => None,
        };
        QueueInfo {
            ready: st.ready.len() as u64,
            ready_bytes: st.ready.bytes(),
            resident: st.ready.resident() as u64,
            unacked: self.unacked.load(Ordering::Relaxed),
            consumers: st.consumers.clone(),
            active_consumer: st.active.as_ref().map(|c| c.tag.clone()),
            head_arrived_ms: head.map(|m| m.timestamp_ms),
            head_timestamp: head.and_then(|m| m.properties.timestamp),
            last_used_ms: st.last_used,
            args: st.args.clone(),
            counters: Counters { acked: self.acked.load(Ordering::Relaxed), ..st.counters },
            stream: None,
        }
    }

    /// A stream seen as a queue: its retained messages are its "ready" ones (all on disk).
    fn stream_info(&self, stream: &Stream) -> QueueInfo {
        let info = stream.info();
        let (args, last_used_ms) = {
            let st = self.lock();
            (st.args.clone(), st.last_used)
        };
        QueueInfo {
            ready: info.messages,
            ready_bytes: info.bytes,
            resident: 0,
            unacked: self.unacked.load(Ordering::Relaxed),
            consumers: stream.consumers(),
            active_consumer: None,
            head_arrived_ms: None,
            head_timestamp: None,
            last_used_ms,
            args,
            counters: self.stream_counters(&info),
            stream: Some(info),
        }
    }

    /// [`gauges`](Self::gauges) of a stream from a look at it already taken.
    pub fn stream_gauges(&self, info: &StreamInfo) -> QueueGauges {
        QueueGauges {
            ready: info.messages,
            ready_bytes: info.bytes,
            unacked: self.unacked.load(Ordering::Relaxed),
            consumers: info.consumers.len() as u64,
            counters: self.stream_counters(info),
            ..QueueGauges::default()
        }
    }

    fn stream_counters(&self, info: &StreamInfo) -> Counters {
        Counters {
            published: info.published,
            delivered: info.delivered,
            acked: self.acked.load(Ordering::Relaxed),
            ..Counters::default()
        }
    }

    /// [`info`](Self::info) without the copies: one short lock, nothing allocated.
    pub fn gauges(&self) -> QueueGauges {
        if let Some(stream) = self.stream() {
            return self.stream_gauges(&stream.info());
        }
        let st = self.lock();
        let head = match st.ready.front() {
            Some(Ready::Resident(m)) => Some(&m.msg),
            _ => None,
        };
        QueueGauges {
            ready: st.ready.len() as u64,
            ready_bytes: st.ready.bytes(),
            resident: st.ready.resident() as u64,
            unacked: self.unacked.load(Ordering::Relaxed),
            consumers: st.consumers.len() as u64,
            head_arrived_ms: head.map(|m| m.timestamp_ms),
            head_timestamp: head.and_then(|m| m.properties.timestamp),
            counters: Counters { acked: self.acked.load(Ordering::Relaxed), ..st.counters },
        }
    }

    /// What went through the queue so far (the rate sampler's read: no consumer list copied).
    pub fn counters(&self) -> Counters {
        if let Some(stream) = self.stream() {
            return self.stream_counters(&stream.info());
        }
        let st = self.lock();
        Counters { acked: self.acked.load(Ordering::Relaxed), ..st.counters }
    }

    /// Up to `count` ready messages from position `offset` on, in the order consumers would get
    /// them, left where they are: no redelivered flag, no delivery counted. Paged bodies are
    /// read from the store after the queue lock is released. For a stream, `offset` is a stream
    /// offset.
    pub fn peek(&self, offset: usize, count: usize) -> Vec<Peeked> {
        if let Some(stream) = self.stream() {
            let read = stream.read(offset as u64, count.min(MAX_PEEK));
            return read.into_iter().map(|msg| Peeked { msg, redelivered: false }).collect();
        }
        enum Seen {
            Here(Peeked),
            Stored { seq: u64, persisted: bool, redelivered: bool },
        }
        let seen: Vec<Seen> = {
            let st = self.lock();
            let levels = (0..st.ready.levels()).rev();
            levels
                .flat_map(|l| st.ready.iter_level(l))
                .skip(offset)
                .take(count.min(MAX_PEEK))
                .map(|r| match &*r {
                    Ready::Resident(m) => Seen::Here(Peeked { msg: m.msg.clone(), redelivered: m.redelivered }),
                    Ready::Paged { seq, persisted, redelivered, .. } => {
                        Seen::Stored { seq: *seq, persisted: *persisted, redelivered: *redelivered }
                    }
                })
                .collect()
        };
        let Some(store) = &self.store else {
            return seen.into_iter().filter_map(|s| if let Seen::Here(p) = s { Some(p) } else { None }).collect();
        };
        seen.into_iter()
            .filter_map(|s| match s {
                Seen::Here(p) => Some(p),
                Seen::Stored { seq, persisted, redelivered } => {
                    // One read per paged message: a peek is an operator's look, not a hot path.
                    let read = store.read(&[seq], !persisted).ok()?;
                    let msg = read.into_iter().next()??;
                    Some(Peeked { msg: Arc::new(msg), redelivered })
                }
            })
            .collect()
    }
}
