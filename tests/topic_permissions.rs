//! Topic permissions through the management API: set, listed four ways, cleared, exported and
//! imported, dropped with their user or vhost, and kept across a restart — with RabbitMQ's
//! statuses and errors (checked against RabbitMQ 3.10.8). They are not enforced yet.

mod common;

use common::http::Http;
use common::unique;
use serde_json::{json, Value};

/// A user and a vhost created through the API (guest gets full permissions on the vhost).
async fn user_and_vhost(http: &Http) -> (String, String) {
    let (user, vhost) = (unique("tp-user"), unique("tp-vhost"));
    assert_eq!(http.put(&format!("/users/{user}"), json!({"password": "pw", "tags": ""})).await.status, 201);
    assert_eq!(http.put(&format!("/vhosts/{vhost}"), json!({})).await.status, 201);
    (user, vhost)
}

fn entry(user: &str, vhost: &str, exchange: &str, write: &str, read: &str) -> Value {
    json!({"user": user, "vhost": vhost, "exchange": exchange, "write": write, "read": read})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_permissions_are_set_listed_and_cleared_per_user_and_vhost() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    let path = format!("/topic-permissions/{vhost}/{user}");
    let got = http.get(&path).await;
    assert_eq!((got.status, &got.body), (404, &json!({"error": "Object Not Found", "reason": "Not Found"})));

    let put = |exchange: &str, write: &str| json!({"exchange": exchange, "write": write, "read": ".*"});
    assert_eq!(http.put(&path, put("amq.topic", "^a")).await.status, 201);
    assert_eq!(http.put(&path, put("amq.topic", "^{username}\\.")).await.status, 204, "replaced");
    // The pair has an entry already: 204, though this exchange's entry is new (as RabbitMQ).
    assert_eq!(http.put(&path, put("no.such.exchange", "")).await.status, 204);

    let amq_topic = entry(&user, &vhost, "amq.topic", "^{username}\\.", ".*");
    let other = entry(&user, &vhost, "no.such.exchange", "", ".*");
    let both = json!([amq_topic, other]);
    assert_eq!(http.get(&path).await.body, both);
    assert_eq!(http.get(&format!("/users/{user}/topic-permissions")).await.body, both);
    assert_eq!(http.get(&format!("/vhosts/{vhost}/topic-permissions")).await.body, both);
    let all = http.get("/topic-permissions").await.body;
    assert!(all.as_array().unwrap().contains(&amq_topic) && all.as_array().unwrap().contains(&other), "{all}");
    let columns = http.get("/topic-permissions?columns=user,exchange").await.body;
    assert!(columns.as_array().unwrap().contains(&json!({"user": user, "exchange": "amq.topic"})), "{columns}");
    assert_eq!(http.get("/users/guest/topic-permissions").await.body, json!([]));
    assert_eq!(http.get("/users/tp-nobody/topic-permissions").await.status, 404);
    assert_eq!(http.get("/vhosts/tp-nowhere/topic-permissions").await.status, 404);

    // DELETE clears all of the pair's entries (an exchange in the query is not RabbitMQ's).
    assert_eq!(http.delete(&format!("{path}?exchange=amq.topic")).await.status, 204);
    assert_eq!(http.get(&path).await.status, 404);
    assert_eq!(http.get(&format!("/users/{user}/topic-permissions")).await.body, json!([]));
    let again = http.delete(&path).await;
    assert_eq!((again.status, &again.body), (404, &json!({"error": "Object Not Found", "reason": "Not Found"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_puts_get_rabbitmqs_errors_and_change_nothing() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    let path = format!("/topic-permissions/{vhost}/{user}");
    let reason = |r: common::http::Reply| (r.status, r.body["error"].clone(), r.body["reason"].clone());
    // The user and the vhost are checked before the body is read.
    for p in [format!("/topic-permissions/tp-nowhere/{user}"), format!("/topic-permissions/{vhost}/tp-nobody")] {
        let r = http.put(&p, json!({"write": ".*"})).await;
        assert_eq!(reason(r), (400, json!("bad_request"), json!("vhost_or_user_not_found")), "{p}");
    }
    let r = http.send("PUT", &path, Some("not json".into()), &[]).await;
    assert_eq!(reason(r), (400, json!("bad_request"), json!("not_json")));
    let r = http.send("PUT", &path, None, &[]).await;
    let all_missing = "[{key_missing,exchange},{key_missing,write},{key_missing,read}]";
    assert_eq!(reason(r), (400, json!("bad_request"), json!(all_missing)));
    let r = http.put(&path, json!({"exchange": "x", "write": ".*"})).await;
    assert_eq!(reason(r), (400, json!("bad_request"), json!("[{key_missing,read}]")));
    let r = http.put(&path, json!({"exchange": "x", "write": "(", "read": ".*"})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["reason"].as_str().unwrap().starts_with("invalid_regexp: ( ("), "{}", r.body);
    assert_eq!(http.get("/topic-permissions").await.body, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_permissions_go_with_their_user_or_vhost_and_survive_a_restart() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    let (doomed_user, doomed_vhost) = user_and_vhost(&http).await;
    let set = |v: &str, u: &str, x: &str| {
        (format!("/topic-permissions/{v}/{u}"), json!({"exchange": x, "write": "^w", "read": "^r"}))
    };
    for (v, u) in [(&vhost, &user), (&vhost, &doomed_user), (&doomed_vhost, &user), (&doomed_vhost, &doomed_user)] {
        let (path, body) = set(v, u, "x");
        assert_eq!(http.put(&path, body).await.status, 201);
    }
    let (path, body) = set(&vhost, "guest", "amq.topic");
    assert_eq!(http.put(&path, body).await.status, 201);
    assert_eq!(http.delete(&format!("/users/{doomed_user}")).await.status, 204);
    assert_eq!(http.delete(&format!("/vhosts/{doomed_vhost}")).await.status, 204);
    let want = json!([entry("guest", &vhost, "amq.topic", "^w", "^r"), entry(&user, &vhost, "x", "^w", "^r")]);
    assert_eq!(http.get("/topic-permissions").await.body, want);

    // A user or vhost created again under the same name starts without any.
    assert_eq!(http.put(&format!("/users/{doomed_user}"), json!({"password": "pw", "tags": ""})).await.status, 201);
    assert_eq!(http.put(&format!("/vhosts/{doomed_vhost}"), json!({})).await.status, 201);
    assert_eq!(http.get("/topic-permissions").await.body, want);

    drop(http);
    let b = b.restart().await;
    let http = Http::new(b.mgmt);
    assert_eq!(http.get("/topic-permissions").await.body, want);
    assert_eq!(http.get(&format!("/topic-permissions/{doomed_vhost}/{doomed_user}")).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_export_and_import_topic_permissions() {
    let b = common::start().await;
    let http = Http::new(b.mgmt);
    let (user, vhost) = user_and_vhost(&http).await;
    let path = format!("/topic-permissions/{vhost}/{user}");
    let x = entry(&user, &vhost, "events", "^order\\.", ".*");
    let y = entry(&user, &vhost, "amq.topic", "", "^{username}$");
    for e in [&x, &y] {
        http.put(&path, json!({"exchange": e["exchange"], "write": e["write"], "read": e["read"]})).await;
    }
    let exported = http.get("/definitions").await.body;
    assert_eq!(exported["topic_permissions"], json!([y, x]));
    let per_vhost = http.get(&format!("/definitions/{vhost}")).await.body;
    assert!(per_vhost.get("topic_permissions").is_none(), "RabbitMQ's per-vhost export has none: {per_vhost}");

    // Deleting the user takes its topic permissions; importing the export brings them back.
    assert_eq!(http.delete(&format!("/users/{user}")).await.status, 204);
    assert_eq!(http.get("/topic-permissions").await.body, json!([]));
    assert_eq!(http.post("/definitions", exported).await.status, 204);
    assert_eq!(http.get("/topic-permissions").await.body, json!([y, x]));

    // A per-vhost import ignores them, as RabbitMQ's does.
    let z = entry(&user, &vhost, "via.vhost", ".*", ".*");
    assert_eq!(http.post(&format!("/definitions/{vhost}"), json!({"topic_permissions": [z]})).await.status, 204);
    assert_eq!(http.get(&path).await.body, json!([y, x]));

    // One bad topic permission refuses the whole file: the vhost it would create is not created.
    let new_vhost = unique("tp-never");
    for (bad, reason) in [
        (entry("tp-nobody", &vhost, "x", ".*", ".*"), "vhost_or_user_not_found"),
        (entry(&user, "tp-nowhere", "x", ".*", ".*"), "vhost_or_user_not_found"),
        (entry(&user, &vhost, "x", "(", ".*"), "invalid_regexp: ( ("),
    ] {
        let file = json!({"vhosts": [{"name": new_vhost}], "topic_permissions": [bad]});
        let r = http.post("/definitions", file).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.body["reason"].as_str().unwrap().starts_with(reason), "{}", r.body);
        assert_eq!(http.get(&format!("/vhosts/{new_vhost}")).await.status, 404);
    }
    // A user and a vhost the file itself creates are known to its topic permissions.
    let (new_user, new_vhost) = (unique("tp-new-user"), unique("tp-new-vhost"));
    let file = json!({
        "users": [{"name": new_user, "password_hash": "", "tags": []}],
        "vhosts": [{"name": new_vhost}],
        "topic_permissions": [entry(&new_user, &new_vhost, "x", ".*", "")],
    });
    assert_eq!(http.post("/definitions", file).await.status, 204);
    let listed = http.get(&format!("/topic-permissions/{new_vhost}/{new_user}")).await.body;
    assert_eq!(listed, json!([entry(&new_user, &new_vhost, "x", ".*", "")]));
}
