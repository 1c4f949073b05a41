//! The web UI: one HTML page and its ES modules and stylesheet, embedded in the binary so the
//! broker serves a working console offline, with no build step. The page is a client of the
//! JSON API under `/api` like any other (HTTP basic auth on every call), so the files themselves
//! are public: they hold no data.
//!
//! Assets are revalidated, not cached blind: each carries an `ETag` of its bytes, so an upgraded
//! broker never serves a stale module next to a fresh one, and an unchanged one costs a 304.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// `(path under /ui/, content type, bytes)`.
type Asset = (&'static str, &'static str, &'static [u8]);

macro_rules! assets {
    ($($path:literal => $kind:expr),* $(,)?) => {
        &[$(($path, $kind, include_bytes!(concat!("assets/", $path)) as &[u8])),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = assets![
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "js/app.js" => JS,
    "js/api.js" => JS,
    "js/dom.js" => JS,
    "js/chart.js" => JS,
    "js/table.js" => JS,
    "js/format.js" => JS,
    "js/forms.js" => JS,
    "js/pages/overview.js" => JS,
    "js/pages/queues.js" => JS,
    "js/pages/queue.js" => JS,
    "js/pages/exchanges.js" => JS,
    "js/pages/connections.js" => JS,
    "js/pages/admin.js" => JS,
    "js/pages/policies.js" => JS,
    "js/pages/publish.js" => JS,
];

/// The page forbids everything it does not use: scripts and styles only from this origin (no
/// inline script, so a name that slipped past escaping still could not run), no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|headers: HeaderMap| async move { serve("index.html", &headers) }))
        .route("/ui/{*path}", get(|Path(path): Path<String>, headers: HeaderMap| async move { serve(&path, &headers) }))
        // Browsers ask for it whatever the page links; spare the log a 404 per visit.
        .route("/favicon.ico", get(|headers: HeaderMap| async move { serve("favicon.svg", &headers) }))
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|(p, _, _)| *p == path)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(&(_, kind, bytes)) = find(path) else {
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "Not Found")
            .into_response();
    };
    let etag = format!("\"{:016x}\"", fnv1a(bytes));
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|t| {
            let t = t.trim();
            t == etag || t == "*"
        })
    });
    let mut response = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { bytes.into_response() };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if kind.starts_with("text/html") {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}

/// A content hash for the `ETag`; not security-relevant, only "did these bytes change".
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_an_asset_imports_is_embedded() {
        // A missing entry would only show in a browser as a module that fails to load.
        let import = regex::Regex::new(r#"(?m)^import .* from '(\.{1,2}/[^']+)';"#).unwrap();
        let mut checked = 0;
        for (path, _, bytes) in ASSETS.iter().filter(|(p, _, _)| p.ends_with(".js")) {
            let text = std::str::from_utf8(bytes).unwrap();
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            for c in import.captures_iter(text) {
                let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for seg in c[1].split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(find(&target).is_some(), "{path} imports {target}, which is not embedded");
                checked += 1;
            }
        }
        assert!(checked > 30, "only {checked} imports seen: has the import style changed?");
    }

    #[test]
    fn a_matching_etag_gets_not_modified() {
        let first = serve("style.css", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG].clone();
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(serve("style.css", &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve("../Cargo.toml", &HeaderMap::new()).status(), StatusCode::NOT_FOUND);
    }
}
