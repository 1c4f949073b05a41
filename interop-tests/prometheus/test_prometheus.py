"""The Prometheus endpoint (rabbitmq_prometheus's, port 15692) as Prometheus, promtool and the
stock RabbitMQ-Overview Grafana dashboard see it. Every test passes against RabbitMQ 3.10.8 too,
except those marked Warren-only (Warren's own warren_* metrics), which skip there."""

import os

import pytest

from promlib import is_warren, own_families, parse, promtool, scrape, wait_for

# Every metric the stock RabbitMQ-Overview dashboards query (3.10.8's and 4.x's, the 4.x message
# size histogram aside), that a broker with a queue, a publisher and a consumer exposes on
# /metrics. Keep in step with tests/prometheus.rs.
DASHBOARD = """
rabbitmq_build_info rabbitmq_identity_info rabbitmq_erlang_uptime_seconds
rabbitmq_resident_memory_limit_bytes rabbitmq_process_resident_memory_bytes
rabbitmq_disk_space_available_bytes rabbitmq_disk_space_available_limit_bytes
rabbitmq_process_max_fds rabbitmq_process_open_fds rabbitmq_process_max_tcp_sockets
rabbitmq_process_open_tcp_sockets rabbitmq_connections rabbitmq_channels rabbitmq_consumers rabbitmq_queues
rabbitmq_channel_consumers rabbitmq_queue_messages_ready rabbitmq_queue_messages_unacked
rabbitmq_connections_opened_total rabbitmq_connections_closed_total rabbitmq_channels_opened_total
rabbitmq_channels_closed_total rabbitmq_queues_declared_total rabbitmq_queues_created_total
rabbitmq_queues_deleted_total rabbitmq_global_publishers rabbitmq_global_consumers
rabbitmq_global_messages_received_total rabbitmq_global_messages_received_confirm_total
rabbitmq_global_messages_routed_total rabbitmq_global_messages_confirmed_total
rabbitmq_global_messages_unroutable_dropped_total rabbitmq_global_messages_unroutable_returned_total
rabbitmq_global_messages_delivered_total rabbitmq_global_messages_delivered_consume_auto_ack_total
rabbitmq_global_messages_delivered_consume_manual_ack_total rabbitmq_global_messages_delivered_get_auto_ack_total
rabbitmq_global_messages_delivered_get_manual_ack_total rabbitmq_global_messages_get_empty_total
rabbitmq_global_messages_redelivered_total rabbitmq_global_messages_acknowledged_total
rabbitmq_alarms_free_disk_space_watermark rabbitmq_alarms_memory_used_watermark
rabbitmq_channel_messages_published_total rabbitmq_channel_messages_confirmed_total
rabbitmq_channel_messages_redelivered_total rabbitmq_channel_messages_unroutable_dropped_total
rabbitmq_channel_messages_unroutable_returned_total rabbitmq_channel_messages_delivered_total
rabbitmq_channel_messages_delivered_ack_total rabbitmq_channel_messages_acked_total rabbitmq_channel_get_total
rabbitmq_channel_get_ack_total rabbitmq_channel_get_empty_total
""".split()

warren_only = pytest.mark.skipif("not is_warren()", reason="Warren's own warren_* metrics")


def test_alert_rules_pass_promtool():
    checked = promtool("check", "rules", "monitoring/alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "monitoring/alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_grafana_dashboard_is_json_on_a_prometheus_datasource_variable():
    import json

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "monitoring/grafana/dashboards/warren.json")) as f:
        dash = json.load(f)
    assert dash["panels"]
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert all(t["expr"] for t in p["targets"]), p["title"]


@pytest.mark.parametrize("path", ["/metrics", "/metrics/per-object"])
def test_the_exposition_passes_promtool(traffic, path):
    text = own_families(scrape(path))
    assert "rabbitmq_identity_info" in text
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def test_there_is_exactly_one_identity_series():
    ids = [labels for name, labels, _ in parse(scrape()) if name == "rabbitmq_identity_info"]
    assert len(ids) == 1, ids
    assert ids[0].get("rabbitmq_node") and ids[0].get("rabbitmq_cluster"), ids


def test_every_overview_dashboard_metric_is_there_after_traffic(traffic):
    def missing():
        names = {n for n, _, _ in parse(scrape())}
        gone = [n for n in DASHBOARD if n not in names]
        return not gone or None

    try:
        wait_for("every dashboard metric", missing)
    except AssertionError:
        names = {n for n, _, _ in parse(scrape())}
        raise AssertionError(f"missing: {[n for n in DASHBOARD if n not in names]}") from None


def test_aggregated_series_carry_no_per_object_labels(traffic):
    for name, labels, _ in parse(scrape()):
        assert not {"queue", "channel", "exchange"} & set(labels), (name, labels)


def test_per_object_queue_series_match_the_queue(traffic):
    q, ready = traffic

    def figures():
        got = {n: v for n, l, v in parse(scrape("/metrics/per-object")) if l.get("queue") == q and l.get("vhost") == "/"}
        ok = got.get("rabbitmq_queue_messages_ready") == ready and got.get("rabbitmq_queue_messages_unacked") == 1
        return got if ok and got.get("rabbitmq_queue_consumers") == 1 else None

    wait_for(f"{q}: {ready} ready, 1 unacked, 1 consumer", figures)


def test_detailed_returns_only_the_families_and_vhost_asked_for(traffic):
    q, ready = traffic

    def detailed():
        samples = parse(scrape("/metrics/detailed?family=queue_coarse_metrics&vhost=%2F"))
        ours = [v for n, l, v in samples if n == "rabbitmq_detailed_queue_messages_ready" and l.get("queue") == q]
        return samples if ours == [ready] else None

    samples = wait_for("the detailed queue series", detailed)
    assert not [n for n, _, _ in samples if n == "rabbitmq_detailed_queue_consumers"]
    assert [n for n, _, _ in samples if n == "rabbitmq_identity_info"] == ["rabbitmq_identity_info"]
    elsewhere = parse(scrape("/metrics/detailed?family=queue_coarse_metrics&vhost=prom-it-no-such-vhost"))
    assert not [n for n, _, _ in elsewhere if n.startswith("rabbitmq_detailed_queue")]


@warren_only
def test_warrens_own_metrics(traffic):
    q, _ = traffic
    samples = parse(scrape("/metrics/per-object"))
    ours = {n: v for n, l, v in samples if l.get("queue") == q}
    assert ours["warren_queue_head_message_age_seconds"] >= 0
    assert ours["warren_queue_messages_published_total"] == 5
    assert ours["warren_queue_messages_get_total"] == 1
    assert ours["warren_queue_messages_acked_total"] == 1
    names = {n for n, _, _ in samples}
    for family in ["warren_confirm_latency_seconds", "warren_store_batch_size", "warren_store_sync_seconds"]:
        assert {f"{family}_bucket", f"{family}_sum", f"{family}_count"} <= names, family
    reasons = {l["reason"] for n, l, _ in samples if n == "warren_messages_dead_lettered_total"}
    assert reasons == {"expired", "rejected", "maxlen", "delivery_limit"}
