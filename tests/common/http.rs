//! A small client of the management HTTP API for tests: blocking `ureq` on the blocking pool,
//! JSON in and out, statuses and headers as they came (4xx are answers, not errors).

use serde_json::Value;

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct Http {
    base: String,
    auth: Option<(String, String)>,
}

impl Http {
    pub fn new(addr: std::net::SocketAddr) -> Http {
        Http { base: format!("http://{addr}/api"), auth: Some(("guest".into(), "guest".into())) }
    }

    pub fn with_auth(&self, auth: Option<(&str, &str)>) -> Http {
        Http { base: self.base.clone(), auth: auth.map(|(u, p)| (u.to_string(), p.to_string())) }
    }

    /// The same listener outside `/api` (the web UI's files), without credentials.
    pub fn root(&self) -> Http {
        Http { base: self.base.trim_end_matches("/api").to_string(), auth: None }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, &[]).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send("PUT", path, Some(body.to_string()), &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(body.to_string()), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None, &[]).await
    }

    /// Any request; `body` is sent as it is (so tests can send broken JSON).
    pub async fn send(&self, method: &str, path: &str, body: Option<String>, headers: &[(&str, &str)]) -> Reply {
        let url = format!("{}{path}", self.base);
        let auth = self.auth.clone();
        let method = method.to_string();
        let headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        tokio::task::spawn_blocking(move || {
            use base64::Engine;
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let mut req = ureq::http::Request::builder().method(method.as_str()).uri(&url);
            if let Some((u, p)) = auth {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                req = req.header("authorization", format!("Basic {token}"));
            }
            for (k, v) in &headers {
                req = req.header(k, v);
            }
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req.body(body.unwrap_or_default()).expect("a request");
            let mut resp = agent.run(req).expect("an HTTP answer");
            let status = resp.status().as_u16();
            let headers =
                resp.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string())).collect();
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            let body =
                if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
            Reply { status, body, headers }
        })
        .await
        .expect("the request task")
    }
}
