//! The flags of `warren perf` (named after RabbitMQ PerfTest's where there is one) and their
//! validation; from them, the topology a run declares ([`topology`]) and the broker's address
//! ([`uri`]). The three are apart because the flags and their help text are most of it, while
//! the topology is the one place that decides names, bindings and who uses which queue.

use clap::{Args, ValueEnum};

pub use crate::client::WriteUnit;

mod queue_type;
mod topology;
mod uri;

pub use queue_type::{QueueType, StreamOffset};
pub use topology::{spread, Topology, WaitQueue};
pub use uri::AmqpUri;

const AFTER_HELP: &str = "\
Scenarios (bench/compare.sh --list shows the exact flags it uses):
  S1 throughput   --producers 1 --consumers 1 --size 16 --auto-ack --duration 20
  S3 fanout       --fanout-queues 10 --consumers 10 --auto-ack
  S4 parallel     --producers 4 --consumers 4 --queue-pattern 'perf-%d' --queues 4 --auto-ack
  S5 latency      --rate 1000 --confirm 100 --prefetch 100
  S7 idle conns   --idle-connections 1000 --producers 0 --consumers 0 --duration 5
  S8 topic        --exchange-type topic --topic-bindings 1000 --auto-ack
  S2 durable      --persistent --size 1024 --confirm 100 --prefetch 100
  delayed         --delayed-exchange --delay-ms 1000..60000 --persistent --confirm 100 --size 24
                  --pmessages 1000000 --auto-ack
  S9 TTL retry    --ttl-queues 16 --ttl-ms 1000..60000 --persistent --confirm 100 --size 24
                  --pmessages 1000000 --auto-ack
  S10 stream      --queue-type stream --size 1024 --confirm 100 --consumers 0 --pmessages 1000000
                  --keep-queues, then --queue-type stream --producers 0 --consumers 3
                  --stream-offset first --prefetch 1000 --cmessages 3000000

Every message body starts with the time it was sent (8 octets) and the producer's sequence
number (8 octets), hence --size >= 16; consumers compute end-to-end latency from it. Queues and
the exchange are declared at the start (queues purged) and deleted at the end (neither with
--keep-queues). The run stops by itself after --duration seconds, or once every producer has
sent --pmessages and the consumers have received them, or once the consumers have received
--cmessages (whichever comes first). S6 (publish 1 M persistent, then drain) is two runs:
  --persistent --confirm 100 --consumers 0 --pmessages 1000000 --keep-queues
  --persistent --producers 0 --prefetch 100 --cmessages 1000000 --keep-queues

With --delay-ms, each message asks for a delay drawn uniformly from the range (an x-delay header;
the body carries it in octets 16..24, hence --size >= 24), and consumers report lateness:
receive time - (send time + delay). A counted run then waits up to the longest delay for them.

With --ttl-queues K --ttl-ms MIN..MAX (the TTL + dead-letter retry pattern), the run declares K
wait queues '<--queue>-wait-<i>-<TTL>ms' whose x-message-ttl values are spread evenly over
MIN..MAX, each dead-lettering (x-dead-letter-exchange '', x-dead-letter-routing-key <--queue>)
into the queue the consumers read. Producers publish each message to a random wait queue through
the default exchange, its TTL written into the body's delay field, so lateness is measured as for
delayed messages. The wait queues are durable with --persistent and deleted at the end unless
--keep-queues.

With --queue-type stream the queues are streams: durable, never purged (brokers refuse it), each
consumer reads every message (from --stream-offset), with manual acks and a prefetch as streams
require; an ack only returns credit. A counted run expects every consumer to receive every
message of its stream.

With --broker-pid, the broker's CPU time (utime + stime in /proc/PID/stat) over the run is
divided by the messages delivered, and its peak RSS (VmHWM, reset at the start of the run when
permitted) is reported. For RabbitMQ, give the pid of the beam.smp process.";

#[derive(Args, Debug, Clone)]
#[command(after_help = AFTER_HELP)]
pub struct PerfArgs {
    /// Broker to connect to: amqp://user:password@host:port/vhost (vhost percent-encoded)
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2F")]
    pub uri: String,

    /// Number of producer connections (one channel each)
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: u32,

    /// Number of consumer connections (one channel, one consumer each)
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: u32,

    /// Queue to publish to and consume from (ignored with --queue-pattern or --fanout-queues)
    #[arg(short = 'u', long, default_value = "warren-perf")]
    pub queue: String,

    /// Queue name pattern; %d becomes 1..=--queues. Producer i and consumer i use queue i mod N
    #[arg(long, value_name = "PATTERN")]
    pub queue_pattern: Option<String>,

    /// Number of queues made from --queue-pattern
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub queues: u32,

    /// Exchange to publish to ('' = the default exchange; amq.* are used, never declared)
    /// [default: warren-perf-<type>]
    #[arg(short = 'e', long)]
    pub exchange: Option<String>,

    /// Exchange type
    #[arg(short = 't', long, value_enum, default_value_t = ExchangeType::Direct)]
    pub exchange_type: ExchangeType,

    /// Message body size in octets (at least 16)
    #[arg(short = 's', long, default_value_t = 16, value_name = "BYTES")]
    pub size: usize,

    /// Publishing rate per producer in messages per second (0 = as fast as possible)
    #[arg(short = 'r', long, default_value_t = 0, value_name = "MSGS_PER_S")]
    pub rate: u64,

    /// Run for this many seconds [default: 10 unless --pmessages is given]
    #[arg(short = 'z', long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Messages each producer sends before it stops
    #[arg(short = 'C', long, value_name = "COUNT")]
    pub pmessages: Option<u64>,

    /// Stop once the consumers together have received COUNT messages (e.g. draining a backlog
    /// left by an earlier run with --keep-queues)
    #[arg(short = 'D', long, value_name = "COUNT")]
    pub cmessages: Option<u64>,

    /// Neither purge the queues at the start nor delete the queues and the exchange at the end,
    /// so that one run can fill a queue and a later one drain it
    #[arg(long)]
    pub keep_queues: bool,

    /// Persistent messages (delivery-mode 2) into durable queues
    #[arg(long)]
    pub persistent: bool,

    /// Publisher confirms with at most WINDOW unconfirmed messages per producer (0 = off)
    #[arg(short = 'c', long, default_value_t = 0, value_name = "WINDOW")]
    pub confirm: u32,

    /// Declare the queues with this x-queue-type argument (quorum and stream queues are always
    /// durable)
    #[arg(long, value_enum, value_name = "TYPE")]
    pub queue_type: Option<QueueType>,

    /// Where stream consumers start (x-stream-offset on basic.consume): first, last, next, an
    /// offset, @UNIX_SECONDS or an interval such as 1h; needs --queue-type stream
    #[arg(long, value_name = "OFFSET", value_parser = StreamOffset::parse)]
    pub stream_offset: Option<StreamOffset>,

    /// Consume with no-ack (auto-ack): the broker forgets a message once sent
    #[arg(short = 'a', long)]
    pub auto_ack: bool,

    /// Acknowledge every N messages with one multiple=true basic.ack (0 or 1 = ack each)
    #[arg(short = 'A', long, default_value_t = 0, value_name = "N")]
    pub multi_ack_every: u32,

    /// What one write syscall of a load connection carries: `batch` (as many messages as are
    /// ready, up to 64 KiB), `message` (one publish or ack, as pika and the Java client write)
    /// or `frame` (one frame)
    #[arg(long, value_enum, default_value_t = WriteUnit::Batch, value_name = "UNIT")]
    pub write_per: WriteUnit,

    /// basic.qos prefetch count per consumer (0 = unlimited)
    #[arg(short = 'q', long, default_value_t = 0, value_name = "N")]
    pub prefetch: u16,

    /// Fanout to N queues: a fanout exchange with N queues bound, consumers spread over them
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fanout_queues: u32,

    /// Topic exchange with N wildcard bindings (perf.<i>.* and perf.<i>.#); each published
    /// routing key matches exactly one of them
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub topic_bindings: u32,

    /// Declare the exchange as an x-delayed-message exchange routing as --exchange-type
    /// (x-delayed-type), as RabbitMQ's delayed-message plugin and Warren offer
    #[arg(long)]
    pub delayed_exchange: bool,

    /// Delay each message by a random MIN..MAX ms (inclusive; or one value N) with an x-delay
    /// header; needs --delayed-exchange. Consumers measure lateness
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_delay_range)]
    pub delay_ms: Option<(u64, u64)>,

    /// TTL + dead-letter retry: N wait queues with x-message-ttl spread evenly over --ttl-ms,
    /// dead-lettering into --queue, which the consumers read; each message goes to a random one
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub ttl_queues: u32,

    /// The wait queues' TTLs: MIN..MAX ms (inclusive; or one value N); needs --ttl-queues.
    /// Consumers measure lateness against the TTL of the queue each message waited in
    #[arg(long, value_name = "MIN..MAX", value_parser = parse_delay_range)]
    pub ttl_ms: Option<(u64, u64)>,

    /// Open N idle connections before the run and hold them to the end; reports the broker's
    /// RSS growth per connection (with --broker-pid)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub idle_connections: u32,

    /// Process id of the broker, to sample its CPU time and memory from /proc
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,

    /// Runtime worker threads of the load generator (0 = one per CPU)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,

    /// A name for this run in the report and the JSON line (e.g. warren, rabbitmq)
    #[arg(long, default_value = "")]
    pub label: String,

    /// Print one JSON object (one line) with the results at the end
    #[arg(long)]
    pub json: bool,

    /// No live progress on stderr
    #[arg(long)]
    pub quiet: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
}

impl ExchangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
        }
    }
}

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub duration: Option<f64>,
    pub pmessages: Option<u64>,
}

pub const DEFAULT_DURATION: f64 = 10.0;
pub const MIN_SIZE: usize = 16;
/// Bodies of delayed messages also carry the delay.
pub const MIN_DELAYED_SIZE: usize = 24;

/// `MIN..MAX` or `N` milliseconds, at most what an `x-delay` header or an `x-message-ttl` argument
/// (sent as signed 32-bit) holds.
fn parse_delay_range(s: &str) -> Result<(u64, u64), String> {
    let num = |v: &str| v.trim().parse::<u64>().map_err(|_| format!("'{v}' is not a number of milliseconds"));
    let (lo, hi) = match s.split_once("..") {
        Some((lo, hi)) => (num(lo)?, num(hi)?),
        None => (num(s)?, num(s)?),
    };
    if lo > hi {
        return Err(format!("{lo}..{hi}: MIN is above MAX"));
    }
    if hi > i32::MAX as u64 {
        return Err(format!("{hi} ms does not fit a signed 32-bit x-delay or x-message-ttl (at most {})", i32::MAX));
    }
    Ok((lo, hi))
}

impl PerfArgs {
    /// Checks the combination of flags; the message says what to change.
    pub fn validate(&self) -> Result<Limits, String> {
        if self.size < MIN_SIZE {
            return Err(format!(
                "--size must be at least {MIN_SIZE} (the body carries a timestamp and a sequence number)"
            ));
        }
        if let Some(d) = self.duration {
            if !(d > 0.0 && d.is_finite()) {
                return Err("--duration must be a positive number of seconds".into());
            }
        }
        if self.pmessages == Some(0) {
            return Err("--pmessages must be at least 1".into());
        }
        if self.queues == 0 {
            return Err("--queues must be at least 1".into());
        }
        if let Some(p) = &self.queue_pattern {
            if !p.contains("%d") && self.queues > 1 {
                return Err("--queue-pattern needs a %d when --queues > 1".into());
            }
        }
        if self.fanout_queues > 0 && self.exchange_type == ExchangeType::Topic {
            return Err(
                "--fanout-queues makes a fanout exchange; it cannot be combined with --exchange-type topic".into()
            );
        }
        if self.topic_bindings > 0 && self.exchange_type != ExchangeType::Topic {
            return Err("--topic-bindings needs --exchange-type topic".into());
        }
        if self.exchange.as_deref() == Some("") && self.exchange_type != ExchangeType::Direct {
            return Err(
                "the default exchange ('') is a direct exchange; drop --exchange-type or name an exchange".into()
            );
        }
        if self.exchange.as_deref() == Some("") && (self.fanout_queues > 0 || self.topic_bindings > 0) {
            return Err("--fanout-queues and --topic-bindings need a named exchange, not ''".into());
        }
        if self.auto_ack && self.multi_ack_every > 1 {
            return Err("--multi-ack-every has no effect with --auto-ack; use one or the other".into());
        }
        if !self.auto_ack && self.prefetch > 0 && self.multi_ack_every > u32::from(self.prefetch) {
            return Err(format!(
                "--multi-ack-every {} > --prefetch {}: consumers would stall waiting for messages the broker \
                 holds back until they ack",
                self.multi_ack_every, self.prefetch
            ));
        }
        if self.producers == 0 && self.consumers == 0 && self.idle_connections == 0 {
            return Err("nothing to do: no producers, consumers or idle connections".into());
        }
        if self.pmessages.is_some() && self.producers == 0 && self.duration.is_none() {
            return Err("--pmessages without producers never ends; give --duration".into());
        }
        if self.cmessages == Some(0) {
            return Err("--cmessages must be at least 1".into());
        }
        if self.cmessages.is_some() && self.consumers == 0 {
            return Err("--cmessages needs consumers".into());
        }
        self.validate_ttl()?;
        self.validate_stream()?;
        if self.delay_ms.is_some() && !self.delayed_exchange {
            return Err("--delay-ms needs --delayed-exchange (only a delayed exchange holds messages)".into());
        }
        if self.delayed_exchange && !self.exchange_name().1 {
            return Err("--delayed-exchange needs an exchange this run declares (not '' or amq.*)".into());
        }
        if self.delay_ms.is_some() && self.size < MIN_DELAYED_SIZE {
            return Err(format!("--delay-ms needs --size of at least {MIN_DELAYED_SIZE} (the body carries the delay)"));
        }
        let duration = match (self.duration, self.pmessages, self.cmessages) {
            (None, None, None) => Some(DEFAULT_DURATION),
            (d, _, _) => d,
        };
        AmqpUri::parse(&self.uri)?;
        Ok(Limits { duration, pmessages: self.pmessages })
    }

    fn validate_ttl(&self) -> Result<(), String> {
        let Some((lo, hi)) = self.ttl_ms else {
            if self.ttl_queues > 0 {
                return Err("--ttl-queues needs --ttl-ms MIN..MAX".into());
            }
            return Ok(());
        };
        if self.ttl_queues == 0 {
            return Err("--ttl-ms needs --ttl-queues N (the wait queues that hold the messages)".into());
        }
        if self.ttl_queues == 1 && lo != hi {
            return Err("one wait queue has one TTL: give --ttl-ms N, or more --ttl-queues".into());
        }
        if self.size < MIN_DELAYED_SIZE {
            return Err(format!("--ttl-ms needs --size of at least {MIN_DELAYED_SIZE} (the body carries the TTL)"));
        }
        if self.delayed_exchange || self.delay_ms.is_some() {
            return Err("--ttl-queues and --delayed-exchange are two ways of delaying; use one".into());
        }
        if self.exchange.as_deref().is_some_and(|e| !e.is_empty()) || self.exchange_type != ExchangeType::Direct {
            return Err("--ttl-queues publishes to the wait queues through the default exchange; drop --exchange and \
                        --exchange-type"
                .into());
        }
        if self.fanout_queues > 0 || self.topic_bindings > 0 || self.queue_pattern.is_some() || self.queues > 1 {
            return Err("--ttl-queues dead-letters into one queue (--queue); it cannot be combined with \
                        --fanout-queues, --topic-bindings, --queue-pattern or --queues"
                .into());
        }
        Ok(())
    }

    fn validate_stream(&self) -> Result<(), String> {
        let stream = self.queue_type == Some(QueueType::Stream);
        if self.stream_offset.is_some() && !stream {
            return Err("--stream-offset needs --queue-type stream".into());
        }
        if stream && self.consumers > 0 && (self.auto_ack || self.prefetch == 0) {
            return Err("stream consumers need manual acks and a prefetch: drop --auto-ack, give --prefetch N".into());
        }
        Ok(())
    }

    /// Whether the queues are declared durable.
    pub fn durable(&self) -> bool {
        self.persistent || self.queue_type.is_some_and(QueueType::always_durable)
    }

    /// Whether consumers find a delay in the bodies and measure lateness.
    pub fn measures_lateness(&self) -> bool {
        self.delay_ms.is_some() || self.ttl_queues > 0
    }

    /// The longest a message is held on purpose (delay or TTL), in ms.
    pub fn longest_delay_ms(&self) -> u64 {
        self.delay_ms.or(self.ttl_ms).map_or(0, |(_, hi)| hi)
    }

    /// The exchange to publish to and whether this run declares (and later deletes) it.
    pub fn exchange_name(&self) -> (String, bool) {
        if self.ttl_queues > 0 {
            return (String::new(), false);
        }
        let ty = if self.fanout_queues > 0 { ExchangeType::Fanout } else { self.exchange_type };
        match &self.exchange {
            Some(name) => (name.clone(), !name.is_empty() && !name.starts_with("amq.")),
            None => (format!("warren-perf-{}", ty.as_str()), true),
        }
    }
}

#[cfg(test)]
mod tests;
