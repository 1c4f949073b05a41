//! The flags of `warren perf` (named after RabbitMQ PerfTest's where there is one), their
//! validation, the AMQP URI, and the topology a run declares.

use std::fmt;

use clap::{Args, ValueEnum};

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

    /// Consume with no-ack (auto-ack): the broker forgets a message once sent
    #[arg(short = 'a', long)]
    pub auto_ack: bool,

    /// Acknowledge every N messages with one multiple=true basic.ack (0 or 1 = ack each)
    #[arg(short = 'A', long, default_value_t = 0, value_name = "N")]
    pub multi_ack_every: u32,

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

/// What a run declares and how producers and consumers use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub exchange_type: ExchangeType,
    /// Declared as `x-delayed-message` routing as `exchange_type`.
    pub delayed: bool,
    pub declare_exchange: bool,
    pub queues: Vec<String>,
    /// (queue index, binding key); empty for the default exchange.
    pub bindings: Vec<(usize, String)>,
    /// The routing keys each producer cycles through.
    pub producer_keys: Vec<Vec<String>>,
    /// The queue index each consumer consumes from.
    pub consumer_queues: Vec<usize>,
    /// Deliveries per published message (queues each message reaches).
    pub copies: u64,
    /// TTL + dead-letter retry: the wait queues, dead-lettering into `queues[0]`. Producers
    /// publish to them (`producer_keys` are their names) through the default exchange.
    pub wait_queues: Vec<WaitQueue>,
}

/// A queue that holds messages for its `x-message-ttl`, then dead-letters them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitQueue {
    pub name: String,
    pub ttl_ms: u64,
}

/// `k` TTLs spread evenly over `lo..=hi` (both ends included when `k` > 1).
pub fn spread(lo: u64, hi: u64, k: u32) -> Vec<u64> {
    match k {
        0 => Vec::new(),
        1 => vec![lo],
        _ => (0..u64::from(k)).map(|i| lo + (hi - lo) * i / (u64::from(k) - 1)).collect(),
    }
}

impl Topology {
    pub fn plan(args: &PerfArgs) -> Topology {
        let (exchange, declare_exchange) = args.exchange_name();
        let fanout = args.fanout_queues > 0 || args.exchange_type == ExchangeType::Fanout;
        let exchange_type = if fanout { ExchangeType::Fanout } else { args.exchange_type };
        let n = if args.fanout_queues > 0 { args.fanout_queues } else { args.queues } as usize;
        let queues: Vec<String> = match (&args.queue_pattern, args.fanout_queues > 0, n) {
            (Some(p), _, _) => (1..=n).map(|i| p.replace("%d", &i.to_string())).collect(),
            (None, true, _) => (1..=n).map(|i| format!("warren-perf-fanout-{i}")).collect(),
            (None, false, 1) => vec![args.queue.clone()],
            (None, false, _) => (1..=n).map(|i| format!("{}-{i}", args.queue)).collect(),
        };
        let nq = queues.len();
        let mut bindings = Vec::new();
        let producer_queue = |p: usize| p % nq;
        let producer_keys: Vec<Vec<String>>;
        let copies;
        if fanout {
            bindings.extend((0..nq).map(|q| (q, String::new())));
            producer_keys = (0..args.producers as usize).map(|_| vec![String::new()]).collect();
            copies = nq as u64;
        } else if exchange_type == ExchangeType::Topic && args.topic_bindings > 0 {
            // Binding i goes to queue i mod N; a producer cycles through the keys of its queue's
            // bindings, so every message matches exactly one binding among all of them.
            for i in 0..args.topic_bindings as usize {
                let wildcard = if i % 2 == 0 { "*" } else { "#" };
                bindings.push((i % nq, format!("perf.{i}.{wildcard}")));
            }
            producer_keys = (0..args.producers as usize)
                .map(|p| {
                    let q = producer_queue(p);
                    bindings.iter().filter(|(bq, _)| *bq == q).map(|(_, k)| k.replace(['*', '#'], "x")).collect()
                })
                .collect();
            copies = 1;
        } else {
            // Direct (or topic without wildcards): each queue bound under its own name.
            if !exchange.is_empty() {
                bindings.extend(queues.iter().enumerate().map(|(q, name)| (q, name.clone())));
            }
            producer_keys = (0..args.producers as usize).map(|p| vec![queues[producer_queue(p)].clone()]).collect();
            copies = 1;
        }
        let wait_queues: Vec<WaitQueue> = match args.ttl_ms {
            Some((lo, hi)) if args.ttl_queues > 0 => spread(lo, hi, args.ttl_queues)
                .into_iter()
                .enumerate()
                .map(|(i, ttl_ms)| WaitQueue { name: format!("{}-wait-{}-{ttl_ms}ms", queues[0], i + 1), ttl_ms })
                .collect(),
            _ => Vec::new(),
        };
        let producer_keys = if wait_queues.is_empty() {
            producer_keys
        } else {
            // Each message picks one of them at random (see producer::Delays::PerKey).
            let names: Vec<String> = wait_queues.iter().map(|w| w.name.clone()).collect();
            (0..args.producers as usize).map(|_| names.clone()).collect()
        };
        // With fewer topic bindings than queues some producers would have nothing to send to.
        let producer_keys = producer_keys
            .into_iter()
            .map(|k| if k.is_empty() { vec!["perf.unbound".to_string()] } else { k })
            .collect();
        Topology {
            exchange,
            exchange_type,
            delayed: args.delayed_exchange,
            declare_exchange,
            consumer_queues: (0..args.consumers as usize).map(|c| c % nq).collect(),
            queues,
            bindings,
            producer_keys,
            copies,
            wait_queues,
        }
    }
}

/// An `amqp://` URI: credentials, host, port and (percent-decoded) virtual host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUri {
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: u16,
    pub vhost: String,
}

impl AmqpUri {
    pub fn parse(uri: &str) -> Result<AmqpUri, String> {
        let bad = |why: &str| format!("bad --uri '{uri}': {why}");
        let rest = uri.strip_prefix("amqp://").ok_or_else(|| bad("only amqp:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => ("guest".to_string(), "guest".to_string()),
            Some(ui) => {
                let (u, p) = ui.split_once(':').unwrap_or((ui, ""));
                (
                    percent_decode(u).ok_or_else(|| bad("bad user"))?,
                    percent_decode(p).ok_or_else(|| bad("bad password"))?,
                )
            }
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [IPv6]:port
            let (h, after) = h.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            None | Some("") => 5672,
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
        };
        let host = if host.is_empty() { "127.0.0.1".to_string() } else { host };
        let vhost = match path {
            // amqp://host (no path) and amqp://host/ (empty path) both mean the default vhost.
            None | Some("") => "/".to_string(),
            Some(p) => percent_decode(p).ok_or_else(|| bad("bad vhost"))?,
        };
        Ok(AmqpUri { user, password, host, port, vhost })
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for AmqpUri {
    /// Without the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "amqp://{}@{}:{}/{}", self.user, self.host, self.port, self.vhost.replace('/', "%2F"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        perf: PerfArgs,
    }

    fn parse(args: &[&str]) -> PerfArgs {
        Cli::try_parse_from(std::iter::once("perf").chain(args.iter().copied())).expect("parses").perf
    }

    #[test]
    fn defaults_are_s1_for_ten_seconds() {
        let a = parse(&[]);
        assert_eq!((a.producers, a.consumers, a.size, a.rate, a.confirm), (1, 1, 16, 0, 0));
        assert_eq!(a.uri, "amqp://guest:guest@127.0.0.1:5672/%2F");
        assert_eq!(a.validate(), Ok(Limits { duration: Some(10.0), pmessages: None }));
        let t = Topology::plan(&a);
        assert_eq!((t.exchange.as_str(), t.declare_exchange), ("warren-perf-direct", true));
        assert_eq!(t.queues, ["warren-perf"]);
        assert_eq!(t.bindings, [(0, "warren-perf".to_string())]);
        assert_eq!(t.producer_keys, [["warren-perf"]]);
        assert_eq!((t.consumer_queues.as_slice(), t.copies), (&[0][..], 1));
    }

    #[test]
    fn perftest_style_short_and_long_flags() {
        let a =
            parse(&["-x", "2", "-y", "3", "-s", "1000", "-r", "500", "-C", "100", "-c", "50", "-q", "10", "-A", "5"]);
        assert_eq!((a.producers, a.consumers, a.size, a.rate), (2, 3, 1000, 500));
        assert_eq!((a.pmessages, a.confirm, a.prefetch, a.multi_ack_every), (Some(100), 50, 10, 5));
        assert_eq!(a.validate(), Ok(Limits { duration: None, pmessages: Some(100) }));
        let a = parse(&["--auto-ack", "--persistent", "--duration", "2.5", "--json", "--broker-pid", "42"]);
        assert!(a.auto_ack && a.persistent && a.json);
        assert_eq!((a.duration, a.broker_pid), (Some(2.5), Some(42)));
        assert!(Cli::try_parse_from(["perf", "--exchange-type", "headers"]).is_err());
    }

    #[test]
    fn invalid_combinations_are_refused() {
        let refused = |args: &[&str]| parse(args).validate().unwrap_err();
        assert!(refused(&["--size", "15"]).contains("at least 16"));
        assert!(refused(&["--duration", "0"]).contains("positive"));
        assert!(refused(&["--prefetch", "10", "--multi-ack-every", "20"]).contains("stall"));
        assert!(refused(&["--auto-ack", "--multi-ack-every", "20"]).contains("no effect"));
        assert!(refused(&["--topic-bindings", "5"]).contains("topic"));
        assert!(refused(&["--fanout-queues", "3", "-t", "topic"]).contains("fanout"));
        assert!(refused(&["--queue-pattern", "q", "--queues", "3"]).contains("%d"));
        assert!(refused(&["-x", "0", "-y", "0"]).contains("nothing to do"));
        assert!(refused(&["--uri", "http://x"]).contains("amqp://"));
        assert!(refused(&["-e", "", "-t", "fanout"]).contains("default exchange"));
        assert!(parse(&["-x", "0", "-y", "0", "--idle-connections", "10"]).validate().is_ok());
        assert!(refused(&["--cmessages", "0"]).contains("at least 1"));
        assert!(refused(&["-y", "0", "--cmessages", "5"]).contains("needs consumers"));
    }

    #[test]
    fn delayed_runs() {
        let a = parse(&["--delayed-exchange", "--delay-ms", "1000..60000", "-s", "24", "-t", "topic"]);
        assert_eq!(a.delay_ms, Some((1000, 60_000)));
        assert!(a.validate().is_ok());
        let t = Topology::plan(&a);
        assert!(t.delayed && t.declare_exchange && t.exchange_type == ExchangeType::Topic);
        assert_eq!(parse(&["--delayed-exchange", "--delay-ms", "500", "-s", "24"]).delay_ms, Some((500, 500)));
        let refused = |args: &[&str]| parse(args).validate().unwrap_err();
        assert!(refused(&["--delay-ms", "5", "-s", "24"]).contains("--delayed-exchange"));
        assert!(refused(&["--delayed-exchange", "--delay-ms", "5"]).contains("at least 24"));
        assert!(refused(&["--delayed-exchange", "-e", "amq.direct"]).contains("declares"));
        for bad in ["9..1", "x", "1..", "0..3000000000"] {
            assert!(Cli::try_parse_from(["perf", "--delay-ms", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn ttl_retry_runs_declare_wait_queues_that_dead_letter_into_the_consumers_queue() {
        let a = parse(&["--ttl-queues", "4", "--ttl-ms", "1000..4000", "-s", "24", "-x", "2", "-y", "3"]);
        assert_eq!((a.ttl_queues, a.ttl_ms), (4, Some((1000, 4000))));
        assert!(a.validate().is_ok());
        assert!(a.measures_lateness());
        assert_eq!(a.longest_delay_ms(), 4000);
        let t = Topology::plan(&a);
        assert_eq!((t.exchange.as_str(), t.declare_exchange, t.delayed), ("", false, false));
        assert_eq!(t.queues, ["warren-perf"]);
        assert!(t.bindings.is_empty());
        let names: Vec<_> = t.wait_queues.iter().map(|w| (w.name.as_str(), w.ttl_ms)).collect();
        assert_eq!(
            names,
            [
                ("warren-perf-wait-1-1000ms", 1000),
                ("warren-perf-wait-2-2000ms", 2000),
                ("warren-perf-wait-3-3000ms", 3000),
                ("warren-perf-wait-4-4000ms", 4000)
            ]
        );
        assert_eq!(t.producer_keys.len(), 2);
        assert!(t.producer_keys.iter().all(|k| k.len() == 4 && k[0] == "warren-perf-wait-1-1000ms"));
        assert_eq!((t.consumer_queues.as_slice(), t.copies), (&[0, 0, 0][..], 1));
        let one = parse(&["--ttl-queues", "1", "--ttl-ms", "500", "-s", "24", "-u", "work"]);
        assert!(one.validate().is_ok());
        assert_eq!(Topology::plan(&one).wait_queues, [WaitQueue { name: "work-wait-1-500ms".into(), ttl_ms: 500 }]);
    }

    #[test]
    fn ttls_are_spread_evenly_over_the_range() {
        assert_eq!(spread(1000, 60_000, 16).len(), 16);
        assert_eq!(spread(1000, 60_000, 16)[..3], [1000, 4933, 8866]);
        assert_eq!(spread(1000, 60_000, 16)[15], 60_000);
        assert_eq!(spread(7, 7, 3), [7, 7, 7]);
        assert_eq!(spread(0, 10, 1), [0]);
        assert!(spread(0, 10, 0).is_empty());
        assert_eq!(spread(0, i32::MAX as u64, 2), [0, i32::MAX as u64]);
    }

    #[test]
    fn ttl_retry_runs_refuse_what_does_not_fit() {
        let refused = |args: &[&str]| parse(args).validate().unwrap_err();
        assert!(refused(&["--ttl-queues", "4", "-s", "24"]).contains("--ttl-ms"));
        assert!(refused(&["--ttl-ms", "1..5", "-s", "24"]).contains("--ttl-queues"));
        assert!(refused(&["--ttl-queues", "4", "--ttl-ms", "1..5"]).contains("at least 24"));
        assert!(refused(&["--ttl-queues", "1", "--ttl-ms", "1..5", "-s", "24"]).contains("one TTL"));
        let ttl = ["--ttl-queues", "2", "--ttl-ms", "1..5", "-s", "24"];
        let with = |more: &[&'static str]| [&ttl[..], more].concat();
        assert!(refused(&with(&["--delayed-exchange"])).contains("use one"));
        assert!(refused(&with(&["-e", "amq.direct"])).contains("default exchange"));
        assert!(refused(&with(&["-t", "topic"])).contains("default exchange"));
        assert!(refused(&with(&["--fanout-queues", "2"])).contains("one queue"));
        assert!(refused(&with(&["--queues", "2", "--queue-pattern", "q-%d"])).contains("one queue"));
        assert!(parse(&with(&["-e", ""])).validate().is_ok(), "'' is the default exchange anyway");
        assert!(Cli::try_parse_from(["perf", "--ttl-ms", "0..3000000000"]).is_err());
    }

    #[test]
    fn drain_runs_are_counted_not_timed() {
        let a = parse(&["-x", "0", "-D", "1000", "--keep-queues"]);
        assert!(a.keep_queues);
        assert_eq!(a.cmessages, Some(1000));
        assert_eq!(a.validate(), Ok(Limits { duration: None, pmessages: None }));
    }

    #[test]
    fn queue_patterns_spread_producers_and_consumers() {
        let a = parse(&["-x", "4", "-y", "4", "--queue-pattern", "perf-%d", "--queues", "2"]);
        let t = Topology::plan(&a);
        assert_eq!(t.queues, ["perf-1", "perf-2"]);
        assert_eq!(t.consumer_queues, [0, 1, 0, 1]);
        assert_eq!(t.producer_keys, [["perf-1"], ["perf-2"], ["perf-1"], ["perf-2"]]);
        assert_eq!(t.bindings, [(0, "perf-1".to_string()), (1, "perf-2".to_string())]);
    }

    #[test]
    fn fanout_reaches_every_queue() {
        let a = parse(&["--fanout-queues", "10", "-y", "10"]);
        let t = Topology::plan(&a);
        assert_eq!((t.exchange.as_str(), t.exchange_type, t.copies), ("warren-perf-fanout", ExchangeType::Fanout, 10));
        assert_eq!(t.queues.len(), 10);
        assert_eq!(t.queues[9], "warren-perf-fanout-10");
        assert_eq!(t.bindings.len(), 10);
        assert_eq!(t.consumer_queues, (0..10).collect::<Vec<_>>());
        assert_eq!(t.producer_keys, [[""]]);
    }

    #[test]
    fn topic_keys_match_exactly_one_binding() {
        let a = parse(&["-t", "topic", "--topic-bindings", "4"]);
        let t = Topology::plan(&a);
        let keys: Vec<_> = t.bindings.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(keys, ["perf.0.*", "perf.1.#", "perf.2.*", "perf.3.#"]);
        assert_eq!(t.producer_keys, [["perf.0.x", "perf.1.x", "perf.2.x", "perf.3.x"]]);
        assert_eq!(t.copies, 1);
    }

    #[test]
    fn the_default_and_amq_exchanges_are_not_declared() {
        let t = Topology::plan(&parse(&["-e", ""]));
        assert_eq!((t.exchange.as_str(), t.declare_exchange), ("", false));
        assert!(t.bindings.is_empty(), "the default exchange routes by queue name without bindings");
        assert_eq!(t.producer_keys, [["warren-perf"]]);
        let t = Topology::plan(&parse(&["-e", "amq.direct"]));
        assert_eq!((t.exchange.as_str(), t.declare_exchange, t.bindings.len()), ("amq.direct", false, 1));
    }

    #[test]
    fn uris() {
        let u = AmqpUri::parse("amqp://guest:guest@127.0.0.1:5680/%2F").unwrap();
        assert_eq!(
            u,
            AmqpUri {
                user: "guest".into(),
                password: "guest".into(),
                host: "127.0.0.1".into(),
                port: 5680,
                vhost: "/".into()
            }
        );
        let u = AmqpUri::parse("amqp://localhost").unwrap();
        assert_eq!((u.user.as_str(), u.port, u.vhost.as_str()), ("guest", 5672, "/"));
        let u = AmqpUri::parse("amqp://a%40b:p%3Aw@[::1]:1234/staging").unwrap();
        assert_eq!((u.user.as_str(), u.password.as_str()), ("a@b", "p:w"));
        assert_eq!((u.host.as_str(), u.port, u.vhost.as_str()), ("::1", 1234, "staging"));
        assert!(AmqpUri::parse("amqp://h:notaport/").is_err());
        assert!(AmqpUri::parse("amqps://h/").is_err());
        assert!(AmqpUri::parse("amqp://h/%zz").is_err());
        assert_eq!(AmqpUri::parse("amqp://u:secret@h:1/%2F").unwrap().to_string(), "amqp://u@h:1/%2F");
    }
}
