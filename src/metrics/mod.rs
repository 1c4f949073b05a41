//! The Prometheus endpoint (RabbitMQ's `rabbitmq_prometheus` plugin: port 15692, no auth), on
//! its own listener so that scrapers never queue behind the management API:
//!
//! - `/metrics`: aggregated — one series per metric for the node, no per-object labels, which
//!   is what the stock RabbitMQ-Overview Grafana dashboard queries;
//! - `/metrics/per-object`: the same families, queue/connection/channel ones per object, plus
//!   Warren's per-queue counters;
//! - `/metrics/detailed?family=F&vhost=V`: only the named families (RabbitMQ's group names),
//!   per object, prefixed `rabbitmq_detailed_`, optionally for some vhosts only.
//!
//! Every value is read at scrape time from counters the broker keeps anyway ([`crate::broker::
//! stats`], each queue's counters, the connection registry): a scrape costs a short lock per
//! queue and no work between scrapes.

pub mod node;
pub mod objects;
pub mod process;
pub mod streams;
pub mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::broker::Broker;
use objects::Objects;
use text::{Exposition, CONTENT_TYPE};

/// What a scrape reads.
pub struct Exporter {
    pub broker: Arc<Broker>,
    /// `rabbitmq_node`: the name the management API reports (`rabbit@<host>`).
    pub node: String,
    /// `rabbitmq_cluster`: the management API's cluster name (the node name, as RabbitMQ
    /// defaults it for a single node).
    pub cluster: String,
    pub started: Instant,
}

impl Exporter {
    pub fn new(broker: Arc<Broker>) -> Exporter {
        let node = crate::mgmt::node_name();
        Exporter { broker, cluster: node.clone(), node, started: Instant::now() }
    }

    /// `/metrics` (`per_object = false`) or `/metrics/per-object`.
    pub fn render(&self, per_object: bool) -> String {
        let objects = Objects::collect(&self.broker, None);
        let stats = self.broker.stats();
        let mut e = Exposition::new("rabbitmq_");
        node::write_process(&mut e, self, &objects);
        node::write_churn(&mut e, stats);
        objects::write_queues(&mut e, &objects.queues, objects::QUEUE_COARSE, per_object);
        objects::write_queues(&mut e, &objects.queues, objects::QUEUE_CONSUMER_COUNT, per_object);
        objects::write_queues(&mut e, &objects.queues, objects::QUEUE_METRICS, per_object);
        objects::write_channels(&mut e, &objects.channels, objects::CHANNEL_METRICS, per_object);
        node::write_channel_totals(&mut e, stats);
        objects::write_connections(&mut e, &objects.connections, objects::CONNECTION_COARSE, per_object, stats);
        objects::write_connections(&mut e, &objects.connections, objects::CONNECTION_METRICS, per_object, stats);
        node::write_counts(&mut e, &objects);
        node::write_identity(&mut e, self);
        node::write_global(&mut e, stats, &objects);
        e.set_prefix("");
        // Per queue in per-object mode; aggregated, only the oldest message's age (a sum of
        // per-queue counters would drop whenever a queue is deleted: not a counter).
        let warren_queue = if per_object { objects::WARREN_QUEUE } else { &objects::WARREN_QUEUE[..1] };
        objects::write_queues(&mut e, &objects.queues, warren_queue, per_object);
        streams::write_warren(&mut e, &objects.streams, per_object);
        node::write_warren(&mut e, &self.broker);
        e.finish()
    }

    /// `/metrics/detailed`: the families asked for, per object, for the vhosts asked for
    /// (all when none). Unknown family names are ignored, as RabbitMQ does.
    pub fn render_detailed(&self, query: &str) -> String {
        let mut families: Vec<String> = Vec::new();
        let mut vhosts: Vec<String> = Vec::new();
        for (k, v) in form_pairs(query) {
            match k.as_str() {
                "family" => families.push(v),
                "vhost" => vhosts.push(v),
                _ => {}
            }
        }
        let mut e = Exposition::new("rabbitmq_detailed_");
        let wants = |f: &str| families.iter().any(|w| w == f);
        let objects = if vhosts.is_empty() {
            Objects::collect(&self.broker, None)
        } else {
            let mut all = Objects::default();
            for v in &vhosts {
                let some = Objects::collect(&self.broker, Some(v));
                all.queues.extend(some.queues);
                all.streams.extend(some.streams);
                all.connections.extend(some.connections);
                all.channels.extend(some.channels);
            }
            all
        };
        if wants("connection_churn_metrics") {
            node::write_churn(&mut e, self.broker.stats());
        }
        if wants("queue_coarse_metrics") {
            objects::write_queues(&mut e, &objects.queues, objects::QUEUE_COARSE, true);
        }
        if wants("queue_consumer_count") {
            objects::write_queues(&mut e, &objects.queues, objects::QUEUE_CONSUMER_COUNT, true);
        }
        if wants("queue_metrics") {
            objects::write_queues(&mut e, &objects.queues, objects::QUEUE_METRICS, true);
        }
        if wants("stream_consumer_metrics") {
            streams::write_max_lag(&mut e, &objects.streams);
        }
        if wants("channel_metrics") {
            objects::write_channels(&mut e, &objects.channels, objects::CHANNEL_METRICS, true);
        }
        if wants("connection_coarse_metrics") {
            objects::write_connections(
                &mut e,
                &objects.connections,
                objects::CONNECTION_COARSE,
                true,
                self.broker.stats(),
            );
        }
        if wants("connection_metrics") {
            objects::write_connections(
                &mut e,
                &objects.connections,
                objects::CONNECTION_METRICS,
                true,
                self.broker.stats(),
            );
        }
        node::write_identity(&mut e, self);
        e.finish()
    }
}

/// `application/x-www-form-urlencoded` pairs (repeated keys kept), leniently: a malformed
/// escape stays as written.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let plus = s.replace('+', " ");
        percent_encoding::percent_decode_str(&plus).decode_utf8_lossy().into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The Prometheus HTTP listener, bound and ready to serve.
pub struct PrometheusListener {
    inner: TcpListener,
    exporter: Arc<Exporter>,
}

impl PrometheusListener {
    /// Binds `bind`:`port` (0 picks a free port) for `broker`.
    pub async fn bind(broker: Arc<Broker>, bind: &str, port: u16) -> std::io::Result<PrometheusListener> {
        let inner = TcpListener::bind((bind, port)).await?;
        Ok(PrometheusListener { inner, exporter: Arc::new(Exporter::new(broker)) })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        let listener = crate::server::accept::HttpListener::new(self.inner, "prometheus");
        axum::serve(listener, router(self.exporter)).await
    }
}

pub fn router(exporter: Arc<Exporter>) -> Router {
    Router::new()
        .route("/metrics", get(aggregated))
        .route("/metrics/per-object", get(per_object))
        .route("/metrics/detailed", get(detailed))
        .with_state(exporter)
}

/// Rendering walks every queue: off the async workers, so a scrape of a big broker never
/// stalls connections sharing the runtime.
async fn render(exporter: Arc<Exporter>, f: impl FnOnce(&Exporter) -> String + Send + 'static) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || f(&exporter)).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body)
}

async fn aggregated(State(x): State<Arc<Exporter>>) -> impl IntoResponse {
    render(x, |x| x.render(false)).await
}

async fn per_object(State(x): State<Arc<Exporter>>) -> impl IntoResponse {
    render(x, |x| x.render(true)).await
}

async fn detailed(State(x): State<Arc<Exporter>>, RawQuery(q): RawQuery) -> impl IntoResponse {
    render(x, move |x| x.render_detailed(q.as_deref().unwrap_or(""))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode_and_repeat() {
        let pairs = form_pairs("family=queue_coarse_metrics&family=queue_consumer_count&vhost=%2F&x");
        assert_eq!(
            pairs,
            vec![
                ("family".into(), "queue_coarse_metrics".into()),
                ("family".into(), "queue_consumer_count".into()),
                ("vhost".into(), "/".into()),
                ("x".into(), String::new()),
            ]
        );
    }
}
