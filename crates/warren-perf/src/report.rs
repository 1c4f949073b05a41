//! The end-of-run report: the scenario in one line, a human summary and one JSON line (written
//! by hand: the figures are numbers and a few short strings, not worth a serializer dependency).

use std::fmt::Write as _;

use super::args::{PerfArgs, QueueType, Topology};
use super::stats::{format_ns, Histogram};

/// Latency figures in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

impl Latency {
    pub fn of(h: &Histogram) -> Latency {
        Latency { count: h.count(), p50: h.quantile(0.5), p95: h.quantile(0.95), p99: h.quantile(0.99), max: h.max() }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub label: String,
    pub broker: String,
    pub scenario: String,
    pub producers: u32,
    pub consumers: u32,
    pub queues: usize,
    pub size: usize,
    pub seconds: f64,
    pub sent: u64,
    pub received: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub returned: u64,
    /// Connections that failed (setup or during the run), with their first few errors.
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Messages expected but not received by the end of a --pmessages run.
    pub missing: Option<u64>,
    pub confirm: Latency,
    pub e2e: Latency,
    /// Delayed messages: receive time − (send time + delay).
    pub lateness: Option<Latency>,
    /// Delayed messages that arrived before their delay was over.
    pub early: u64,
    /// How early the earliest of them was, in ns.
    pub early_max_ns: u64,
    /// From the start until every producer had sent (and, with confirms, had confirmed) its
    /// messages: the publishing phase of a counted run.
    pub publish_seconds: Option<f64>,
    /// Broker CPU time during that phase.
    pub broker_cpu_publish_s: Option<f64>,
    pub broker_pid: Option<u32>,
    /// The command name of that process (`warren`, `beam.smp`).
    pub broker_process: Option<String>,
    pub broker_cpu_s: Option<f64>,
    pub broker_peak_rss_kib: Option<u64>,
    /// Whether the peak is the kernel's VmHWM, reset at the start of the run (else the largest
    /// of the once-a-second VmRSS samples).
    pub broker_peak_from_hwm: bool,
    pub loadgen_cpu_s: Option<f64>,
    /// CPU time the whole machine used during the run (all CPUs).
    pub machine_cpu_s: Option<f64>,
    /// Whether that is CPUs × run time − time in idle states (cpuidle), else from `/proc/stat`.
    pub machine_cpu_from_cpuidle: bool,
    pub idle_connections: u32,
    pub idle_rss_per_connection_kib: Option<f64>,
}

impl Report {
    pub fn sent_rate(&self) -> f64 {
        rate(self.sent, self.seconds)
    }

    pub fn received_rate(&self) -> f64 {
        rate(self.received, self.seconds)
    }

    /// Messages sent per second of the publishing phase (when it ended before the run).
    pub fn publish_rate(&self) -> Option<f64> {
        self.publish_seconds.map(|secs| rate(self.sent, secs))
    }

    /// The broker's CPU time over the run as a share of one core, in %.
    pub fn broker_cpu_percent(&self) -> Option<f64> {
        self.broker_cpu_s.filter(|_| self.seconds > 0.0).map(|c| 100.0 * c / self.seconds)
    }

    /// Broker CPU time per delivered message, in µs.
    pub fn broker_us_per_msg(&self) -> Option<f64> {
        per_msg(self.broker_cpu_s, self.received)
    }

    /// CPU time used during the run by processes other than the broker and us (when the broker
    /// is known): noise in the figures if it is more than a few percent of the run.
    pub fn other_cpu_s(&self) -> Option<f64> {
        let other = self.machine_cpu_s? - self.broker_cpu_s? - self.loadgen_cpu_s?;
        Some(other.max(0.0))
    }

    /// Our own CPU time per delivered message (or per sent one with no consumers), in µs.
    pub fn loadgen_us_per_msg(&self) -> Option<f64> {
        per_msg(self.loadgen_cpu_s, if self.received > 0 { self.received } else { self.sent })
    }

    pub fn human(&self) -> String {
        let mut s = String::new();
        let who = if self.label.is_empty() { String::new() } else { format!(" [{}]", self.label) };
        let _ = writeln!(s, "warren perf{who}: {} against {}", self.scenario, self.broker);
        let _ = writeln!(s, "  duration     {:.2} s", self.seconds);
        let _ = writeln!(s, "  sent         {:>12} msg  {:>12.0} msg/s", self.sent, self.sent_rate());
        if let (Some(secs), Some(r)) = (self.publish_seconds, self.publish_rate()) {
            let _ = writeln!(s, "  published    {:>12} msg  {r:>12.0} msg/s  in the first {secs:.2} s", self.sent);
        }
        let _ = writeln!(s, "  received     {:>12} msg  {:>12.0} msg/s", self.received, self.received_rate());
        if self.confirmed + self.nacked > 0 {
            let _ = writeln!(s, "  confirmed    {:>12} msg  (nacked {})", self.confirmed, self.nacked);
            let _ = writeln!(s, "  confirm lat. {}", latency_line(&self.confirm));
        }
        if self.e2e.count > 0 {
            let _ = writeln!(s, "  e2e latency  {}", latency_line(&self.e2e));
        }
        if let Some(l) = self.lateness.as_ref().filter(|l| l.count > 0) {
            let early = match self.early {
                0 => "0 early".to_string(),
                n => format!("{n} early, by up to {}", format_ns(self.early_max_ns)),
            };
            let _ = writeln!(s, "  lateness     {}  ({early})", latency_line(l));
        }
        if self.returned > 0 {
            let _ = writeln!(s, "  returned     {:>12} msg (unroutable)", self.returned);
        }
        if let Some(m) = self.missing {
            let _ = writeln!(s, "  missing      {m:>12} msg (sent but not received by the end)");
        }
        let _ = writeln!(s, "  errors       {:>12}", self.errors);
        for e in &self.error_samples {
            let _ = writeln!(s, "    {e}");
        }
        if let Some(pid) = self.broker_pid {
            let mut cpu = match (self.broker_cpu_s, self.broker_us_per_msg()) {
                (Some(c), Some(per)) => format!("{c:.2} s CPU, {per:.2} µs/msg"),
                (Some(c), None) => format!("{c:.2} s CPU"),
                _ => "CPU n/a".to_string(),
            };
            if let Some(p) = self.broker_cpu_percent() {
                cpu += &format!(" ({p:.0} % of a core");
                if let Some(c) = self.broker_cpu_publish_s {
                    cpu += &format!("; {c:.2} s while publishing");
                }
                cpu += ")";
            }
            let rss = match self.broker_peak_rss_kib {
                Some(k) => format!(
                    "peak RSS {:.1} MiB{}",
                    k as f64 / 1024.0,
                    if self.broker_peak_from_hwm { "" } else { " (largest 1 s sample)" }
                ),
                None => "peak RSS n/a".to_string(),
            };
            let name = self.broker_process.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
            let _ = writeln!(s, "  broker       pid {pid}{name}: {cpu}; {rss}");
        }
        if let Some(per) = self.idle_rss_per_connection_kib {
            let _ = writeln!(s, "  idle conns   {}: broker RSS +{per:.1} KiB per connection", self.idle_connections);
        }
        if let (Some(other), Some(machine)) = (self.other_cpu_s(), self.machine_cpu_s) {
            let _ = writeln!(
                s,
                "  machine      {machine:.2} s CPU in all ({}), of which {other:.2} s by other processes{}",
                if self.machine_cpu_from_cpuidle { "CPUs x time - cpuidle" } else { "/proc/stat" },
                if other > 0.05 * self.seconds { "  (!) the figures are disturbed" } else { "" }
            );
        }
        match (self.loadgen_cpu_s, self.loadgen_us_per_msg()) {
            (Some(c), Some(per)) => {
                let _ = writeln!(s, "  load gen.    {c:.2} s CPU, {per:.2} µs/msg");
            }
            (Some(c), None) => {
                let _ = writeln!(s, "  load gen.    {c:.2} s CPU");
            }
            _ => {}
        }
        s
    }

    pub fn json(&self) -> String {
        let mut j = JsonObject::default();
        j.str("label", &self.label);
        j.str("broker", &self.broker);
        j.str("scenario", &self.scenario);
        j.num("producers", self.producers);
        j.num("consumers", self.consumers);
        j.num("queues", self.queues);
        j.num("size", self.size);
        j.float("seconds", Some(self.seconds));
        j.num("sent", self.sent);
        j.num("received", self.received);
        j.float("sent_rate", Some(self.sent_rate()));
        j.float("received_rate", Some(self.received_rate()));
        j.float("publish_seconds", self.publish_seconds);
        j.float("publish_rate", self.publish_rate());
        j.num("confirmed", self.confirmed);
        j.num("nacked", self.nacked);
        j.num("returned", self.returned);
        j.num("errors", self.errors);
        j.opt("missing", self.missing);
        for (name, l) in [("confirm", &self.confirm), ("e2e", &self.e2e)] {
            for (q, v) in [("p50", l.p50), ("p95", l.p95), ("p99", l.p99), ("max", l.max)] {
                j.float(&format!("{name}_{q}_us"), v.map(|ns| ns as f64 / 1e3));
            }
        }
        let lateness = self.lateness.unwrap_or_default();
        for (q, v) in [("p50", lateness.p50), ("p95", lateness.p95), ("p99", lateness.p99), ("max", lateness.max)] {
            j.float(&format!("lateness_{q}_us"), v.map(|ns| ns as f64 / 1e3));
        }
        j.opt("early", self.lateness.map(|_| self.early));
        j.float("early_max_us", self.lateness.map(|_| self.early_max_ns as f64 / 1e3));
        j.opt("broker_pid", self.broker_pid);
        j.str("broker_process", self.broker_process.as_deref().unwrap_or(""));
        j.float("broker_cpu_s", self.broker_cpu_s);
        j.float("broker_cpu_us_per_msg", self.broker_us_per_msg());
        j.float("broker_cpu_percent", self.broker_cpu_percent());
        j.float("broker_cpu_publish_s", self.broker_cpu_publish_s);
        j.opt("broker_peak_rss_kib", self.broker_peak_rss_kib);
        j.num("broker_peak_rss_from_hwm", self.broker_peak_from_hwm as u8);
        j.float("loadgen_cpu_s", self.loadgen_cpu_s);
        j.float("loadgen_cpu_us_per_msg", self.loadgen_us_per_msg());
        j.float("machine_cpu_s", self.machine_cpu_s);
        j.float("other_cpu_s", self.other_cpu_s());
        j.str("machine_cpu_source", if self.machine_cpu_from_cpuidle { "cpuidle" } else { "proc_stat" });
        j.num("idle_connections", self.idle_connections);
        j.float("idle_rss_per_connection_kib", self.idle_rss_per_connection_kib);
        j.finish()
    }
}

fn rate(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

fn per_msg(cpu_s: Option<f64>, messages: u64) -> Option<f64> {
    cpu_s.filter(|_| messages > 0).map(|c| c * 1e6 / messages as f64)
}

fn opt_ns(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), format_ns)
}

pub fn latency_line(l: &Latency) -> String {
    format!("p50 {}  p95 {}  p99 {}  max {}", opt_ns(l.p50), opt_ns(l.p95), opt_ns(l.p99), opt_ns(l.max))
}

#[derive(Default)]
struct JsonObject {
    out: String,
}

impl JsonObject {
    fn key(&mut self, k: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        push_json_str(&mut self.out, k);
        self.out.push(':');
    }

    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        push_json_str(&mut self.out, v);
    }

    fn num(&mut self, k: &str, v: impl std::fmt::Display) {
        self.key(k);
        let _ = write!(self.out, "{v}");
    }

    fn opt(&mut self, k: &str, v: Option<impl std::fmt::Display>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.null(k),
        }
    }

    fn float(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(v) if v.is_finite() => {
                self.key(k);
                let _ = write!(self.out, "{}", (v * 1000.0).round() / 1000.0);
            }
            _ => self.null(k),
        }
    }

    fn null(&mut self, k: &str) {
        self.key(k);
        self.out.push_str("null");
    }

    fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn queue_noun(ty: Option<QueueType>) -> &'static str {
    match ty {
        None | Some(QueueType::Classic) => "queue",
        Some(QueueType::Quorum) => "quorum queue",
        Some(QueueType::Stream) => "stream",
    }
}

/// The one-line description of the scenario the report starts with.
pub(crate) fn describe(args: &PerfArgs, topology: &Topology) -> String {
    let plural = |n: u64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let mut s = if let (Some(first), Some(last)) = (topology.wait_queues.first(), topology.wait_queues.last()) {
        format!(
            "{} → default exchange → {} (x-message-ttl {}..{} ms) → dead-lettered → 1 queue → {}",
            plural(u64::from(args.producers), "producer"),
            plural(topology.wait_queues.len() as u64, "wait queue"),
            first.ttl_ms,
            last.ttl_ms,
            plural(u64::from(args.consumers), "consumer"),
        )
    } else {
        format!(
            "{} → {}{} exchange → {} → {}",
            plural(u64::from(args.producers), "producer"),
            if topology.delayed { "delayed " } else { "" },
            topology.exchange_type.as_str(),
            plural(topology.queues.len() as u64, queue_noun(topology.queue_type)),
            plural(u64::from(args.consumers), "consumer"),
        )
    };
    s += &format!(", {} B {}", args.size, if args.persistent { "persistent" } else { "transient" });
    if args.topic_bindings > 0 {
        s += &format!(", {} topic bindings", args.topic_bindings);
    }
    if let Some((lo, hi)) = args.delay_ms {
        s += &format!(", x-delay {lo}..{hi} ms");
    }
    s += &match args.rate {
        0 => ", unlimited rate".to_string(),
        r => format!(", {r} msg/s per producer"),
    };
    if args.confirm > 0 {
        s += &format!(", confirms (window {})", args.confirm);
    }
    if args.consumers > 0 {
        s += &if args.auto_ack {
            ", auto-ack".to_string()
        } else if args.multi_ack_every > 1 {
            format!(", ack every {}", args.multi_ack_every)
        } else {
            ", ack each".to_string()
        };
        if args.prefetch > 0 {
            s += &format!(", prefetch {}", args.prefetch);
        }
        if let Some(offset) = &args.stream_offset {
            s += &format!(", from offset {offset}");
        }
    }
    if args.idle_connections > 0 {
        s += &format!(", {} idle connections", args.idle_connections);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_one_line_with_nulls_for_missing_figures() {
        let mut h = Histogram::new();
        h.record(1_500);
        let r = Report {
            label: "war\"ren".into(),
            broker: "Warren 0.1.0".into(),
            seconds: 2.0,
            sent: 10,
            received: 8,
            e2e: Latency::of(&h),
            broker_cpu_s: Some(0.004),
            ..Default::default()
        };
        let j = r.json();
        assert!(!j.contains('\n'));
        assert!(j.starts_with("{\"label\":\"war\\\"ren\",\"broker\":\"Warren 0.1.0\""), "{j}");
        assert!(j.contains("\"sent_rate\":5,\"received_rate\":4,"), "{j}");
        assert!(j.contains("\"e2e_p50_us\":1.5,"), "{j}");
        assert!(j.contains("\"confirm_p50_us\":null"), "{j}");
        assert!(j.contains("\"broker_cpu_us_per_msg\":500,"), "{j}");
        assert!(j.contains("\"broker_pid\":null"), "{j}");
        assert!(j.ends_with("\"idle_rss_per_connection_kib\":null}"), "{j}");
    }

    #[test]
    fn per_message_figures_need_messages() {
        let r = Report { broker_cpu_s: Some(1.0), loadgen_cpu_s: Some(1.0), sent: 4, ..Default::default() };
        assert_eq!(r.broker_us_per_msg(), None, "nothing delivered");
        assert_eq!(r.loadgen_us_per_msg(), Some(250_000.0), "falls back to messages sent");
        assert_eq!(r.received_rate(), 0.0, "no division by a zero duration");
    }

    #[test]
    fn human_summary_mentions_what_was_measured() {
        let r = Report {
            scenario: "1 producer".into(),
            broker: "RabbitMQ 3.10.8".into(),
            seconds: 1.0,
            received: 100,
            broker_pid: Some(7),
            broker_cpu_s: Some(0.5),
            broker_peak_rss_kib: Some(2048),
            broker_peak_from_hwm: true,
            ..Default::default()
        };
        let h = r.human();
        assert!(h.contains("RabbitMQ 3.10.8"));
        assert!(h.contains("5000.00 µs/msg"), "{h}");
        assert!(h.contains("peak RSS 2.0 MiB"), "{h}");
        assert!(h.contains("(50 % of a core)"), "{h}");
    }

    #[test]
    fn counted_delayed_runs_report_the_publishing_phase_and_early_arrivals() {
        let mut h = Histogram::new();
        h.record(2_000_000);
        let r = Report {
            seconds: 10.0,
            sent: 1000,
            received: 1000,
            publish_seconds: Some(2.0),
            lateness: Some(Latency::of(&h)),
            early: 3,
            early_max_ns: 400_000,
            broker_pid: Some(1),
            broker_cpu_s: Some(2.5),
            broker_cpu_publish_s: Some(1.0),
            ..Default::default()
        };
        assert_eq!(r.publish_rate(), Some(500.0));
        let human = r.human();
        assert!(human.contains("in the first 2.00 s"), "{human}");
        assert!(human.contains("3 early, by up to 400.0 µs"), "{human}");
        assert!(human.contains("(25 % of a core; 1.00 s while publishing)"), "{human}");
        let j = r.json();
        assert!(j.contains("\"publish_seconds\":2,\"publish_rate\":500,"), "{j}");
        assert!(j.contains("\"early\":3,\"early_max_us\":400,"), "{j}");
        assert!(j.contains("\"broker_cpu_percent\":25,\"broker_cpu_publish_s\":1,"), "{j}");
        assert!(Report::default().json().contains("\"publish_rate\":null"));
    }
}
