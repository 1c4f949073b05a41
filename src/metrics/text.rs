//! Prometheus's text exposition format (0.0.4), written straight into one `String`: a scrape of
//! ten thousand queues must not allocate per sample.

use std::fmt::Write;

use crate::counters::HistogramSnapshot;

/// The content type Prometheus (and RabbitMQ's plugin) use for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Untyped,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Untyped => "untyped",
        }
    }
}

/// A sample's value: integers print as integers, fractions as Rust's shortest round-trip form.
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Int(u64),
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as u64)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}

/// The document being written; every name gets `prefix` (`rabbitmq_`, `rabbitmq_detailed_`).
pub struct Exposition {
    out: String,
    prefix: &'static str,
}

impl Exposition {
    pub fn new(prefix: &'static str) -> Exposition {
        Exposition { out: String::with_capacity(16 * 1024), prefix }
    }

    pub fn prefix(&self) -> &'static str {
        self.prefix
    }

    pub fn set_prefix(&mut self, prefix: &'static str) {
        self.prefix = prefix;
    }

    /// Starts a family (`# TYPE`, then `# HELP`, in RabbitMQ's order). Names without the
    /// prefix; `raw` names (Warren's own, identity) are written as given.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let prefix = self.prefix;
        let _ = writeln!(self.out, "# TYPE {prefix}{name} {}", kind.as_str());
        let _ = write!(self.out, "# HELP {prefix}{name} ");
        escape_help(&mut self.out, help);
        self.out.push('\n');
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.out.push_str(self.prefix);
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_label(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        match value.into() {
            Value::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) if v.is_finite() => {
                let _ = write!(self.out, "{v}");
            }
            Value::Float(v) if v.is_nan() => self.out.push_str("NaN"),
            Value::Float(v) => self.out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" }),
        }
        self.out.push('\n');
    }

    /// A family of one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: impl Into<Value>) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A histogram family; the observation unit divided by `per_unit` is the exposed one (1e6
    /// for microseconds as seconds, 1 for counts).
    pub fn histogram(&mut self, name: &str, help: &str, labels: &[(&str, &str)], h: &HistogramSnapshot, per_unit: u64) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let bounds: Vec<String> = h.buckets.iter().map(|(b, _)| scaled(*b, per_unit).to_string()).collect();
        for ((_, count), le) in h.buckets.iter().zip(&bounds) {
            let mut with_le: Vec<(&str, &str)> = labels.to_vec();
            with_le.push(("le", le));
            self.sample(&bucket, &with_le, *count);
        }
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, h.count);
        self.sample(&format!("{name}_sum"), labels, scaled(h.sum, per_unit));
        self.sample(&format!("{name}_count"), labels, h.count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// `v / per_unit`, exact for integers (a division, not a multiplication by 1e-6, so 250 µs
/// prints as `0.00025`).
fn scaled(v: u64, per_unit: u64) -> Value {
    if per_unit <= 1 {
        Value::Int(v)
    } else {
        Value::Float(v as f64 / per_unit as f64)
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
        }
    }
}

fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_are_written_as_prometheus_reads_them() {
        let mut e = Exposition::new("rabbitmq_");
        e.family("queue_messages_ready", Kind::Gauge, "Messages ready");
        e.sample("queue_messages_ready", &[("vhost", "/"), ("queue", "a\"b\\c\nd")], 3u64);
        e.single("erlang_uptime_seconds", Kind::Gauge, "Node uptime", 1.5);
        let text = e.finish();
        assert_eq!(
            text,
            "# TYPE rabbitmq_queue_messages_ready gauge\n# HELP rabbitmq_queue_messages_ready Messages ready\n\
             rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"a\\\"b\\\\c\\nd\"} 3\n\
             # TYPE rabbitmq_erlang_uptime_seconds gauge\n# HELP rabbitmq_erlang_uptime_seconds Node uptime\n\
             rabbitmq_erlang_uptime_seconds 1.5\n"
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets_inf_sum_and_count() {
        let h = HistogramSnapshot { buckets: vec![(250, 1), (1000, 3)], count: 4, sum: 5000 };
        let mut e = Exposition::new("");
        e.histogram("warren_x_seconds", "x", &[], &h, 1_000_000);
        let text = e.finish();
        assert!(text.contains("warren_x_seconds_bucket{le=\"0.00025\"} 1\n"), "{text}");
        assert!(text.contains("warren_x_seconds_bucket{le=\"0.001\"} 3\n"));
        assert!(text.contains("warren_x_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("warren_x_seconds_sum 0.005\n"));
        assert!(text.contains("warren_x_seconds_count 4\n"));
    }
}
