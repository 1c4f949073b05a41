//! Vhost and user limits, set through the management API and felt by lapin: a vhost's
//! `max-connections` and `max-queues`, a user's `max-connections` and `max-channels`, each
//! refused with RabbitMQ's code and text; limits kept across a restart and in definitions.

mod common;

use common::http::Http;
use common::{reply_code, reply_text, unique, TestBroker};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

/// A user with full permissions on a fresh vhost of its own: (user, vhost).
async fn user_and_vhost(http: &Http) -> (String, String) {
    let (user, vhost) = (unique("u"), unique("v"));
    assert_eq!(http.put(&format!("/vhosts/{vhost}"), json!({})).await.status, 201);
    assert_eq!(http.put(&format!("/users/{user}"), json!({"password": "pw", "tags": ""})).await.status, 201);
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(http.put(&format!("/permissions/{vhost}/{user}"), all).await.status, 201);
    // guest created the vhost, so it has full permissions there already (RabbitMQ's rule).
    (user, vhost)
}

async fn connect(b: &TestBroker, user: &str, pass: &str, vhost: &str) -> lapin::Result<Connection> {
    Connection::connect(&b.uri_with(user, pass, vhost), ConnectionProperties::default()).await
}

async fn declare(conn: &Connection, name: &str) -> lapin::Result<()> {
    let ch = conn.create_channel().await?;
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), FieldTable::default()).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_limits_refuse_connections_and_queues_past_them() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    assert_eq!(http.put(&format!("/vhost-limits/{vhost}/max-connections"), json!({"value": 1})).await.status, 204);
    assert_eq!(http.put(&format!("/vhost-limits/{vhost}/max-queues"), json!({"value": 1})).await.status, 204);
    let shown = http.get(&format!("/vhost-limits/{vhost}")).await.body;
    assert_eq!(shown, json!([{"vhost": vhost, "value": {"max-connections": 1, "max-queues": 1}}]));

    let first = connect(&b, &user, "pw", &vhost).await.expect("the first connection");
    let err = connect(&b, "guest", "guest", &vhost).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err}");
    let text =
        format!("NOT_ALLOWED - access to vhost '{vhost}' refused for user 'guest': connection limit (1) is reached");
    assert_eq!(reply_text(&err), text);

    declare(&first, "q1").await.expect("the first queue");
    declare(&first, "q1").await.expect("a redeclare is not a new queue");
    let err = declare(&first, "q2").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406));
    let text =
        format!("PRECONDITION_FAILED - cannot declare queue 'q2': queue limit in vhost '{vhost}' (1) is reached");
    assert_eq!(reply_text(&err), text);
    // The API's declare meets the same limit, with the same text, as RabbitMQ's does.
    let api = http.put(&format!("/queues/{vhost}/q3"), json!({})).await;
    assert_eq!(api.status, 400);
    assert_eq!(api.body["reason"], format!("cannot declare queue 'q3': queue limit in vhost '{vhost}' (1) is reached"));

    // The place is given back when the connection closes; a negative limit is no limit.
    first.close(200, "bye".into()).await.unwrap();
    let vh = b.broker.vhost(&warren::protocol::ShortStr::try_from(vhost.as_str()).unwrap()).unwrap();
    common::eventually("the connection's place is given back", || (vh.connections.count() == 0).then_some(())).await;
    let again = connect(&b, &user, "pw", &vhost).await.expect("a place is free again");
    assert_eq!(http.put(&format!("/vhost-limits/{vhost}/max-queues"), json!({"value": -1})).await.status, 204);
    declare(&again, "q2").await.expect("no queue limit any more");
    assert_eq!(http.delete(&format!("/vhost-limits/{vhost}/max-connections")).await.status, 204);
    let _second = connect(&b, "guest", "guest", &vhost).await.expect("no connection limit any more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_limits_count_connections_and_channels_across_connections() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    assert_eq!(http.put(&format!("/user-limits/{user}/max-connections"), json!({"value": 2})).await.status, 204);
    assert_eq!(http.put(&format!("/user-limits/{user}/max-channels"), json!({"value": 2})).await.status, 204);
    assert_eq!(
        http.get(&format!("/users/{user}")).await.body["limits"],
        json!({"max-connections": 2, "max-channels": 2})
    );

    let full = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(http.put(&format!("/permissions/%2F/{user}"), full).await.status, 201);
    let a = connect(&b, &user, "pw", &vhost).await.unwrap();
    let c = connect(&b, &user, "pw", "%2f").await.expect("another vhost, the same user");
    let err = connect(&b, &user, "pw", &vhost).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530));
    assert_eq!(
        reply_text(&err),
        format!("NOT_ALLOWED - connection refused for user '{user}': user connection limit (2) is reached")
    );

    let _one = a.create_channel().await.unwrap();
    let _two = c.create_channel().await.expect("channels of both connections count together");
    let err = a.create_channel().await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530));
    let text = format!(
        "NOT_ALLOWED - number of channels opened for user '{user}' has reached the maximum allowed user limit of (2)"
    );
    assert_eq!(reply_text(&err), text);

    // The refusal closed connection `a`: its channel and its connection place are free again.
    let tallies = b.broker.connections().user_tallies(&user);
    let only_c_left = || async {
        common::eventually("the closed connection's places are given back", || {
            (tallies.connections.count() == 1 && tallies.channels.count() == 1).then_some(())
        })
        .await
    };
    only_c_left().await;
    let d = connect(&b, &user, "pw", &vhost).await.expect("a connection place is free again");
    let _three = d.create_channel().await.expect("a channel place is free again");
    let err = d.create_channel().await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "and the limit still holds");

    assert_eq!(http.delete(&format!("/user-limits/{user}/max-channels")).await.status, 204);
    only_c_left().await;
    let e = connect(&b, &user, "pw", &vhost).await.unwrap();
    for _ in 0..3 {
        e.create_channel().await.expect("no channel limit any more");
    }
    assert_eq!(
        http.get(&format!("/user-limits/{user}")).await.body,
        json!([{"user": user, "value": {"max-connections": 2}}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_validated_as_rabbitmq_does() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    let cases = [
        (
            format!("/vhost-limits/{vhost}/max-foo"),
            json!({"value": 2}),
            400,
            "Validation failed\n\nUnrecognised terms [{<<\"max-foo\">>,2}] in limits\n",
        ),
        (
            format!("/vhost-limits/{vhost}/max-queues"),
            json!({"value": "x"}),
            400,
            "Validation failed\n\nmax-queues should be a number, actually was <<\"x\">>\n",
        ),
        (format!("/vhost-limits/{vhost}/max-queues"), json!({}), 400, "[{key_missing,value}]"),
        ("/vhost-limits/no-such-vhost/max-queues".to_string(), json!({"value": 1}), 404, "vhost_not_found"),
        (
            format!("/user-limits/{user}/max-queues"),
            json!({"value": 2}),
            400,
            "Unrecognised terms [{<<\"max-queues\">>,2}] in user-limits",
        ),
    ];
    for (path, body, status, reason) in cases {
        let r = http.put(&path, body).await;
        assert_eq!((r.status, r.body["reason"].as_str()), (status, Some(reason)), "{path}");
    }
    assert_eq!(http.get("/vhost-limits/no-such-vhost").await.status, 404);
    assert_eq!(http.get("/user-limits/no-such-user").await.status, 404);
    assert_eq!(http.put("/user-limits/no-such-user/max-channels", json!({"value": 1})).await.status, 400);
    // A monitoring user may not set them.
    http.put("/users/watcher", json!({"password": "pw", "tags": "monitoring"})).await;
    let r = http
        .with_auth(Some(("watcher", "pw")))
        .put(&format!("/vhost-limits/{vhost}/max-queues"), json!({"value": 1}))
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_survive_a_restart_and_round_trip_through_definitions() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    http.put(&format!("/vhost-limits/{vhost}/max-queues"), json!({"value": 3})).await;
    http.put(&format!("/user-limits/{user}/max-channels"), json!({"value": 4})).await;
    drop(http);
    let b = b.restart().await;
    let http = Http::new(b.mgmt);
    assert_eq!(http.get(&format!("/vhost-limits/{vhost}")).await.body[0]["value"], json!({"max-queues": 3}));
    assert_eq!(http.get(&format!("/user-limits/{user}")).await.body[0]["value"], json!({"max-channels": 4}));

    // Exported as RabbitMQ 3.x does: a `vhost-limits` parameter, and `limits` on the user.
    let defs = http.get("/definitions").await.body;
    let param = json!({"value": {"max-queues": 3}, "vhost": vhost, "component": "vhost-limits", "name": "limits"});
    assert!(defs["parameters"].as_array().unwrap().contains(&param), "{}", defs["parameters"]);
    let exported = defs["users"].as_array().unwrap().iter().find(|u| u["name"] == user.as_str()).unwrap().clone();
    assert_eq!(exported["limits"], json!({"max-channels": 4}));

    // Imported into another broker, they are there.
    let other = common::start().await;
    let other_http = Http::new(other.mgmt);
    assert_eq!(other_http.post("/definitions", defs.clone()).await.status, 204);
    assert_eq!(other_http.get(&format!("/vhost-limits/{vhost}")).await.body[0]["value"], json!({"max-queues": 3}));
    assert_eq!(other_http.get(&format!("/user-limits/{user}")).await.body[0]["value"], json!({"max-channels": 4}));
    assert_eq!(other_http.get(&format!("/parameters/vhost-limits/{vhost}/limits")).await.body, param);

    // A file whose queues would pass its own limit is refused whole.
    let over = json!({
        "vhosts": [{"name": "limited"}],
        "parameters": [{"vhost": "limited", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 1}}],
        "queues": [{"name": "a", "vhost": "limited", "durable": true}, {"name": "b", "vhost": "limited", "durable": true}],
    });
    let r = other_http.post("/definitions", over).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (400, Some("cannot declare queue 'b': queue limit in vhost 'limited' (1) is reached"))
    );
    assert_eq!(other_http.get("/vhosts/limited").await.status, 404, "nothing was applied");
}
