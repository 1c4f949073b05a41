//! `status`: rabbitmqctl's sections (runtime, alarms, memory, file descriptors, disk, totals,
//! listeners) from `/api/overview` and this node's entry of `/api/nodes`. A field the API does
//! not give leaves its line out; an API without `/api/nodes` still gets the overview's part.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use super::client::{ApiError, ClientError};
use super::commands::Ctx;
use super::error::CtlError;
use super::format::Formatter;

pub fn status(ctx: &mut Ctx<'_>) -> Result<(), CtlError> {
    let overview = ctx.client.get_json("/overview")?;
    let node = match ctx.client.get_json("/nodes") {
        Ok(Value::Array(nodes)) => {
            let this = overview.get("node");
            let position = nodes.iter().position(|n| this.is_some() && n.get("name") == this).unwrap_or(0);
            nodes.into_iter().nth(position)
        }
        Ok(_) | Err(ClientError::Api(ApiError { status: 404, .. })) => None,
        Err(e) => return Err(e.into()),
    };
    let node = node.unwrap_or(Value::Null);
    if ctx.opts.formatter == Formatter::Json {
        return ctx.print(&format!("{}\n", summary(&overview, &node)));
    }
    let name = overview.get("node").and_then(Value::as_str).unwrap_or("(unknown)");
    ctx.info(&format!("Status of node {name} ..."))?;
    ctx.print(&text(&overview, &node))
}

/// The JSON form: the same facts under the API's own field names.
fn summary(overview: &Value, node: &Value) -> Value {
    let mut out = Map::new();
    let overview_fields = [
        "node",
        "cluster_name",
        "product_name",
        "product_version",
        "rabbitmq_version",
        "management_version",
        "erlang_version",
        "listeners",
        "object_totals",
        "queue_totals",
    ];
    let node_fields = [
        "os_pid",
        "uptime",
        "mem_used",
        "mem_limit",
        "mem_alarm",
        "fd_used",
        "fd_total",
        "sockets_used",
        "sockets_total",
        "disk_free",
        "disk_free_limit",
        "disk_free_alarm",
    ];
    for (source, fields) in [(overview, &overview_fields[..]), (node, &node_fields[..])] {
        for field in fields {
            if let Some(value) = source.get(field) {
                out.insert(field.to_string(), strip_details(value));
            }
        }
    }
    out.insert("alarms".into(), json!(alarms(node)));
    Value::Object(out)
}

/// Drops the `*_details` rate objects: noise in a status.
fn strip_details(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(k, _)| !k.ends_with("_details")).map(|(k, v)| (k.clone(), strip_details(v))).collect(),
        ),
        other => other.clone(),
    }
}

fn alarms(node: &Value) -> Vec<&'static str> {
    let on = |field: &str| node.get(field).and_then(Value::as_bool).unwrap_or(false);
    let mut alarms = Vec::new();
    if on("mem_alarm") {
        alarms.push("memory");
    }
    if on("disk_free_alarm") {
        alarms.push("free disk space");
    }
    alarms
}

fn text(overview: &Value, node: &Value) -> String {
    let num = |v: &Value, field: &str| v.get(field).and_then(Value::as_f64);
    let string = |v: &Value, field: &str| match v.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut out = String::new();

    let product = match (string(overview, "product_name"), string(overview, "product_version")) {
        (Some(name), Some(version)) => Some(format!("{name} {version}")),
        (name, version) => name.or(version),
    };
    section(
        &mut out,
        "Runtime",
        &[
            ("OS PID", string(node, "os_pid")),
            ("Uptime (seconds)", num(node, "uptime").map(|ms| format!("{}", (ms / 1000.0) as u64))),
            ("Product", product),
            ("Management API version", string(overview, "management_version")),
            ("Node name", string(overview, "node")),
            ("Cluster name", string(overview, "cluster_name")),
            ("Erlang configuration", string(overview, "erlang_full_version")),
        ],
    );

    if !node.is_null() {
        let alarms = alarms(node);
        let listed = if alarms.is_empty() { "(none)".to_string() } else { alarms.join("\n") };
        let _ = write!(out, "Alarms\n\n{listed}\n\n");
    }

    section(
        &mut out,
        "Memory",
        &[
            ("Total memory used", num(node, "mem_used").map(gb)),
            ("Memory high watermark, computed to", num(node, "mem_limit").map(gb)),
        ],
    );
    let pair = |used: &str, limit: &str| match (num(node, used), num(node, limit)) {
        (Some(u), Some(l)) => Some(format!("{u}, limit: {l}")),
        _ => None,
    };
    section(
        &mut out,
        "File Descriptors",
        &[("Total", pair("fd_used", "fd_total")), ("Sockets", pair("sockets_used", "sockets_total"))],
    );
    section(
        &mut out,
        "Free Disk Space",
        &[
            ("Low free disk space watermark", num(node, "disk_free_limit").map(gb)),
            ("Free disk space", num(node, "disk_free").map(gb)),
        ],
    );

    let totals = overview.get("object_totals").unwrap_or(&Value::Null);
    let queued = overview.get("queue_totals").unwrap_or(&Value::Null);
    section(
        &mut out,
        "Totals",
        &[
            ("Connection count", string(totals, "connections")),
            ("Channel count", string(totals, "channels")),
            ("Queue count", string(totals, "queues")),
            ("Consumer count", string(totals, "consumers")),
            ("Exchange count", string(totals, "exchanges")),
            ("Messages", string(queued, "messages")),
            ("Messages ready", string(queued, "messages_ready")),
            ("Messages unacknowledged", string(queued, "messages_unacknowledged")),
        ],
    );

    let listeners: Vec<String> = overview
        .get("listeners")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    let field = |f: &str| string(l, f).unwrap_or_default();
                    format!(
                        "Interface: {}, port: {}, protocol: {}",
                        field("ip_address"),
                        field("port"),
                        field("protocol")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !listeners.is_empty() {
        let _ = write!(out, "Listeners\n\n{}\n", listeners.join("\n"));
    }
    out
}

/// A heading and its `label: value` lines; nothing at all when the API gave none of them.
fn section(out: &mut String, heading: &str, lines: &[(&str, Option<String>)]) {
    let present: Vec<String> =
        lines.iter().filter_map(|(label, value)| value.as_ref().map(|v| format!("{label}: {v}"))).collect();
    if !present.is_empty() {
        let _ = write!(out, "{heading}\n\n{}\n\n", present.join("\n"));
    }
}

/// Bytes as rabbitmqctl prints them: decimal gigabytes, up to four decimals.
fn gb(bytes: f64) -> String {
    let text = format!("{:.4}", bytes / 1e9);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} gb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gigabytes_like_rabbitmqctl() {
        assert_eq!(gb(12_320_976_896.0), "12.321 gb");
        assert_eq!(gb(10_110_473_011.0), "10.1105 gb");
        assert_eq!(gb(50_000_000.0), "0.05 gb");
        assert_eq!(gb(0.0), "0 gb");
    }

    #[test]
    fn text_leaves_out_what_the_api_does_not_give() {
        let overview = json!({"node": "warren@h", "product_name": "Warren", "product_version": "0.1.0",
                              "object_totals": {"queues": 3, "connections": 1},
                              "listeners": [{"ip_address": "0.0.0.0", "port": 5672, "protocol": "amqp"}]});
        let text = text(&overview, &Value::Null);
        assert!(text.starts_with("Runtime\n\nProduct: Warren 0.1.0\nNode name: warren@h\n\n"), "{text}");
        assert!(text.contains("Totals\n\nConnection count: 1\nQueue count: 3\n\n"), "{text}");
        assert!(text.ends_with("Listeners\n\nInterface: 0.0.0.0, port: 5672, protocol: amqp\n"), "{text}");
        for absent in ["Memory", "Alarms", "File Descriptors", "OS PID"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
    }

    #[test]
    fn node_facts_and_alarms() {
        let node = json!({"os_pid": "7", "uptime": 152_500, "mem_used": 141_619_200, "mem_limit": 10_110_473_011_u64,
                          "mem_alarm": false, "disk_free_alarm": true, "fd_used": 43, "fd_total": 20000,
                          "disk_free": 12_320_976_896_u64, "disk_free_limit": 50_000_000});
        let text = text(&json!({}), &node);
        assert!(text.contains("OS PID: 7\nUptime (seconds): 152\n"), "{text}");
        assert!(text.contains("Alarms\n\nfree disk space\n\n"), "{text}");
        assert!(text.contains("Total memory used: 0.1416 gb\n"), "{text}");
        assert!(text.contains("File Descriptors\n\nTotal: 43, limit: 20000\n\n"), "{text}");
        let summary = summary(&json!({"node": "n", "queue_totals": {"messages": 1, "messages_details": {}}}), &node);
        assert_eq!(summary["alarms"], json!(["free disk space"]));
        assert_eq!(summary["queue_totals"], json!({"messages": 1}));
        assert_eq!(summary["fd_total"], 20000);
    }
}
