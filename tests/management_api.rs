//! The management HTTP API against an in-process broker: RabbitMQ's paths, statuses, bodies
//! and errors, with lapin clients on the AMQP side where the API acts on live traffic.
//! (`interop-tests/mgmt` runs the same kind of checks, and the real `rabbitmqadmin`, against a
//! Warren process and against RabbitMQ.)

mod common;

use common::http::Http;
use common::{reply_code, reply_text, unique, TestBroker, WAIT};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{json, Value};

async fn publish(b: &TestBroker, queue: &str, bodies: &[&str]) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    for body in bodies {
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_and_checked() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let none = http.with_auth(None).get("/overview").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Basic realm=\"RabbitMQ Management\""));
    let wrong = http.with_auth(Some(("guest", "nope"))).get("/queues").await;
    assert_eq!((wrong.status, &wrong.body), (401, &json!({"error": "not_authorized", "reason": "Login failed"})));
    let ok = http.get("/whoami").await;
    assert_eq!((ok.status, ok.body["name"].as_str()), (200, Some("guest")));
    assert_eq!(ok.header("cache-control"), Some("no-cache"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_is_served_without_credentials_and_revalidated_by_etag() {
    let b = common::start().await;
    let ui = Http::new(b.mgmt).root();
    let page = ui.get("/").await;
    assert_eq!((page.status, page.header("content-type")), (200, Some("text/html; charset=utf-8")));
    let html = page.body.as_str().expect("HTML");
    assert!(html.contains(r#"<script type="module" src="/ui/js/app.js"></script>"#), "{html}");
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("script-src 'self'")));
    let js = ui.get("/ui/js/app.js").await;
    assert_eq!((js.status, js.header("content-type")), (200, Some("text/javascript; charset=utf-8")));
    assert_eq!(js.header("cache-control"), Some("no-cache"));
    let etag = js.header("etag").expect("an ETag").to_string();
    let again = ui.send("GET", "/ui/js/app.js", None, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    let css = ui.get("/ui/style.css").await;
    assert_eq!((css.status, css.header("content-type")), (200, Some("text/css; charset=utf-8")));
    assert_eq!(ui.get("/ui/js/missing.js").await.status, 404);
    // The files are public; the data behind them is not.
    assert_eq!(ui.get("/api/overview").await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_declared_shown_listed_purged_and_deleted() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let q = unique("q");
    let path = format!("/queues/%2F/{q}");
    assert_eq!(http.put(&path, json!({"durable": "true", "arguments": {"x-max-length": 10}})).await.status, 201);
    assert_eq!(http.put(&path, json!({"durable": true, "arguments": {"x-max-length": 10}})).await.status, 204);
    let bad = http.put(&path, json!({"durable": false, "arguments": {"x-max-length": 10}})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.body["reason"],
        format!("inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'false' but current is 'true'")
    );
    publish(&b, &q, &["a", "b", "c"]).await;
    let shown = http.get(&path).await;
    assert_eq!(shown.status, 200);
    let s = &shown.body;
    assert_eq!(
        (s["messages"].as_u64(), s["messages_ready"].as_u64(), s["consumers"].as_u64()),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!((s["durable"].as_bool(), s["arguments"]["x-max-length"].as_i64()), (Some(true), Some(10)));
    assert!(s["head_message_age_seconds"].is_u64(), "Warren's head age: {s}");

    let paged = http.get(&format!("/queues/%2F?page=1&page_size=1&name={q}&columns=name,messages")).await;
    assert_eq!(paged.body["items"], json!([{"name": q, "messages": 3}]));
    assert_eq!(paged.body["filtered_count"], 1);

    let refused = http.delete(&format!("{path}?if-empty=true")).await;
    assert_eq!(refused.status, 400);
    assert_eq!(http.delete(&format!("{path}/contents")).await.status, 204);
    assert_eq!(http.get(&path).await.body["messages"], 0);
    assert_eq!(http.delete(&path).await.status, 204);
    let gone = http.get(&path).await;
    assert_eq!((gone.status, &gone.body), (404, &json!({"error": "Object Not Found", "reason": "Not Found"})));
    assert_eq!(http.delete(&path).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_unknown_vhosts_get_rabbitmqs_errors() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let not_json = http.send("PUT", "/queues/%2F/x", Some("{bad".into()), &[]).await;
    assert_eq!((not_json.status, not_json.body["reason"].as_str()), (400, Some("not_json")));
    let bad_bool = http.put("/queues/%2F/x", json!({"durable": "maybe"})).await;
    assert_eq!(bad_bool.status, 400);
    let bad_arg = http.put("/queues/%2F/x", json!({"arguments": {"x-max-length": "ten"}})).await;
    assert_eq!(bad_arg.status, 400);
    assert!(bad_arg.body["reason"].as_str().unwrap().contains("invalid arg 'x-max-length'"), "{}", bad_arg.body);
    let no_vhost = http.put("/queues/nosuch/x", json!({})).await;
    assert_eq!((no_vhost.status, &no_vhost.body), (404, &json!({"error": "not_found", "reason": "vhost_not_found"})));
    assert_eq!(http.get("/queues/nosuch").await.status, 404);
    let reserved = http.put("/exchanges/%2F/amq.mine", json!({"type": "direct"})).await;
    assert_eq!((reserved.status, reserved.body["error"].as_str()), (401, Some("not_authorised")));
    let bad_type = http.put("/exchanges/%2F/x", json!({"type": "no-such-type"})).await;
    assert_eq!(bad_type.body["reason"], "unknown exchange type 'no-such-type'");
    let bad_page = http.get("/queues?page=0").await;
    assert_eq!((bad_page.status, bad_page.body["error"].as_str()), (400, Some("invalid_pagination_parameters")));
    assert_eq!(http.get("/no/such/endpoint").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_bindings_and_publishing() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (x, q) = (unique("x"), unique("q"));
    assert_eq!(http.put(&format!("/exchanges/%2F/{x}"), json!({"type": "topic", "durable": true})).await.status, 201);
    assert_eq!(http.put(&format!("/queues/%2F/{q}"), json!({})).await.status, 201);
    let bound = http.post(&format!("/bindings/%2F/e/{x}/q/{q}"), json!({"routing_key": "a.*"})).await;
    assert_eq!(bound.status, 201);
    let location = bound.header("location").unwrap().to_string();
    let listed = http.get(&format!("/bindings/%2F/e/{x}/q/{q}")).await;
    let props = listed.body[0]["properties_key"].as_str().unwrap().to_string();
    assert_eq!(location, format!("{q}/{}", url_encode(&props)), "the key quoted once more, as RabbitMQ does");
    assert_eq!(listed.body[0]["routing_key"], "a.*");
    let source = http.get(&format!("/exchanges/%2F/{x}/bindings/source")).await;
    assert_eq!(source.body.as_array().unwrap().len(), 1);
    let all = http.get("/bindings/%2F").await;
    assert!(
        all.body.as_array().unwrap().iter().any(|b| b["source"] == "" && b["destination"] == q),
        "default binding listed"
    );

    let routed = http
        .post(&format!("/exchanges/%2F/{x}/publish"), json!({"routing_key": "a.b", "payload": "hi", "payload_encoding": "string", "properties": {"delivery_mode": 2}}))
        .await;
    assert_eq!(routed.body, json!({"routed": true}));
    let unrouted = http
        .post(
            &format!("/exchanges/%2F/{x}/publish"),
            json!({"routing_key": "b", "payload": "aGk=", "payload_encoding": "base64", "properties": {}}),
        )
        .await;
    assert_eq!(unrouted.body, json!({"routed": false}));
    let default = http
        .post(
            "/exchanges/%2F/amq.default/publish",
            json!({"routing_key": q, "payload": "direct", "payload_encoding": "string", "properties": {}}),
        )
        .await;
    assert_eq!(default.body, json!({"routed": true}));
    let missing = http.post(&format!("/exchanges/%2F/{x}/publish"), json!({"routing_key": "a.b"})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(http.get(&format!("/queues/%2F/{q}")).await.body["messages"], 2);

    // Clients quote the key as one path segment (rabbitmqadmin: `quote(key, '')`).
    assert_eq!(http.delete(&format!("/bindings/%2F/e/{x}/q/{q}/{}", url_encode(&props))).await.status, 204);
    assert_eq!(http.get(&format!("/bindings/%2F/e/{x}/q/{q}")).await.body, json!([]));
    assert_eq!(http.delete(&format!("/exchanges/%2F/{x}")).await.status, 204);
    assert_eq!(http.get(&format!("/exchanges/%2F/{x}")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_settles_as_its_ackmode_says_and_peek_leaves_messages_alone() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let q = unique("q");
    assert_eq!(http.put(&format!("/queues/%2F/{q}"), json!({})).await.status, 201);
    publish(&b, &q, &["one", "two", "three"]).await;
    let path = format!("/queues/%2F/{q}");

    let peeked = http.get(&format!("{path}/messages?offset=1&count=5")).await;
    let payloads: Vec<&str> = peeked.body.as_array().unwrap().iter().map(|m| m["payload"].as_str().unwrap()).collect();
    assert_eq!(payloads, ["two", "three"]);
    assert!(peeked.body.as_array().unwrap().iter().all(|m| m["redelivered"] == false));

    let got = http
        .post(
            &format!("{path}/get"),
            json!({"count": "2", "ackmode": "ack_requeue_true", "encoding": "auto", "truncate": 2}),
        )
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body[0]["payload"], "on");
    assert_eq!((got.body[0]["payload_bytes"].as_u64(), got.body[0]["message_count"].as_u64()), (Some(3), Some(2)));
    let again = http
        .post(&format!("{path}/get"), json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64"}))
        .await;
    assert_eq!((again.body[0]["redelivered"].as_bool(), again.body[0]["payload"].as_str()), (Some(true), Some("b25l")));
    assert_eq!(http.get(&path).await.body["messages"], 2);
    let bad = http.post(&format!("{path}/get"), json!({"count": 1, "ackmode": "bogus", "encoding": "auto"})).await;
    assert_eq!(bad.status, 400);
    let missing = http
        .post("/queues/%2F/nosuch/get", json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}))
        .await;
    assert_eq!((missing.status, missing.body["error"].as_str()), (404, Some("not_found")));
    let empty_queue = unique("empty");
    http.put(&format!("/queues/%2F/{empty_queue}"), json!({})).await;
    let none = http
        .post(
            &format!("/queues/%2F/{empty_queue}/get"),
            json!({"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}),
        )
        .await;
    assert_eq!(none.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_and_consumers_are_listed_and_a_connection_closed_with_a_reason() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let q = unique("q");
    let conn = Connection::connect(&b.uri(), ConnectionProperties::default().with_connection_name("watched".into()))
        .await
        .unwrap();
    let seen = common::first_error(&conn);
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(7, BasicQosOptions::default()).await.unwrap();
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    // Kept: lapin cancels a consumer whose handle is dropped.
    let _consumer = ch
        .basic_consume(q.as_str().into(), "tag-1".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let conns = http.get("/connections").await;
    let c =
        conns.body.as_array().unwrap().iter().find(|c| c["user_provided_name"] == "watched").cloned().expect("listed");
    assert_eq!(
        (c["user"].as_str(), c["vhost"].as_str(), c["protocol"].as_str()),
        (Some("guest"), Some("/"), Some("AMQP 0-9-1"))
    );
    assert_eq!(c["channels"], 1);
    let name = c["name"].as_str().unwrap().to_string();
    let channels = http.get("/channels").await;
    let channel = &channels
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|ch| ch["connection_details"]["name"] == name.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        (channel["prefetch_count"].as_u64(), channel["consumer_count"].as_u64()),
        (Some(7), Some(1)),
        "{channel}"
    );
    assert_eq!(channel["name"], format!("{name} (1)"));
    let consumers = http.get("/consumers/%2F").await;
    let consumer = consumers
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["queue"]["name"] == q.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{}", consumers.body));
    assert_eq!((consumer["consumer_tag"].as_str(), consumer["ack_required"].as_bool()), (Some("tag-1"), Some(true)));
    assert_eq!(consumer["channel_details"]["connection_name"], name.as_str());

    let encoded: String = url_encode(&name);
    let closed =
        http.send("DELETE", &format!("/connections/{encoded}"), None, &[("X-Reason", "maintenance window")]).await;
    assert_eq!(closed.status, 204);
    let deadline = std::time::Instant::now() + WAIT;
    let err = loop {
        if let Some(e) = seen.lock().unwrap().take() {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "the client did not see the close");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(reply_code(&err), Some(320), "{err}");
    assert_eq!(reply_text(&err), "CONNECTION_FORCED - maintenance window");
    // The registry lets go once the connection's task has ended, just after the close went out.
    let gone = format!("/connections/{encoded}");
    common::eventually("the closed connection to be unlisted", || {
        (futures_lite::future::block_on(http.get(&gone)).status == 404).then_some(())
    })
    .await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_round_trip_and_a_bad_file_changes_nothing() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    http.put("/exchanges/%2F/defs-x", json!({"type": "fanout", "durable": true})).await;
    http.put("/queues/%2F/defs-q", json!({"durable": true, "arguments": {"x-message-ttl": 60000}})).await;
    http.post("/bindings/%2F/e/defs-x/q/defs-q", json!({"routing_key": "k"})).await;
    http.put(
        "/policies/%2F/defs-p",
        json!({"pattern": "^defs-", "definition": {"max-length": 5}, "apply-to": "queues"}),
    )
    .await;
    let exported = http.get("/definitions").await.body;
    assert_eq!(
        exported["queues"],
        json!([{"name": "defs-q", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {"x-message-ttl": 60000}}])
    );
    assert_eq!(
        exported["exchanges"].as_array().unwrap().len(),
        1,
        "no default or amq.* exchanges: {}",
        exported["exchanges"]
    );
    assert_eq!(exported["bindings"].as_array().unwrap().len(), 1);
    assert_eq!(exported["policies"][0]["name"], "defs-p");

    // Into a fresh broker, then out again: the same definitions.
    let other = common::start().await;
    let other_http = Http::new(other.mgmt);
    assert_eq!(other_http.post("/definitions", exported.clone()).await.status, 204);
    let back = other_http.get("/definitions").await.body;
    for key in ["queues", "exchanges", "bindings", "policies"] {
        assert_eq!(back[key], exported[key], "{key}");
    }
    assert_eq!(other_http.get("/queues/%2F/defs-q").await.body["policy"], "defs-p");

    // A file whose last binding is bad: refused, and its queue not created either.
    let bad = json!({
        "queues": [{"name": "never", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}],
        "bindings": [{"source": "no-such-x", "vhost": "/", "destination": "never", "destination_type": "queue", "routing_key": "", "arguments": {}}]
    });
    let refused = other_http.post("/definitions", bad).await;
    assert_eq!(refused.status, 400);
    assert_eq!(other_http.get("/queues/%2F/never").await.status, 404);
    let not_json = other_http.send("POST", "/definitions", Some("{nope".into()), &[]).await;
    assert_eq!(not_json.body["reason"], "failed_to_parse_json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_apply_to_live_queues_at_once() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let q = unique("pol");
    http.put(&format!("/queues/%2F/{q}"), json!({})).await;
    publish(&b, &q, &["1", "2", "3", "4", "5"]).await;
    let set = http
        .put(&format!("/policies/%2F/{q}"), json!({"pattern": format!("^{q}$"), "definition": {"max-length": 2}}))
        .await;
    assert_eq!(set.status, 201);
    let shown = http.get(&format!("/queues/%2F/{q}")).await.body;
    assert_eq!((shown["messages"].as_u64(), shown["policy"].as_str()), (Some(2), Some(q.as_str())));
    assert_eq!(shown["effective_policy_definition"], json!({"max-length": 2}));
    let unknown = http.put("/policies/%2F/bad", json!({"pattern": ".*", "definition": {"bogus": 1}})).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.body["reason"].as_str().unwrap().contains("are not recognised policy settings"));
    assert_eq!(http.get("/policies/%2F").await.body.as_array().unwrap().len(), 1);
    assert_eq!(http.delete(&format!("/policies/%2F/{q}")).await.status, 204);
    assert_eq!(http.delete(&format!("/policies/%2F/{q}")).await.status, 404);
    assert_eq!(http.get(&format!("/queues/%2F/{q}")).await.body["policy"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_nodes_and_health_checks() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let overview = http.get("/overview?columns=rabbitmq_version,queue_totals.messages,object_totals.queues").await.body;
    assert!(
        overview["queue_totals"]["messages"].is_u64() && overview["object_totals"]["queues"].is_u64(),
        "{overview}"
    );
    let full = http.get("/overview").await.body;
    let amqp = full["listeners"].as_array().unwrap().iter().find(|l| l["protocol"] == "amqp").cloned().unwrap();
    assert_eq!(amqp["port"], b.addr.port());
    let nodes = http.get("/nodes").await.body;
    let node = nodes[0]["name"].as_str().unwrap().to_string();
    assert!(node.starts_with("rabbit@"));
    assert!(nodes[0]["mem_used"].as_u64().unwrap() > 0);
    assert_eq!(http.get(&format!("/nodes/{node}")).await.status, 200);
    assert_eq!(http.get("/health/checks/alarms").await.body, json!({"status": "ok"}));
    assert_eq!(http.get(&format!("/health/checks/port-listener/{}", b.addr.port())).await.status, 200);
    assert_eq!(http.get("/health/checks/port-listener/1").await.status, 503);
    assert_eq!(http.get("/aliveness-test/%2F").await.body, json!({"status": "ok"}));
    assert_eq!(http.get("/aliveness-test/nosuch").await.status, 404);
    // No runtime-parameter components (federation, shovel): none listed, any refused.
    assert_eq!(http.get("/parameters").await.body, json!([]));
    let refused = http.put("/parameters/federation-upstream/%2F/up", json!({"value": {"uri": "amqp://"}})).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["reason"], "Validation failed\n\ncomponent federation-upstream not found\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_stats_count_what_went_through_a_queue() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let q = unique("stats");
    http.put(&format!("/queues/%2F/{q}"), json!({})).await;
    publish(&b, &q, &["1", "2", "3", "4"]).await;
    let (conn, ch) = b.channel().await;
    let got = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().expect("a message");
    got.ack(BasicAckOptions::default()).await.unwrap();
    let requeued = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().expect("a message");
    requeued.nack(BasicNackOptions { requeue: true, ..Default::default() }).await.unwrap();
    let again = ch.basic_get(q.as_str().into(), BasicGetOptions::default()).await.unwrap().expect("a message");
    assert!(again.redelivered);
    again.ack(BasicAckOptions::default()).await.unwrap();
    conn.close(200, "bye".into()).await.unwrap();
    let stats = common::eventually("the acks to be counted", || {
        let shown = futures_lite::future::block_on(http.get(&format!("/queues/%2F/{q}")));
        (shown.body["message_stats"]["ack"] == 2).then_some(shown.body["message_stats"].clone())
    })
    .await;
    assert_eq!(
        (stats["publish"].as_u64(), stats["get"].as_u64(), stats["redeliver"].as_u64()),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(stats["deliver_get"], 3);
    assert!(stats["publish_details"]["rate"].is_number());
    let overview = http.get("/overview").await.body;
    assert!(overview["message_stats"]["publish"].as_u64().unwrap() >= 4);
}
