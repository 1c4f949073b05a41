//! What every list endpoint shares: RabbitMQ's query parameters (`page`, `page_size`, `name`,
//! `use_regex`, `sort`, `sort_reverse`, `columns`) applied to the JSON objects a handler built,
//! and the paged envelope (`total_count`, `filtered_count`, `item_count`, `page`, `page_size`,
//! `page_count`, `items`).
//!
//! One difference, asked for by RabbitMQ's users: `name` filters without `page` too (RabbitMQ
//! ignores it then, so a tool that relies on that would see a shorter list; none we know does).

use std::cmp::Ordering;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};

const DEFAULT_PAGE_SIZE: usize = 100;
const MAX_PAGE_SIZE: usize = 500;
/// RabbitMQ's cap on a `name` regex.
const MAX_REGEX_LEN: usize = 1024;
/// RabbitMQ's reason for a page or regex it cannot read.
const PAGINATION_INVALID: &str = "Pagination parameters are invalid";

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<String>,
    pub page_size: Option<String>,
    pub name: Option<String>,
    pub use_regex: Option<String>,
    pub sort: Option<String>,
    pub sort_reverse: Option<String>,
    pub columns: Option<String>,
}

/// `columns` alone, for endpoints that return one object.
#[derive(Debug, Default, Deserialize)]
pub struct Columns {
    pub columns: Option<String>,
}

/// Filters, sorts, pages and trims `items` as the query asks.
pub fn respond(mut items: Vec<Value>, q: &ListQuery) -> ApiResult<Value> {
    let page = parse_page(q)?;
    let total = items.len();
    if let Some(name) = q.name.as_deref().filter(|n| !n.is_empty()) {
        let matches = name_filter(name, is_true(q.use_regex.as_deref()))?;
        items.retain(|i| matches(i.get("name").and_then(Value::as_str).unwrap_or("")));
    }
    sort(&mut items, q.sort.as_deref(), is_true(q.sort_reverse.as_deref()));
    let columns = q.columns.as_deref().map(parse_columns);
    let trim = |items: Vec<Value>| -> Vec<Value> {
        match &columns {
            Some(cols) => items.into_iter().map(|i| select_columns(&i, cols)).collect(),
            None => items,
        }
    };
    let Some((page, page_size)) = page else {
        return Ok(Value::Array(trim(items)));
    };
    let filtered = items.len();
    let page_count = filtered.div_ceil(page_size);
    // Page 1 of an empty list is fine; any other page past the end is an error.
    check_in_range(page, page_size, filtered)?;
    let page_items: Vec<Value> = items.into_iter().skip((page - 1) * page_size).take(page_size).collect();
    let page_items = trim(page_items);
    Ok(serde_json::json!({
        "filtered_count": filtered,
        "item_count": page_items.len(),
        "items": page_items,
        "page": page,
        "page_count": page_count,
        "page_size": page_size,
        "total_count": total,
    }))
}

/// [`respond`] for long lists of objects that are costly to build (queues). With the default
/// sort (vhost, then name) the name filter, the sort and the page are applied to the cheap
/// handles, and the objects are built and written out one at a time: a page of 10,000 queues
/// builds 100, and a full listing never holds more than one object besides the bytes of the
/// answer (holding all 10,000 as JSON values first took ~100 MB, which the allocator kept). Any
/// other sort needs every object built, and falls back to [`respond`].
pub fn respond_built<T>(
    mut items: Vec<T>,
    names: impl Fn(&T) -> (String, String),
    build: impl Fn(&T) -> Value,
    q: &ListQuery,
) -> ApiResult<Response> {
    if q.sort.as_deref().is_some_and(|s| !s.is_empty()) {
        let built: Vec<Value> = items.iter().map(build).collect();
        return Ok(axum::Json(respond(built, q)?).into_response());
    }
    let page = parse_page(q)?;
    let total = items.len();
    if let Some(name) = q.name.as_deref().filter(|n| !n.is_empty()) {
        let matches = name_filter(name, is_true(q.use_regex.as_deref()))?;
        items.retain(|i| matches(&names(i).1));
    }
    let mut keyed: Vec<((String, String), T)> = items.into_iter().map(|i| (names(&i), i)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if is_true(q.sort_reverse.as_deref()) {
        keyed.reverse();
    }
    let filtered = keyed.len();
    let (skip, take) = match page {
        Some((page, page_size)) => {
            check_in_range(page, page_size, filtered)?;
            ((page - 1) * page_size, page_size)
        }
        None => (0, filtered),
    };
    let columns = q.columns.as_deref().map(parse_columns);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let write_items = |out: &mut Vec<u8>| -> usize {
        out.push(b'[');
        let mut n = 0;
        for (_, item) in keyed.iter().skip(skip).take(take) {
            if n > 0 {
                out.push(b',');
            }
            let o = build(item);
            let o = match &columns {
                Some(cols) => select_columns(&o, cols),
                None => o,
            };
            // Writing a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &o);
            n += 1;
        }
        out.push(b']');
        n
    };
    match page {
        None => {
            write_items(&mut out);
        }
        Some((page, page_size)) => {
            // The envelope's keys in the order `respond` writes them (serde_json sorts them).
            out.extend_from_slice(format!("{{\"filtered_count\":{filtered},\"item_count\":").as_bytes());
            let mut items_json = Vec::new();
            let n = write_items(&mut items_json);
            out.extend_from_slice(format!("{n},\"items\":").as_bytes());
            out.extend_from_slice(&items_json);
            let page_count = filtered.div_ceil(page_size);
            out.extend_from_slice(
                format!(
                    ",\"page\":{page},\"page_count\":{page_count},\"page_size\":{page_size},\"total_count\":{total}}}"
                )
                .as_bytes(),
            );
        }
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// `columns` alone, for single objects (`GET /api/overview?columns=...`).
pub fn select(item: Value, columns: Option<&str>) -> Value {
    match columns {
        Some(c) => select_columns(&item, &parse_columns(c)),
        None => item,
    }
}

/// Page 1 of an empty list is fine; any other page past the end is RabbitMQ's 400.
fn check_in_range(page: usize, page_size: usize, filtered: usize) -> ApiResult<()> {
    if page > 1 && page > filtered.div_ceil(page_size) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "page_out_of_range",
            format!("Page out of range, page: {page} page size: {page_size}, len: {filtered}"),
        ));
    }
    Ok(())
}

pub fn is_true(v: Option<&str>) -> bool {
    v == Some("true")
}

fn parse_page(q: &ListQuery) -> ApiResult<Option<(usize, usize)>> {
    let Some(page) = q.page.as_deref() else { return Ok(None) };
    let size = q.page_size.as_deref();
    let invalid = || {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_pagination_parameters",
            format!("Invalid pagination parameters: page number {page}, page size {}", size.unwrap_or("undefined")),
        )
    };
    // Not a number at all: RabbitMQ's other reason.
    let unparsable = || ApiError::bad_request(PAGINATION_INVALID);
    let page: i64 = page.parse().map_err(|_| unparsable())?;
    let page = usize::try_from(page).ok().filter(|p| *p >= 1).ok_or_else(invalid)?;
    let size = match size {
        None => DEFAULT_PAGE_SIZE,
        Some(s) => {
            let s: i64 = s.parse().map_err(|_| unparsable())?;
            usize::try_from(s).ok().filter(|s| (1..=MAX_PAGE_SIZE).contains(s)).ok_or_else(invalid)?
        }
    };
    Ok(Some((page, size)))
}

type NameMatch = Box<dyn Fn(&str) -> bool>;

/// Case-insensitive: a substring, or a regex with `use_regex=true`.
fn name_filter(name: &str, regex: bool) -> ApiResult<NameMatch> {
    if !regex {
        let needle = name.to_lowercase();
        return Ok(Box::new(move |n: &str| n.to_lowercase().contains(&needle)));
    }
    let bad = || ApiError::bad_request(PAGINATION_INVALID);
    if name.len() > MAX_REGEX_LEN {
        return Err(bad());
    }
    let re = regex::RegexBuilder::new(name).case_insensitive(true).build().map_err(|_| bad())?;
    Ok(Box::new(move |n: &str| re.is_match(n)))
}

/// By `sort` (one dotted field), else by vhost then name, as RabbitMQ sorts. Missing values
/// sort first, numbers by value, strings by their bytes.
fn sort(items: &mut [Value], by: Option<&str>, reverse: bool) {
    let keys: Vec<Vec<&str>> = match by.filter(|s| !s.is_empty()) {
        Some(s) => vec![s.split('.').collect()],
        None => vec![vec!["vhost"], vec!["name"]],
    };
    items.sort_by(|a, b| {
        let ord =
            keys.iter().map(|k| compare(lookup(a, k), lookup(b, k))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal);
        if reverse {
            ord.reverse()
        } else {
            ord
        }
    });
}

fn lookup<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => {
            x.as_f64().unwrap_or(0.0).partial_cmp(&y.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (None | Some(Value::Null), None | Some(Value::Null)) => Ordering::Equal,
        (None | Some(Value::Null), _) => Ordering::Less,
        (_, None | Some(Value::Null)) => Ordering::Greater,
        (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
    }
}

fn parse_columns(columns: &str) -> Vec<Vec<String>> {
    columns.split(',').filter(|c| !c.is_empty()).map(|c| c.split('.').map(str::to_string).collect()).collect()
}

/// Keeps the named (possibly dotted) keys, nested as they were.
fn select_columns(item: &Value, columns: &[Vec<String>]) -> Value {
    let mut out = Map::new();
    for path in columns {
        let keys: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(v) = lookup(item, &keys) {
            insert_path(&mut out, &keys, v.clone());
        }
    }
    Value::Object(out)
}

fn insert_path(out: &mut Map<String, Value>, path: &[&str], v: Value) {
    match path {
        [] => {}
        [last] => {
            out.insert((*last).to_string(), v);
        }
        [first, rest @ ..] => {
            let entry = out.entry((*first).to_string()).or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                insert_path(inner, rest, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> ListQuery {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        ListQuery {
            page: get("page"),
            page_size: get("page_size"),
            name: get("name"),
            use_regex: get("use_regex"),
            sort: get("sort"),
            sort_reverse: get("sort_reverse"),
            columns: get("columns"),
        }
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"vhost": "/", "name": "b", "messages": 3, "x": {"y": 1}}),
            json!({"vhost": "/", "name": "a", "messages": 10}),
            json!({"vhost": "/", "name": "Cab", "messages": 2}),
        ]
    }

    #[test]
    fn unpaged_lists_are_sorted_by_vhost_then_name_and_trimmed_to_columns() {
        let out = respond(items(), &q(&[("columns", "name,x.y")])).unwrap();
        assert_eq!(out, json!([{"name": "Cab"}, {"name": "a"}, {"name": "b", "x": {"y": 1}}]));
        let out = respond(items(), &q(&[("sort", "messages"), ("sort_reverse", "true"), ("columns", "name")])).unwrap();
        assert_eq!(out, json!([{"name": "a"}, {"name": "b"}, {"name": "Cab"}]));
    }

    #[test]
    fn pages_carry_rabbitmqs_envelope_and_filters_count_separately() {
        let out =
            respond(items(), &q(&[("page", "1"), ("page_size", "1"), ("name", "A"), ("columns", "name")])).unwrap();
        assert_eq!(
            out,
            json!({"filtered_count": 2, "item_count": 1, "items": [{"name": "Cab"}], "page": 1,
                   "page_count": 2, "page_size": 1, "total_count": 3})
        );
        let out = respond(items(), &q(&[("page", "1"), ("name", "^c"), ("use_regex", "true")])).unwrap();
        assert_eq!(out["filtered_count"], 1);
        let empty = respond(vec![], &q(&[("page", "1")])).unwrap();
        assert_eq!(empty["page_count"], 0);
    }

    #[test]
    fn bad_pages_are_refused_with_rabbitmqs_reasons() {
        let e = respond(items(), &q(&[("page", "0")])).unwrap_err();
        assert_eq!(e.error, "invalid_pagination_parameters");
        assert_eq!(e.reason, "Invalid pagination parameters: page number 0, page size undefined");
        let e = respond(items(), &q(&[("page", "1"), ("page_size", "501")])).unwrap_err();
        assert_eq!(e.reason, "Invalid pagination parameters: page number 1, page size 501");
        let e = respond(items(), &q(&[("page", "5")])).unwrap_err();
        assert_eq!(
            (e.error, e.reason.as_str()),
            ("page_out_of_range", "Page out of range, page: 5 page size: 100, len: 3")
        );
        assert!(respond(items(), &q(&[("name", "("), ("use_regex", "true")])).is_err());
    }

    fn body_of(r: Response) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async { axum::body::to_bytes(r.into_body(), usize::MAX).await.unwrap().to_vec() })
    }

    #[test]
    fn building_only_the_page_gives_the_same_answer() {
        let names = |v: &Value| (v["vhost"].as_str().unwrap().to_string(), v["name"].as_str().unwrap().to_string());
        for query in [
            q(&[("page", "1"), ("page_size", "2"), ("columns", "name")]),
            q(&[("page", "2"), ("page_size", "2")]),
            q(&[("page", "1"), ("name", "a")]),
            q(&[("page", "1"), ("sort_reverse", "true")]),
            q(&[("page", "1"), ("sort", "messages")]),
            q(&[("columns", "name")]),
        ] {
            let built = respond_built(items(), names, |v| v.clone(), &query).unwrap();
            let bytes = body_of(built);
            let parsed: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(parsed, respond(items(), &query).unwrap(), "{}", String::from_utf8_lossy(&bytes));
        }
        assert!(respond_built(items(), names, |v| v.clone(), &q(&[("page", "9")])).is_err());
    }

    #[test]
    fn name_filters_without_page_too() {
        let out = respond(items(), &q(&[("name", "ab"), ("columns", "name")])).unwrap();
        assert_eq!(out, json!([{"name": "Cab"}]));
    }
}
