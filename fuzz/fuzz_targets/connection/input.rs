//! The fuzz input read as a small program for one or two AMQP connections.
//!
//! The first octet picks the `frame_max` the client tunes to. Then each step starts with an
//! opcode octet: its low five bits pick one of the [`Op`]s below (the methods a client uses,
//! plus broken content and raw frames), its top three bits all set send the step on the
//! second connection, and the octets after it fill the method's fields — names from short
//! lists (so that declares, binds, publishes and consumes meet), argument tables from the
//! arguments Warren knows, and so on. An exhausted input reads as zeros, so every byte string
//! is a valid program. See `fuzz/corpus/connection` for examples.

use bytes::{BufMut, Bytes, BytesMut};
use warren::protocol::methods::*;
use warren::protocol::{
    constants, encode_content, encode_content_header, encode_heartbeat, encode_method, BasicProperties, FieldTable,
    FieldValue, LongStr, Method, ShortStr,
};

/// Steps after which the rest of the input is ignored.
const MAX_STEPS: usize = 200;

/// What the client does, in order.
#[derive(Debug)]
pub enum Step {
    /// Frames to queue for connection `conn`, sent at the next [`Step::Pause`] or at the end.
    Send { conn: usize, bytes: BytesMut },
    /// Write what connection `conn` has queued and give the broker a moment (deliveries
    /// arrive, confirms come back), so that later steps can settle what was delivered.
    Pause { conn: usize },
    /// Settles a delivery the client saw on `channel`: the latest, or `back` before it.
    Settle { conn: usize, channel: u16, how: Settle, back: u64, multiple: bool, requeue: bool },
    /// A third connection that sends these octets (from the protocol header on) and hangs up.
    Stranger { bytes: Vec<u8> },
}

#[derive(Debug, Clone, Copy)]
pub enum Settle {
    Ack,
    Nack,
    Reject,
}

pub struct Program {
    pub frame_max: u32,
    pub steps: Vec<Step>,
}

const QUEUES: &[&str] = &["q0", "q1", "q2", "", "q0", "amq.q", "missing"];
const EXCHANGES: &[&str] = &["", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "x0", "x1", "missing"];
/// Names `exchange.declare` and `exchange.bind`'s destination use: never a predeclared
/// exchange that could keep state from one run to the next (the run deletes x0 and x1 after).
const OWN_EXCHANGES: &[&str] = &["x0", "x1", "x0", "amq.x", ""];
const EXCHANGE_TYPES: &[&str] = &[
    "direct",
    "fanout",
    "topic",
    "headers",
    "x-consistent-hash",
    "x-delayed-message",
    "x-message-deduplication",
    "x-bogus",
];
const ROUTING_KEYS: &[&str] = &["q0", "q1", "q2", "", "a.b", "#", "*.b", "1", "amq.rabbitmq.reply-to"];
const TAGS: &[&str] = &["c0", "c1", "", "c0"];
const ARGUMENTS: &[&str] = &[
    "x-max-length",
    "x-max-length-bytes",
    "x-overflow",
    "x-message-ttl",
    "x-expires",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-priority",
    "x-queue-type",
    "x-single-active-consumer",
    "x-queue-mode",
    "x-delivery-limit",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-priority",
    "x-stream-offset",
    "x-stream-filter",
    "x-stream-match-unfiltered",
    "x-match",
    "x-delayed-type",
    "x-delay",
    "x-consumer-timeout",
    "x-message-deduplication",
    "x-deduplication-header",
    "x-cache-size",
    "x-cache-ttl",
    "x-cancel-on-ha-failover",
    "x-queue-version",
    "hash-header",
    "a",
    "b",
];
const STRINGS: &[&str] = &[
    "reject-publish",
    "drop-head",
    "reject-publish-dlx",
    "lazy",
    "default",
    "classic",
    "quorum",
    "stream",
    "first",
    "last",
    "next",
    "all",
    "any",
    "all-with-x",
    "1h",
    "7D",
    "1s",
    "direct",
    "topic",
    "x0",
    "q0",
    "q1",
    "",
    "bogus",
    "a.b",
    "message-id",
];
const INTS: &[i64] = &[0, 1, 2, 3, 5, 10, 100, 1000, 100_000, -1, 255, 65536, i32::MAX as i64, i64::MAX];
const BODY_SIZES: &[usize] = &[0, 1, 10, 100, 4090, 5000, 9000, 140_000];

/// Reads octets from the input; past its end every read is zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn pick<T: Copy>(&mut self, list: &[T]) -> T {
        list[self.u8() as usize % list.len()]
    }

    fn name(&mut self, list: &[&'static str]) -> ShortStr {
        ShortStr::from_static(self.pick(list))
    }

    /// Up to `max` octets of the input itself, the count read first.
    fn octets(&mut self, max: usize) -> Vec<u8> {
        let n = (self.u8() as usize % (max + 1)).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }

    /// Channels 1 and 2 are opened at connect; 3 and 7 only if the input opens them.
    fn channel(&mut self) -> u16 {
        match self.u8() % 16 {
            0..=6 => 1,
            7..=11 => 2,
            12..=13 => 3,
            14 => 0,
            _ => 7,
        }
    }

    fn int(&mut self) -> i64 {
        self.pick(INTS)
    }

    fn value(&mut self, depth: u8) -> FieldValue {
        match self.u8() % 14 {
            0 | 1 => FieldValue::I32(self.int() as i32),
            2 => FieldValue::I64(self.int()),
            3 => FieldValue::I16(self.int() as i16),
            4 => FieldValue::U8(self.int() as u8),
            5 | 6 => FieldValue::LongStr(LongStr::from(self.pick(STRINGS))),
            7 => FieldValue::Bool(self.bool()),
            8 => FieldValue::F64(self.pick(&[0.5, -1.0, 1e10, f64::NAN])),
            9 => FieldValue::Timestamp(self.int() as u64),
            10 => FieldValue::Void,
            11 if depth < 2 => FieldValue::Array((0..self.u8() % 3).map(|_| self.value(depth + 1)).collect()),
            12 if depth < 2 => FieldValue::Table(self.table(depth + 1)),
            _ => FieldValue::Bytes(Bytes::from(self.octets(8))),
        }
    }

    /// Zero to three arguments Warren knows, with values of any type.
    fn table(&mut self, depth: u8) -> FieldTable {
        let mut t = FieldTable::new();
        for _ in 0..self.u8() % 4 {
            let key = self.name(ARGUMENTS);
            let value = self.value(depth);
            t.insert(key, value);
        }
        t
    }

    fn properties(&mut self) -> BasicProperties {
        let set = self.u16();
        let on = |bit: u16| set & (1 << bit) != 0;
        BasicProperties {
            delivery_mode: on(0).then(|| self.pick(&[2, 1, 0, 3])),
            priority: on(1).then(|| self.pick(&[0, 1, 5, 9, 255])),
            expiration: on(2).then(|| self.name(&["0", "1", "10", "60000", "-1", "bogus", ""])),
            headers: on(3).then(|| self.table(0)),
            message_id: on(4).then(|| self.name(&["m1", "m2", ""])),
            correlation_id: on(5).then(|| self.name(&["c1", ""])),
            reply_to: on(6).then(|| self.name(&["amq.rabbitmq.reply-to", "q1", ""])),
            timestamp: on(7).then(|| self.int() as u64),
            user_id: on(8).then(|| self.name(&["guest", "other"])),
            content_type: on(9).then(|| self.name(&["text/plain", ""])),
            app_id: on(10).then(|| self.name(&["app"])),
            kind: on(11).then(|| self.name(&["t"])),
            content_encoding: on(12).then(|| self.name(&["gzip"])),
            cluster_id: on(13).then(|| self.name(&["c"])),
        }
    }
}

pub fn parse(data: &[u8]) -> Program {
    let mut input = Input(data);
    let frame_max = input.pick(&[4096, 131_072, 0, 8192]);
    // What frame_max 0 means once tuned: the broker's limit (128 KiB).
    let chunk = if frame_max == 0 { 131_072 } else { frame_max };
    let mut steps = Vec::new();
    while !input.0.is_empty() && steps.len() < MAX_STEPS {
        let op = input.u8();
        let conn = usize::from(op >= 0xe0);
        let mut bytes = BytesMut::new();
        let mut method = |channel: u16, m: Method| encode_method(&mut bytes, channel, &m);
        let i = &mut input;
        match op % 32 {
            0 => method(i.channel(), Method::ChannelOpen(ChannelOpen {})),
            1 => {
                let (channel, reply_code) = (i.channel(), i.pick(&[200, 320, 406, 0]));
                let close =
                    ChannelClose { reply_code, reply_text: ShortStr::from_static("bye"), class_id: 0, method_id: 0 };
                method(channel, Method::ChannelClose(close))
            }
            2 => method(i.channel(), Method::ChannelCloseOk(ChannelCloseOk {})),
            3 => method(i.channel(), Method::ChannelFlow(ChannelFlow { active: i.bool() })),
            4 => {
                let channel = i.channel();
                let (exchange, kind, bits, arguments) =
                    (i.name(OWN_EXCHANGES), i.name(EXCHANGE_TYPES), i.u8(), i.table(0));
                let declare = ExchangeDeclare {
                    exchange,
                    kind,
                    passive: bits & 1 != 0,
                    durable: bits & 2 != 0,
                    auto_delete: bits & 4 != 0,
                    internal: bits & 8 != 0,
                    no_wait: bits & 16 != 0,
                    arguments,
                };
                method(channel, Method::ExchangeDeclare(declare))
            }
            5 => {
                let (channel, exchange, bits) = (i.channel(), i.name(OWN_EXCHANGES), i.u8());
                let delete = ExchangeDelete { exchange, if_unused: bits & 1 != 0, no_wait: bits & 2 != 0 };
                method(channel, Method::ExchangeDelete(delete))
            }
            6 | 7 => {
                let channel = i.channel();
                let (destination, source, routing_key) =
                    (i.name(OWN_EXCHANGES), i.name(EXCHANGES), i.name(ROUTING_KEYS));
                let (no_wait, arguments) = (i.bool(), i.table(0));
                method(
                    channel,
                    match op % 32 {
                        6 => {
                            Method::ExchangeBind(ExchangeBind { destination, source, routing_key, no_wait, arguments })
                        }
                        _ => Method::ExchangeUnbind(ExchangeUnbind {
                            destination,
                            source,
                            routing_key,
                            no_wait,
                            arguments,
                        }),
                    },
                )
            }
            8 => {
                let (channel, queue, bits, arguments) = (i.channel(), i.name(QUEUES), i.u8(), i.table(0));
                let declare = QueueDeclare {
                    queue,
                    passive: bits & 1 != 0,
                    durable: bits & 2 != 0,
                    exclusive: bits & 4 != 0,
                    auto_delete: bits & 8 != 0,
                    no_wait: bits & 16 != 0,
                    arguments,
                };
                method(channel, Method::QueueDeclare(declare))
            }
            9 => {
                let channel = i.channel();
                let (queue, exchange, routing_key) = (i.name(QUEUES), i.name(EXCHANGES), i.name(ROUTING_KEYS));
                let (no_wait, arguments) = (i.bool(), i.table(0));
                method(channel, Method::QueueBind(QueueBind { queue, exchange, routing_key, no_wait, arguments }))
            }
            10 => {
                let channel = i.channel();
                let (queue, exchange, routing_key) = (i.name(QUEUES), i.name(EXCHANGES), i.name(ROUTING_KEYS));
                let arguments = i.table(0);
                method(channel, Method::QueueUnbind(QueueUnbind { queue, exchange, routing_key, arguments }))
            }
            11 => {
                let (channel, queue, no_wait) = (i.channel(), i.name(QUEUES), i.bool());
                method(channel, Method::QueuePurge(QueuePurge { queue, no_wait }))
            }
            12 => {
                let (channel, queue, bits) = (i.channel(), i.name(QUEUES), i.u8());
                let delete =
                    QueueDelete { queue, if_unused: bits & 1 != 0, if_empty: bits & 2 != 0, no_wait: bits & 4 != 0 };
                method(channel, Method::QueueDelete(delete))
            }
            13 => {
                let channel = i.channel();
                let (prefetch_size, prefetch_count, global) = (i.pick(&[0, 0, 100]), i.pick(&[0, 1, 2, 10]), i.bool());
                method(channel, Method::BasicQos(BasicQos { prefetch_size, prefetch_count, global }))
            }
            14 => {
                let (channel, queue, consumer_tag, bits) = (i.channel(), i.name(QUEUES), i.name(TAGS), i.u8());
                let consume = BasicConsume {
                    queue,
                    consumer_tag,
                    no_local: bits & 1 != 0,
                    no_ack: bits & 2 != 0,
                    exclusive: bits & 4 != 0,
                    no_wait: bits & 8 != 0,
                    arguments: i.table(0),
                };
                method(channel, Method::BasicConsume(consume))
            }
            15 => {
                let (channel, consumer_tag, no_wait) = (i.channel(), i.name(TAGS), i.bool());
                method(channel, Method::BasicCancel(BasicCancel { consumer_tag, no_wait }))
            }
            16 | 17 => {
                let channel = i.channel();
                // 17 publishes through the default exchange to a queue: the likeliest to land.
                let (exchange, routing_key) = match op % 32 {
                    16 => (i.name(EXCHANGES), i.name(ROUTING_KEYS)),
                    _ => (ShortStr::from_static(""), i.name(QUEUES)),
                };
                let (bits, properties, size) = (i.u8(), i.properties(), i.pick(BODY_SIZES));
                let publish = Method::BasicPublish(BasicPublish {
                    exchange,
                    routing_key,
                    mandatory: bits & 1 != 0,
                    immediate: bits & 0x80 != 0 && bits & 2 != 0,
                });
                encode_content(&mut bytes, channel, &publish, &properties, &vec![bits; size], chunk);
            }
            18 => {
                let (channel, queue, no_ack) = (i.channel(), i.name(QUEUES), i.bool());
                method(channel, Method::BasicGet(BasicGet { queue, no_ack }))
            }
            19..=21 => {
                let how = [Settle::Ack, Settle::Nack, Settle::Reject][usize::from(op % 32 - 19)];
                let (channel, tag, bits) = (i.channel(), i.u8(), i.u8());
                let (multiple, requeue) = (bits & 1 != 0, bits & 2 != 0);
                if tag < 0xc0 {
                    steps.push(Step::Settle { conn, channel, how, back: u64::from(tag % 4), multiple, requeue });
                    continue;
                }
                let delivery_tag = i.pick(&[0, 1, 2, 1000, u64::MAX]);
                method(
                    channel,
                    match how {
                        Settle::Ack => Method::BasicAck(BasicAck { delivery_tag, multiple }),
                        Settle::Nack => Method::BasicNack(BasicNack { delivery_tag, multiple, requeue }),
                        Settle::Reject => Method::BasicReject(BasicReject { delivery_tag, requeue }),
                    },
                )
            }
            22 => {
                let (channel, requeue) = (i.channel(), i.u8());
                method(
                    channel,
                    match requeue & 2 {
                        0 => Method::BasicRecover(BasicRecover { requeue: requeue & 1 != 0 }),
                        _ => Method::BasicRecoverAsync(BasicRecoverAsync { requeue: requeue & 1 != 0 }),
                    },
                )
            }
            23 => method(i.channel(), Method::ConfirmSelect(ConfirmSelect { nowait: i.bool() })),
            24 => method(i.channel(), Method::TxSelect(TxSelect {})),
            25 => method(i.channel(), Method::TxCommit(TxCommit {})),
            26 => method(i.channel(), Method::TxRollback(TxRollback {})),
            27 => {
                steps.push(Step::Pause { conn });
                continue;
            }
            28 => {
                // A method by number, any of the spec's client methods or none, with raw arguments.
                let channel = i.channel();
                let (class_id, method_id) = match i.u8() {
                    0xff => (i.u16(), i.u16()),
                    n => CLIENT_METHODS[n as usize % CLIENT_METHODS.len()],
                };
                let args = i.octets(48);
                raw_frame(&mut bytes, constants::FRAME_METHOD, channel, |b| {
                    b.put_u16(class_id);
                    b.put_u16(method_id);
                    b.put_slice(&args);
                });
            }
            29 => {
                // Any frame at all: type, channel, payload, the size field true or not, the end octet right or not.
                let (kind, channel, bits) = (i.pick(&[1, 2, 3, 8, 0, 4, 0xce]), i.channel(), i.u8());
                let payload = i.octets(64);
                bytes.put_u8(kind);
                bytes.put_u16(channel);
                bytes.put_u32(if bits & 1 == 0 { payload.len() as u32 } else { i.pick(&[0, 1, 7, 1 << 20, u32::MAX]) });
                bytes.put_slice(&payload);
                bytes.put_u8(if bits & 2 == 0 { constants::FRAME_END } else { i.u8() });
            }
            30 => content_pieces(i, &mut bytes, chunk),
            _ => match i.u8() % 8 {
                0 => encode_heartbeat(&mut bytes),
                1 => {
                    let close = ConnectionClose {
                        reply_code: 200,
                        reply_text: ShortStr::from_static("bye"),
                        class_id: 0,
                        method_id: 0,
                    };
                    method(0, Method::ConnectionClose(close))
                }
                2 => {
                    let mut octets = match i.u8() % 3 {
                        0 => b"AMQP\0\0\x09\x01".to_vec(),
                        1 => b"AMQP\x01\x01\x00\x09".to_vec(),
                        _ => Vec::new(),
                    };
                    octets.extend(i.octets(64));
                    steps.push(Step::Stranger { bytes: octets });
                    continue;
                }
                3 => {
                    let update = ConnectionUpdateSecret {
                        new_secret: LongStr::from("guest"),
                        reason: ShortStr::from_static("r"),
                    };
                    method(0, Method::ConnectionUpdateSecret(update))
                }
                4 => method(0, Method::ConnectionTuneOk(ConnectionTuneOk { channel_max: 0, frame_max, heartbeat: 0 })),
                5 => method(0, Method::ConnectionOpen(ConnectionOpen { virtual_host: ShortStr::from_static("/") })),
                6 => method(0, Method::ConnectionCloseOk(ConnectionCloseOk {})),
                _ => method(0, Method::ChannelOpen(ChannelOpen {})),
            },
        }
        steps.push(Step::Send { conn, bytes });
    }
    Program { frame_max, steps }
}

/// The methods a client sends, by (class, method).
const CLIENT_METHODS: &[(u16, u16)] = &[
    (10, 11),
    (10, 21),
    (10, 31),
    (10, 40),
    (10, 50),
    (10, 51),
    (10, 71),
    (20, 10),
    (20, 20),
    (20, 21),
    (20, 40),
    (20, 41),
    (40, 10),
    (40, 20),
    (40, 30),
    (40, 40),
    (50, 10),
    (50, 20),
    (50, 30),
    (50, 40),
    (50, 50),
    (60, 10),
    (60, 20),
    (60, 30),
    (60, 40),
    (60, 70),
    (60, 80),
    (60, 90),
    (60, 100),
    (60, 110),
    (60, 120),
    (85, 10),
    (90, 10),
    (90, 20),
    (90, 30),
];

/// Content out of order or out of shape: a publish or not, a header or not (of the right class
/// or not, announcing the body's size or another), body frames or not.
fn content_pieces(i: &mut Input, bytes: &mut BytesMut, chunk: u32) {
    let (channel, bits) = (i.channel(), i.u8());
    if bits & 1 != 0 {
        let publish =
            BasicPublish { exchange: i.name(EXCHANGES), routing_key: i.name(ROUTING_KEYS), ..Default::default() };
        encode_method(bytes, channel, &Method::BasicPublish(publish));
    }
    let body = i.octets(32);
    if bits & 2 != 0 {
        let size = match bits & 4 {
            0 => body.len() as u64,
            _ => i.pick(&[0, 1, 100, 1 << 40, u64::MAX]),
        };
        if bits & 8 == 0 {
            encode_content_header(bytes, channel, size, &i.properties());
        } else {
            // A header frame of another class, a non-zero weight, or property flags no class defines.
            let (class_id, weight, flags) = (i.pick(&[60, 50, 0]), i.pick(&[0, 1]), i.pick(&[0x0001, 0x0002, 0xffff]));
            let trailing = i.octets(8);
            raw_frame(bytes, constants::FRAME_HEADER, channel, |b| {
                b.put_u16(class_id);
                b.put_u16(weight);
                b.put_u64(size);
                b.put_u16(flags);
                b.put_slice(&trailing);
            });
        }
    }
    if bits & 16 != 0 {
        for piece in body.chunks(((chunk as usize).saturating_sub(8)).max(1)) {
            raw_frame(bytes, constants::FRAME_BODY, channel, |b| b.put_slice(piece));
        }
        if bits & 32 != 0 {
            raw_frame(bytes, constants::FRAME_BODY, channel, |_| {});
        }
    }
}

fn raw_frame(bytes: &mut BytesMut, kind: u8, channel: u16, payload: impl FnOnce(&mut BytesMut)) {
    bytes.put_u8(kind);
    bytes.put_u16(channel);
    let at = bytes.len();
    bytes.put_u32(0);
    payload(bytes);
    let size = (bytes.len() - at - 4) as u32;
    bytes[at..at + 4].copy_from_slice(&size.to_be_bytes());
    bytes.put_u8(constants::FRAME_END);
}
