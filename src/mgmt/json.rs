//! JSON as RabbitMQ's management API reads and writes it: request bodies (an empty body is
//! `{}`, booleans and integers may come as strings because `rabbitmqadmin` sends them so),
//! AMQP field tables as JSON objects, and message properties.

use axum::body::Bytes;
use base64::Engine;
use serde_json::{Map, Number, Value};

use super::error::{ApiError, ApiResult};
use crate::protocol::{BasicProperties, FieldTable, FieldValue, LongStr, ShortStr};

/// A request body as an object: empty, `null` → `{}`; anything but an object → 400 with
/// RabbitMQ's reasons.
pub fn body_object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(Value::String(_)) => Err(ApiError::bad_request(
            "invalid payload: the request body JSON-decoded to a string. Is the input doubly-JSON-encoded?",
        )),
        Ok(_) | Err(_) => Err(ApiError::bad_request("not_json")),
    }
}

/// A boolean field: JSON `true`/`false` or the strings `"true"`/`"false"`.
pub fn bool_field(body: &Map<String, Value>, key: &str, default: bool) -> ApiResult<bool> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!("not_boolean: {}", scalar_text(other)))),
    }
}

/// An integer field: a JSON number or a numeric string (`"count": "1"` from `rabbitmqadmin`).
pub fn int_field(body: &Map<String, Value>, key: &str) -> ApiResult<Option<i64>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(Value::String(s)) => {
            s.trim().parse().map(Some).map_err(|_| ApiError::bad_request(format!("not_integer: {s}")))
        }
        Some(other) => Err(ApiError::bad_request(format!("not_integer: {}", scalar_text(other)))),
    }
}

pub fn str_field<'a>(body: &'a Map<String, Value>, key: &str) -> ApiResult<Option<&'a str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_request(format!("{key} must be a string, got {}", scalar_text(other)))),
    }
}

/// A mandatory field missing: RabbitMQ's `[{key_missing,K}]` reason.
pub fn key_missing(key: &str) -> ApiError {
    ApiError::bad_request(format!("[{{key_missing,{key}}}]"))
}

/// Every mandatory key present, else RabbitMQ's reason naming all that are missing, in the
/// order given: `[{key_missing,a},{key_missing,b}]`.
pub fn require_keys(body: &Map<String, Value>, keys: &[&str]) -> ApiResult<()> {
    let missing: Vec<String> =
        keys.iter().filter(|k| !body.contains_key(**k)).map(|k| format!("{{key_missing,{k}}}")).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!("[{}]", missing.join(","))))
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The `arguments` of a declare or binding: an object (a list is accepted as empty: pyrabbit
/// sends `[]`).
pub fn arguments_field(body: &Map<String, Value>) -> ApiResult<FieldTable> {
    match body.get("arguments") {
        None | Some(Value::Null) => Ok(FieldTable::new()),
        Some(Value::Array(a)) if a.is_empty() => Ok(FieldTable::new()),
        Some(Value::Object(m)) => table_from_json(m),
        Some(_) => Err(ApiError::bad_request("arguments must be an object")),
    }
}

pub fn short_str(s: &str) -> ApiResult<ShortStr> {
    ShortStr::try_from(s).map_err(|_| ApiError::bad_request(format!("name too long: {s}")))
}

/// A JSON object as an AMQP table, as RabbitMQ types it: strings are long strings, integers
/// `long` (signed 64-bit), other numbers doubles, objects tables, arrays arrays.
pub fn table_from_json(m: &Map<String, Value>) -> ApiResult<FieldTable> {
    let mut t = FieldTable::new();
    for (k, v) in m {
        t.insert(short_str(k)?, value_from_json(v)?);
    }
    Ok(t)
}

fn value_from_json(v: &Value) -> ApiResult<FieldValue> {
    Ok(match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => FieldValue::F64(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => FieldValue::LongStr(LongStr::from(s.as_str())),
        Value::Array(a) => FieldValue::Array(a.iter().map(value_from_json).collect::<ApiResult<_>>()?),
        Value::Object(m) => FieldValue::Table(table_from_json(m)?),
    })
}

/// An AMQP table as a JSON object (RabbitMQ's `amqp_table` format).
pub fn table_to_json(t: &FieldTable) -> Value {
    let mut m = Map::new();
    for (k, v) in t.iter() {
        m.insert(k.to_string_lossy(), value_to_json(v));
    }
    Value::Object(m)
}

fn value_to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::Decimal { scale, value } => {
            Number::from_f64(f64::from(*value) / 10f64.powi(i32::from(*scale))).map_or(Value::Null, Value::Number)
        }
        FieldValue::F32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        FieldValue::F64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        FieldValue::LongStr(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        FieldValue::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        FieldValue::Array(a) => Value::Array(a.iter().map(value_to_json).collect()),
        FieldValue::Timestamp(t) => Value::from(*t),
        FieldValue::Table(t) => table_to_json(t),
        FieldValue::Void => Value::Null,
        other => other.as_i64().map_or(Value::Null, Value::from),
    }
}

/// Message properties as the API shows them: only those set, RabbitMQ's names.
pub fn properties_to_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut put_str = |k: &str, v: &Option<ShortStr>| {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.to_string_lossy()));
        }
    };
    put_str("content_type", &p.content_type);
    put_str("content_encoding", &p.content_encoding);
    put_str("correlation_id", &p.correlation_id);
    put_str("reply_to", &p.reply_to);
    put_str("expiration", &p.expiration);
    put_str("message_id", &p.message_id);
    put_str("type", &p.kind);
    put_str("user_id", &p.user_id);
    put_str("app_id", &p.app_id);
    put_str("cluster_id", &p.cluster_id);
    if let Some(h) = &p.headers {
        m.insert("headers".into(), table_to_json(h));
    }
    if let Some(d) = p.delivery_mode {
        m.insert("delivery_mode".into(), d.into());
    }
    if let Some(pr) = p.priority {
        m.insert("priority".into(), pr.into());
    }
    if let Some(t) = p.timestamp {
        m.insert("timestamp".into(), t.into());
    }
    Value::Object(m)
}

/// The `properties` of an HTTP publish. Unknown keys are refused, as RabbitMQ does.
pub fn properties_from_json(m: &Map<String, Value>) -> ApiResult<BasicProperties> {
    let mut p = BasicProperties::default();
    for (k, v) in m {
        let text = || -> ApiResult<Option<ShortStr>> {
            match v {
                Value::String(s) => short_str(s).map(Some),
                Value::Number(n) => short_str(&n.to_string()).map(Some),
                _ => Err(ApiError::bad_request(format!("invalid property {k}"))),
            }
        };
        let octet = || -> ApiResult<Option<u8>> {
            let n = match v {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            };
            n.and_then(|n| u8::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid property {k}")))
        };
        match k.as_str() {
            "content_type" => p.content_type = text()?,
            "content_encoding" => p.content_encoding = text()?,
            "correlation_id" => p.correlation_id = text()?,
            "reply_to" => p.reply_to = text()?,
            "expiration" => p.expiration = text()?,
            "message_id" => p.message_id = text()?,
            "type" => p.kind = text()?,
            "user_id" => p.user_id = text()?,
            "app_id" => p.app_id = text()?,
            "cluster_id" => p.cluster_id = text()?,
            "delivery_mode" => p.delivery_mode = octet()?,
            "priority" => p.priority = octet()?,
            "timestamp" => {
                p.timestamp = Some(
                    v.as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| ApiError::bad_request("invalid property timestamp"))?,
                )
            }
            "headers" => match v {
                Value::Object(h) => p.headers = Some(table_from_json(h)?),
                _ => return Err(ApiError::bad_request("invalid property headers")),
            },
            _ => return Err(ApiError::bad_request(format!("invalid property {k}"))),
        }
    }
    Ok(p)
}

/// A payload as the API returns it: `auto` gives valid UTF-8 as a string and anything else in
/// base64; `base64` always base64.
pub fn encode_payload(body: &[u8], encoding: &str) -> (Value, &'static str) {
    match (encoding, std::str::from_utf8(body)) {
        ("auto", Ok(s)) => (Value::String(s.to_string()), "string"),
        _ => (Value::String(base64::engine::general_purpose::STANDARD.encode(body)), "base64"),
    }
}

pub fn decode_payload(payload: &str, encoding: &str) -> ApiResult<Vec<u8>> {
    match encoding {
        "string" => Ok(payload.as_bytes().to_vec()),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload.trim())
            .map_err(|_| ApiError::bad_request("payload is not valid base64")),
        other => Err(ApiError::bad_request(format!("invalid payload_encoding {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_round_trip_through_json() {
        let v = json!({"x-max-length": 10, "s": "text", "f": 1.5, "b": true, "a": [1, "x"], "t": {"n": -1}});
        let t = table_from_json(v.as_object().unwrap()).unwrap();
        assert_eq!(t.get("x-max-length"), Some(&FieldValue::I64(10)));
        assert_eq!(table_to_json(&t), v);
    }

    #[test]
    fn lenient_scalars_as_rabbitmqadmin_sends_them() {
        let body = body_object(&Bytes::from_static(br#"{"durable":"true","count":"2","x":"maybe"}"#)).unwrap();
        assert!(bool_field(&body, "durable", false).unwrap());
        assert!(!bool_field(&body, "auto_delete", false).unwrap());
        assert!(bool_field(&body, "x", false).is_err());
        assert_eq!(int_field(&body, "count").unwrap(), Some(2));
        assert!(body_object(&Bytes::from_static(b"")).unwrap().is_empty());
        assert_eq!(body_object(&Bytes::from_static(b"{bad")).unwrap_err().reason, "not_json");
        assert!(body_object(&Bytes::from_static(b"\"x\"")).unwrap_err().reason.contains("doubly"));
    }

    #[test]
    fn properties_round_trip_and_unknown_ones_are_refused() {
        let v = json!({"delivery_mode": 2, "headers": {"h": "v"}, "content_type": "text/plain", "priority": 3});
        let p = properties_from_json(v.as_object().unwrap()).unwrap();
        assert_eq!(properties_to_json(&p), v);
        assert!(properties_from_json(json!({"bogus": 1}).as_object().unwrap()).is_err());
    }

    #[test]
    fn payloads_in_both_encodings() {
        assert_eq!(encode_payload(b"hi", "auto"), (json!("hi"), "string"));
        assert_eq!(encode_payload(&[0xff], "auto"), (json!("/w=="), "base64"));
        assert_eq!(decode_payload("aGk=", "base64").unwrap(), b"hi");
        assert!(decode_payload("x", "rot13").is_err());
    }
}
