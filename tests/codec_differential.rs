//! Differential test of the wire codec against pamqp, an independent Python implementation of
//! AMQP 0-9-1 (`interop-tests/codec/pamqp_oracle.py` drives it; see its docstring for the JSON
//! lines protocol and the normal form both sides compare values in).
//!
//! * pamqp → Warren: pamqp encodes random frames (every method it knows, content headers with
//!   random property subsets and nested header tables, whole messages split into body frames,
//!   heartbeats), plus every method built with pamqp's own defaults. We decode each with
//!   `decode_frame`, compare the values with those Python asked pamqp to encode, and re-encode:
//!   the octets must be pamqp's.
//! * Warren → pamqp: we encode random frames of every method; pamqp decodes and re-encodes them.
//!   The octets must come back unchanged and pamqp's values must be ours.
//!
//! Our random values stay inside what pamqp can represent (each restriction names the pamqp
//! quirk behind it; the oracle lists the same ones). Field-table integers are written with the
//! letter pamqp picks from the magnitude (`b` 0..=127, `s` -32768..=32767, `u` up to 65535, `I`,
//! `i` up to 2^32-1, `l`), so pamqp's re-encoding can be compared octet for octet. pamqp never
//! writes `B` or `d`, nor `I` for a small number: a share of the Warren → pamqp cases uses every
//! letter anyway and compares values only (see [`Gen`]).
//!
//! Needs Python with pamqp 3.x: `$WARREN_PYTHON`, or `interop-tests/.venv/bin/python` (made by
//! `scripts/test.sh`). Without it the test prints `SKIPPED` and passes, unless `CI` or
//! `WARREN_REQUIRE_DIFFERENTIAL` is set (to anything but empty, `0` or `false`): then it fails.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use warren::protocol::methods::*;
use warren::protocol::{
    decode_frame, encode_content, encode_content_header, encode_heartbeat, encode_method, BasicProperties,
    ContentHeader, FieldTable, FieldValue, Frame, LongStr, Method, ShortStr,
};

/// Random cases per direction, and how many go to the oracle per request.
const CASES: usize = 3000;
const BATCH: usize = 500;
const SEED_PAMQP_TO_WARREN: u64 = 0x5741_5252_454e_0001;
const SEED_WARREN_TO_PAMQP: u64 = 0x5741_5252_454e_0002;
/// Mismatches printed in full before the test gives up listing them.
const SHOWN_FAILURES: usize = 8;

// ---------------------------------------------------------------------------------------------
// The oracle process

struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    fn spawn() -> Result<Oracle, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("WARREN_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("interop-tests/.venv/bin/python"));
        let script = root.join("interop-tests/codec/pamqp_oracle.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut oracle = Oracle { child, stdin, stdout };
        let hello = oracle.request(&json!({"op": "hello"})).map_err(|e| format!("{} {e}", python.display()))?;
        if hello["ok"] != true {
            return Err(hello["error"].as_str().unwrap_or("the oracle refused to start").to_string());
        }
        let (pamqp, py) = (hello["pamqp"].as_str().unwrap_or("?"), hello["python"].as_str().unwrap_or("?"));
        eprintln!("codec_differential: pamqp {pamqp} on Python {py}");
        Ok(oracle)
    }

    fn request(&mut self, req: &Value) -> Result<Value, String> {
        let mut line = serde_json::to_string(req).expect("requests serialize");
        line.push('\n');
        // A broken pipe here means the oracle already exited; its first line says why.
        let _ = self.stdin.write_all(line.as_bytes()).and_then(|_| self.stdin.flush());
        let mut answer = String::new();
        match self.stdout.read_line(&mut answer) {
            Ok(0) => Err("exited without answering".to_string()),
            Ok(_) => serde_json::from_str(&answer).map_err(|e| format!("answered with bad JSON ({e})")),
            Err(e) => Err(format!("could not be read from: {e}")),
        }
    }

    /// A request that must succeed.
    fn call(&mut self, req: Value) -> Value {
        let resp = self.request(&req).unwrap_or_else(|e| panic!("pamqp oracle {e} (request op {})", req["op"]));
        assert!(
            resp["ok"] == true,
            "pamqp oracle failed on op {}:\n{}",
            req["op"],
            resp["error"].as_str().unwrap_or("?")
        );
        resp
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flag_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The oracle, or `None` after a loud skip notice; under CI a missing pamqp is a failure.
fn oracle() -> Option<Oracle> {
    match Oracle::spawn() {
        Ok(o) => Some(o),
        Err(why) if flag_set("CI") || flag_set("WARREN_REQUIRE_DIFFERENTIAL") => panic!(
            "the pamqp differential test cannot run: {why}.\nRun scripts/test.sh, which creates \
             interop-tests/.venv from interop-tests/requirements.txt (or point WARREN_PYTHON at a Python \
             with pamqp 3.x)."
        ),
        Err(why) => {
            // Straight to the process's stderr: libtest would swallow an eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "\n========================================================================\n\
                 SKIPPED: pamqp not installed ({why}).\n\
                 The codec differential test did not run. Run scripts/test.sh to create\n\
                 interop-tests/.venv, or set WARREN_PYTHON to a Python with pamqp 3.x.\n\
                 ========================================================================\n"
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values in the normal form the oracle speaks

/// Rewrites the `{"type": letter, "value": v}` objects of Warren's Serialize output into the
/// oracle's normal form, dropping the integer and float type letters pamqp does not keep.
fn norm(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 2 && m.contains_key("type") && m.contains_key("value") => {
            let value = &m["value"];
            match m["type"].as_str().expect("type letter") {
                "t" => json!({ "bool": value }),
                "b" | "B" | "s" | "u" | "I" | "i" | "l" => json!({ "int": value }),
                "f" | "d" => json!({ "float": value.as_f64().map(|f| format!("{:016x}", f.to_bits())) }),
                "D" => json!({ "dec": value }),
                "S" => json!({ "str": value }),
                "x" => {
                    let octets: Vec<u8> = value
                        .as_array()
                        .expect("x is an array of octets")
                        .iter()
                        .map(|b| b.as_u64().expect("octet") as u8)
                        .collect();
                    json!({ "bytes": hex(&octets) })
                }
                "A" => json!({ "array": norm(value) }),
                "T" => json!({ "ts": value }),
                "F" => json!({ "table": norm(value) }),
                "V" => json!({ "void": null }),
                other => panic!("unknown field value type {other:?} in Warren's JSON"),
            }
        }
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        other => other.clone(),
    }
}

/// The field-table type letters used anywhere in Warren's Serialize output.
fn letters(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(t)), true, 2) = (m.get("type"), m.contains_key("value"), m.len()) {
                out.insert(t.clone());
            }
            m.values().for_each(|x| letters(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| letters(x, out)),
        _ => {}
    }
}

/// Every letter pamqp writes (it never picks `B` or `d`), so both directions must have used them.
const PAMQP_LETTERS: &str = "tbsuIilfDSxATFV";

fn assert_letters(direction: &str, seen: &BTreeSet<String>) {
    let missing: Vec<char> = PAMQP_LETTERS.chars().filter(|c| !seen.contains(&c.to_string())).collect();
    assert!(missing.is_empty(), "{direction}: no field value of type {missing:?} was exercised");
}

fn method_json(channel: u16, method: &Method) -> Value {
    let v = serde_json::to_value(method).expect("methods serialize");
    json!({"type": "method", "channel": channel, "method": v["method"], "fields": norm(&v["fields"])})
}

fn header_json(channel: u16, class_id: u16, body_size: u64, props: &BasicProperties) -> Value {
    let props = norm(&serde_json::to_value(props).expect("properties serialize"));
    json!({"type": "header", "channel": channel, "class_id": class_id, "body_size": body_size, "properties": props})
}

fn body_json(channel: u16, payload: &[u8]) -> Value {
    json!({"type": "body", "channel": channel, "payload": hex(payload)})
}

fn frame_json(f: &Frame) -> Value {
    match f {
        Frame::Method { channel, method } => method_json(*channel, method),
        Frame::Header { channel, header } => {
            header_json(*channel, header.class_id, header.body_size, &header.properties)
        }
        Frame::Body { channel, payload } => body_json(*channel, payload),
        Frame::Heartbeat => json!({"type": "heartbeat", "channel": 0}),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

// ---------------------------------------------------------------------------------------------
// Reporting

/// Where two values first differ, as `path: expected … got …`.
fn first_diff(want: &Value, got: &Value, path: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let p = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => first_diff(x, y, &p),
                    (x, y) => Some(format!("{p}: expected {} got {}", show(x), show(y))),
                }
            })
        }
        (Value::Array(a), Value::Array(b)) => {
            a.iter().zip(b).enumerate().find_map(|(n, (x, y))| first_diff(x, y, &format!("{path}[{n}]"))).or_else(
                || (a.len() != b.len()).then(|| format!("{path}: expected {} items, got {}", a.len(), b.len())),
            )
        }
        _ => (want != got).then(|| format!("{path}: expected {want} got {got}")),
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or("nothing".to_string(), |v| clip(&v.to_string(), 300))
}

fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more chars)", &s[..end], s.len() - end)
}

fn bytes_diff(want: &[u8], got: &[u8]) -> String {
    let at = want.iter().zip(got).position(|(a, b)| a != b).unwrap_or(want.len().min(got.len()));
    let from = at.saturating_sub(16);
    let window = |b: &[u8]| hex(&b[from.min(b.len())..(at + 32).min(b.len())]);
    format!(
        "octets differ at offset {at} ({} vs {} octets); from offset {from}:\n  expected {}\n  got      {}\n\
         whole expected: {}\nwhole got:      {}",
        want.len(),
        got.len(),
        window(want),
        window(got),
        clip(&hex(want), 2000),
        clip(&hex(got), 2000)
    )
}

fn names(frames: &[Value]) -> String {
    frames
        .iter()
        .map(|f| f["method"].as_str().unwrap_or(f["type"].as_str().unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(" + ")
}

#[derive(Default)]
struct Failures {
    count: usize,
    shown: Vec<String>,
}

impl Failures {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.shown.len() < SHOWN_FAILURES {
            self.shown.push(what);
        }
    }

    fn check(self, direction: &str, total: usize) {
        assert!(
            self.count == 0,
            "{direction}: {} of {total} cases disagree. First ones:\n\n{}",
            self.count,
            self.shown.join("\n\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// pamqp → Warren

/// What the pamqp-generated cases exercised.
#[derive(Default)]
struct Seen {
    methods: BTreeSet<String>,
    letters: BTreeSet<String>,
}

/// Decodes a pamqp-encoded case, checks its values, and re-encodes it with our encoder.
fn check_pamqp_case(n: usize, case: &Value, seen: &mut Seen) -> Result<(), String> {
    let octets = unhex(case["hex"].as_str().expect("hex"));
    let want: &Vec<Value> = case["frames"].as_array().expect("frames");
    let label = format!("case {n} ({})", names(want));
    let mut buf = BytesMut::from(&octets[..]);
    let mut frames = Vec::new();
    loop {
        match decode_frame(&mut buf, 0) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => break,
            Err(e) => {
                return Err(format!("{label}: Warren refuses pamqp's frame: {e:?}\n  pamqp octets {}", hex(&octets)))
            }
        }
    }
    if !buf.is_empty() {
        return Err(format!("{label}: {} octets left undecoded of {}", buf.len(), hex(&octets)));
    }
    let got: Vec<Value> = frames.iter().map(frame_json).collect();
    let got = Value::Array(got);
    if let Some(d) = first_diff(&case["frames"], &got, "frames") {
        return Err(format!(
            "{label}: decoded values differ from what pamqp encoded\n  {d}\n  pamqp octets {}",
            hex(&octets)
        ));
    }
    for f in &frames {
        match f {
            Frame::Method { method, .. } => {
                seen.methods.insert(method.name().to_string());
                letters(&serde_json::to_value(method).expect("serializes"), &mut seen.letters);
            }
            Frame::Header { header, .. } => {
                letters(&serde_json::to_value(&header.properties).expect("serializes"), &mut seen.letters)
            }
            _ => {}
        }
    }

    let mut out = BytesMut::new();
    match &frames[..] {
        [Frame::Method { channel, method }, Frame::Header { header, .. }, bodies @ ..]
            if case.get("frame_max").is_some() =>
        {
            let frame_max = case["frame_max"].as_u64().expect("frame_max") as u32;
            let mut body = Vec::new();
            for b in bodies {
                let Frame::Body { payload, .. } = b else { return Err(format!("{label}: not a body frame: {b:?}")) };
                body.extend_from_slice(payload);
            }
            encode_content(&mut out, *channel, method, &header.properties, &body, frame_max);
        }
        _ => {
            for f in &frames {
                match f {
                    Frame::Method { channel, method } => encode_method(&mut out, *channel, method),
                    Frame::Header { channel, header } => {
                        encode_content_header(&mut out, *channel, header.body_size, &header.properties)
                    }
                    Frame::Heartbeat => encode_heartbeat(&mut out),
                    Frame::Body { .. } => return Err(format!("{label}: lone body frame in a non-content case")),
                }
            }
        }
    }
    if case["exact"] == true && out[..] != octets[..] {
        return Err(format!("{label}: Warren's re-encoding differs from pamqp's\n{}", bytes_diff(&octets, &out)));
    }
    Ok(())
}

#[test]
fn pamqp_frames_decode_and_reencode_identically_in_warren() {
    let Some(mut oracle) = oracle() else { return };
    let start = Instant::now();
    let mut failures = Failures::default();
    let mut seen = Seen::default();

    // Frames as pamqp-based clients send them by default. pamqp writes "0" into the reserved
    // field of channel.open and channel.open-ok; Warren (like RabbitMQ) ignores reserved fields
    // and writes them empty, so those cases (`exact: false`) only compare values.
    let defaults = oracle.call(json!({"op": "defaults"}));
    let defaults = defaults["cases"].as_array().expect("cases");
    assert!(defaults.len() >= 40, "pamqp built only {} default frames", defaults.len());
    for (n, case) in defaults.iter().enumerate() {
        if let Err(e) = check_pamqp_case(n, case, &mut seen) {
            failures.add(format!("[pamqp defaults] {e}"));
        }
    }

    let mut total = 0;
    for batch in 0..CASES.div_ceil(BATCH) {
        let seed = SEED_PAMQP_TO_WARREN + batch as u64;
        let resp = oracle.call(json!({"op": "generate", "seed": seed, "count": BATCH}));
        for (n, case) in resp["cases"].as_array().expect("cases").iter().enumerate() {
            total += 1;
            if let Err(e) = check_pamqp_case(n, case, &mut seen) {
                failures.add(format!("[seed {seed}] {e}"));
            }
        }
    }

    let all: BTreeSet<String> =
        Which::ALL.iter().map(|w| random_method(&mut Gen::new(0), *w).name().to_string()).collect();
    let missed: Vec<&String> = all.difference(&seen.methods).collect();
    assert!(missed.is_empty(), "pamqp generated no frames of {missed:?}");
    assert_letters("pamqp → Warren", &seen.letters);
    eprintln!(
        "codec_differential: pamqp → Warren: {total} random + {} default cases, {} methods, {:.2?}",
        defaults.len(),
        seen.methods.len(),
        start.elapsed()
    );
    failures.check("pamqp → Warren", total + defaults.len());
}

// ---------------------------------------------------------------------------------------------
// Warren → pamqp

/// Random values from a seeded splitmix64.
///
/// By default the values are what pamqp can write back octet for octet. With `free` set, field
/// tables use any RabbitMQ type letter for a value (`B`, `d`, `I` for 5, ...), any decimal, and
/// unsorted keys of any length: pamqp cannot re-encode those identically (it picks its own
/// integer letters, writes every float as `f`, sorts keys), so such cases compare values only,
/// checking pamqp's decoder against all of our encoder.
struct Gen {
    state: u64,
    free: bool,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen { state: seed, free: false }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        match (hi.wrapping_sub(lo) as u64).checked_add(1) {
            Some(span) => lo.wrapping_add((self.next() % span) as i64),
            None => self.next() as i64,
        }
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn bit(&mut self) -> bool {
        self.chance(50)
    }

    /// An unsigned value up to `max` (2^k-1), biased to the edges and to small numbers.
    fn uint(&mut self, max: u64) -> u64 {
        match self.below(10) {
            0 => [0, 1, max, max - 1, max / 2 + 1][self.below(5) as usize],
            1..=3 => self.below(max.min(1000) + 1),
            _ => self.next() & max,
        }
    }

    fn u8(&mut self) -> u8 {
        self.uint(u8::MAX as u64) as u8
    }

    fn u16(&mut self) -> u16 {
        self.uint(u16::MAX as u64) as u16
    }

    fn u32(&mut self) -> u32 {
        self.uint(u32::MAX as u64) as u32
    }

    /// Full range: pamqp reads longlong signed, the oracle reads it back modulo 2^64.
    fn u64(&mut self) -> u64 {
        self.uint(u64::MAX)
    }

    /// Valid UTF-8 of at most `max_bytes` octets and `max_chars` characters: pamqp turns every
    /// string into a Python str and cannot decode (shortstr) or re-encode (longstr, `S`) others.
    fn text(&mut self, max_bytes: usize, max_chars: usize) -> String {
        let target = match self.below(10) {
            0 => 0,
            1 => max_bytes,
            2..=5 => 1 + self.below(max_bytes.min(12) as u64) as usize,
            _ => self.below(max_bytes as u64 + 1) as usize,
        };
        // ASCII (weighted up), controls, then 2-, 3- and 4-octet UTF-8.
        const POOLS: [(u32, u32); 9] = [
            (0x20, 0x7e),
            (0x20, 0x7e),
            (0x20, 0x7e),
            (0x20, 0x7e),
            (0x00, 0x1f),
            (0x80, 0x7ff),
            (0x800, 0xd7ff),
            (0xe000, 0xffff),
            (0x10000, 0x10ffff),
        ];
        let mut s = String::new();
        let mut chars = 0;
        while s.len() < target && chars < max_chars {
            let (lo, hi) = POOLS[self.below(POOLS.len() as u64) as usize];
            let mut c = char::from_u32(lo + self.below((hi - lo + 1) as u64) as u32).expect("no surrogates");
            if s.len() + c.len_utf8() > target {
                c = char::from(b'a' + self.below(26) as u8);
            }
            s.push(c);
            chars += 1;
        }
        s
    }

    fn shortstr(&mut self) -> ShortStr {
        ShortStr::try_from(self.text(255, usize::MAX)).expect("at most 255 octets")
    }

    fn longstr(&mut self) -> LongStr {
        let max = if self.bit() { 16 } else { 300 };
        LongStr::from(self.text(max, usize::MAX))
    }

    /// A table as pamqp would write it: keys unique, sorted and at most 128 characters (pamqp
    /// keeps tables in a dict, sorts keys on encode and cuts longer ones).
    fn table(&mut self, depth: usize) -> FieldTable {
        let n = self.below(if depth == 0 { 7 } else { 5 });
        if self.free {
            // Any order and length, but unique keys: pamqp decodes into a dict.
            let mut keys = BTreeSet::new();
            let mut entries = Vec::new();
            for _ in 0..n {
                let k = self.text(255, usize::MAX);
                if keys.insert(k.clone()) {
                    entries.push((ShortStr::try_from(k).expect("short key"), self.field_value(depth)));
                }
            }
            return FieldTable(entries);
        }
        let mut entries = BTreeMap::new();
        for _ in 0..n {
            entries.insert(self.text(255, 128), self.field_value(depth));
        }
        FieldTable(entries.into_iter().map(|(k, v)| (ShortStr::try_from(k).expect("short key"), v)).collect())
    }

    fn field_value(&mut self, depth: usize) -> FieldValue {
        let kinds = if depth < 3 { 12 } else { 10 };
        match self.below(kinds) {
            0 => FieldValue::Bool(self.bit()),
            1 | 2 => self.table_int(),
            3 if self.free && self.bit() => FieldValue::F64(self.f64()),
            3 => FieldValue::F32(self.f32()),
            4 => self.decimal(),
            5 => FieldValue::LongStr(LongStr::from(self.text(80, usize::MAX))),
            6 => FieldValue::Bytes(Bytes::from((0..self.below(25)).map(|_| self.next() as u8).collect::<Vec<u8>>())),
            // pamqp reads a `T` above 2^32-1 as milliseconds.
            7 => FieldValue::Timestamp(self.uint(u32::MAX as u64)),
            8 | 9 => FieldValue::Void,
            10 => FieldValue::Array((0..self.below(6)).map(|_| self.field_value(depth + 1)).collect()),
            _ => FieldValue::Table(self.table(depth + 1)),
        }
    }

    /// An integer in the type pamqp chooses for its magnitude. pamqp writes `b` with an unsigned
    /// pack, so it cannot encode -128..=-1 at all; those values are not generated.
    fn table_int(&mut self) -> FieldValue {
        const EDGES: [i64; 19] = [
            0,
            1,
            127,
            128,
            -129,
            32767,
            32768,
            -32768,
            -32769,
            65535,
            65536,
            i32::MAX as i64,
            i32::MAX as i64 + 1,
            i32::MIN as i64,
            i32::MIN as i64 - 1,
            u32::MAX as i64,
            u32::MAX as i64 + 1,
            i64::MAX,
            i64::MIN,
        ];
        if self.free {
            return self.any_int();
        }
        let v = loop {
            let v = if self.chance(25) {
                EDGES[self.below(EDGES.len() as u64) as usize]
            } else {
                let ranges: [(i64, i64); 6] = [
                    (0, 127),
                    (-32768, 32767),
                    (32768, 65535),
                    (i32::MIN.into(), i32::MAX.into()),
                    (1 << 31, u32::MAX.into()),
                    (i64::MIN, i64::MAX),
                ];
                let (lo, hi) = ranges[self.below(6) as usize];
                self.range(lo, hi)
            };
            if !(-128..0).contains(&v) {
                break v;
            }
        };
        if let Ok(b) = i8::try_from(v) {
            FieldValue::I8(b)
        } else if let Ok(s) = i16::try_from(v) {
            FieldValue::I16(s)
        } else if let Ok(u) = u16::try_from(v) {
            FieldValue::U16(u)
        } else if let Ok(i) = i32::try_from(v) {
            FieldValue::I32(i)
        } else if let Ok(u) = u32::try_from(v) {
            FieldValue::U32(u)
        } else {
            FieldValue::I64(v)
        }
    }

    /// An integer in any type letter that holds it.
    fn any_int(&mut self) -> FieldValue {
        let v = match self.below(4) {
            0 => self.range(-300, 300),
            1 => self.range(-70000, 70000),
            2 => self.range(i32::MIN.into(), u32::MAX.into()),
            _ => self.next() as i64,
        };
        let fits: Vec<FieldValue> = [
            i8::try_from(v).ok().map(FieldValue::I8),
            u8::try_from(v).ok().map(FieldValue::U8),
            i16::try_from(v).ok().map(FieldValue::I16),
            u16::try_from(v).ok().map(FieldValue::U16),
            i32::try_from(v).ok().map(FieldValue::I32),
            u32::try_from(v).ok().map(FieldValue::U32),
            Some(FieldValue::I64(v)),
        ]
        .into_iter()
        .flatten()
        .collect();
        fits[self.below(fits.len() as u64) as usize].clone()
    }

    fn f64(&mut self) -> f64 {
        loop {
            let f = f64::from_bits(self.next());
            if f.is_finite() {
                return f;
            }
        }
    }

    /// Finite floats only: Warren's JSON form of a non-finite float is null, and NaN payloads
    /// need not survive Python's float conversion.
    fn f32(&mut self) -> f32 {
        if self.chance(20) {
            return [0.0, -0.0, 1.5, -2.25, f32::MIN_POSITIVE, f32::MAX, 0.1][self.below(7) as usize];
        }
        loop {
            let f = f32::from_bits(self.next() as u32);
            if f.is_finite() {
                return f;
            }
        }
    }

    /// pamqp re-encodes a decimal from `str(Decimal)` with a *signed* 32-bit raw value, and the
    /// string turns to exponent notation (losing the scale) once scale > digits + 5: so raw
    /// stays below 2^31 and the scale within digits + 5.
    fn decimal(&mut self) -> FieldValue {
        if self.free {
            // pamqp reads any decimal right (unsigned raw, as RabbitMQ); only writing is limited.
            return FieldValue::Decimal { scale: self.next() as u8, value: self.next() as u32 };
        }
        let value = match self.below(5) {
            0 => 0,
            1 => 1,
            2 => i32::MAX as u32,
            3 => self.below(1000) as u32,
            _ => self.below(1 << 31) as u32,
        };
        let digits = value.to_string().len() as u64;
        FieldValue::Decimal { scale: self.below(digits + 6) as u8, value }
    }

    /// Any property subset. pamqp drops a present but empty shortstr property when it encodes,
    /// and reads a timestamp above 2^32-1 as milliseconds: neither is generated.
    fn properties(&mut self) -> BasicProperties {
        let s = |g: &mut Gen| {
            g.chance(50).then(|| {
                let t = g.text(255, usize::MAX);
                ShortStr::try_from(if t.is_empty() { "x".to_string() } else { t }).expect("short")
            })
        };
        BasicProperties {
            content_type: s(self),
            content_encoding: s(self),
            headers: self.chance(50).then(|| self.table(0)),
            delivery_mode: self.chance(50).then(|| self.u8()),
            priority: self.chance(50).then(|| self.u8()),
            correlation_id: s(self),
            reply_to: s(self),
            expiration: s(self),
            message_id: s(self),
            timestamp: self.chance(50).then(|| self.uint(u32::MAX as u64)),
            kind: s(self),
            user_id: s(self),
            app_id: s(self),
            cluster_id: s(self),
        }
    }
}

/// Declares `Which`, one value per `Method` variant. `which` matches exhaustively, so a method
/// added to the spec does not compile here until `random_method` builds it too.
macro_rules! which {
    ($($v:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Which { $($v),* }

        impl Which {
            const ALL: &'static [Which] = &[$(Which::$v),*];
        }

        fn which(m: &Method) -> Which {
            match m { $(Method::$v(_) => Which::$v),* }
        }
    };
}

which!(
    ConnectionStart,
    ConnectionStartOk,
    ConnectionSecure,
    ConnectionSecureOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionBlocked,
    ConnectionUnblocked,
    ConnectionUpdateSecret,
    ConnectionUpdateSecretOk,
    ChannelOpen,
    ChannelOpenOk,
    ChannelFlow,
    ChannelFlowOk,
    ChannelClose,
    ChannelCloseOk,
    ExchangeDeclare,
    ExchangeDeclareOk,
    ExchangeDelete,
    ExchangeDeleteOk,
    ExchangeBind,
    ExchangeBindOk,
    ExchangeUnbind,
    ExchangeUnbindOk,
    QueueDeclare,
    QueueDeclareOk,
    QueueBind,
    QueueBindOk,
    QueuePurge,
    QueuePurgeOk,
    QueueDelete,
    QueueDeleteOk,
    QueueUnbind,
    QueueUnbindOk,
    BasicQos,
    BasicQosOk,
    BasicConsume,
    BasicConsumeOk,
    BasicCancel,
    BasicCancelOk,
    BasicPublish,
    BasicReturn,
    BasicDeliver,
    BasicGet,
    BasicGetOk,
    BasicGetEmpty,
    BasicAck,
    BasicReject,
    BasicRecoverAsync,
    BasicRecover,
    BasicRecoverOk,
    BasicNack,
    ConfirmSelect,
    ConfirmSelectOk,
    TxSelect,
    TxSelectOk,
    TxCommit,
    TxCommitOk,
    TxRollback,
    TxRollbackOk,
);

const CONTENT_METHODS: [Which; 4] = [Which::BasicPublish, Which::BasicReturn, Which::BasicDeliver, Which::BasicGetOk];

fn random_method(g: &mut Gen, w: Which) -> Method {
    match w {
        Which::ConnectionStart => Method::ConnectionStart(ConnectionStart {
            version_major: g.u8(),
            version_minor: g.u8(),
            server_properties: g.table(0),
            mechanisms: g.longstr(),
            locales: g.longstr(),
        }),
        Which::ConnectionStartOk => Method::ConnectionStartOk(ConnectionStartOk {
            client_properties: g.table(0),
            mechanism: g.shortstr(),
            response: g.longstr(),
            locale: g.shortstr(),
        }),
        Which::ConnectionSecure => Method::ConnectionSecure(ConnectionSecure { challenge: g.longstr() }),
        Which::ConnectionSecureOk => Method::ConnectionSecureOk(ConnectionSecureOk { response: g.longstr() }),
        Which::ConnectionTune => {
            Method::ConnectionTune(ConnectionTune { channel_max: g.u16(), frame_max: g.u32(), heartbeat: g.u16() })
        }
        Which::ConnectionTuneOk => {
            Method::ConnectionTuneOk(ConnectionTuneOk { channel_max: g.u16(), frame_max: g.u32(), heartbeat: g.u16() })
        }
        Which::ConnectionOpen => Method::ConnectionOpen(ConnectionOpen { virtual_host: g.shortstr() }),
        Which::ConnectionOpenOk => Method::ConnectionOpenOk(ConnectionOpenOk {}),
        Which::ConnectionClose => Method::ConnectionClose(ConnectionClose {
            reply_code: g.u16(),
            reply_text: g.shortstr(),
            class_id: g.u16(),
            method_id: g.u16(),
        }),
        Which::ConnectionCloseOk => Method::ConnectionCloseOk(ConnectionCloseOk {}),
        Which::ConnectionBlocked => Method::ConnectionBlocked(ConnectionBlocked { reason: g.shortstr() }),
        Which::ConnectionUnblocked => Method::ConnectionUnblocked(ConnectionUnblocked {}),
        Which::ConnectionUpdateSecret => {
            Method::ConnectionUpdateSecret(ConnectionUpdateSecret { new_secret: g.longstr(), reason: g.shortstr() })
        }
        Which::ConnectionUpdateSecretOk => Method::ConnectionUpdateSecretOk(ConnectionUpdateSecretOk {}),
        Which::ChannelOpen => Method::ChannelOpen(ChannelOpen {}),
        Which::ChannelOpenOk => Method::ChannelOpenOk(ChannelOpenOk {}),
        Which::ChannelFlow => Method::ChannelFlow(ChannelFlow { active: g.bit() }),
        Which::ChannelFlowOk => Method::ChannelFlowOk(ChannelFlowOk { active: g.bit() }),
        Which::ChannelClose => Method::ChannelClose(ChannelClose {
            reply_code: g.u16(),
            reply_text: g.shortstr(),
            class_id: g.u16(),
            method_id: g.u16(),
        }),
        Which::ChannelCloseOk => Method::ChannelCloseOk(ChannelCloseOk {}),
        Which::ExchangeDeclare => Method::ExchangeDeclare(ExchangeDeclare {
            exchange: g.shortstr(),
            kind: g.shortstr(),
            passive: g.bit(),
            durable: g.bit(),
            auto_delete: g.bit(),
            internal: g.bit(),
            no_wait: g.bit(),
            arguments: g.table(0),
        }),
        Which::ExchangeDeclareOk => Method::ExchangeDeclareOk(ExchangeDeclareOk {}),
        Which::ExchangeDelete => {
            Method::ExchangeDelete(ExchangeDelete { exchange: g.shortstr(), if_unused: g.bit(), no_wait: g.bit() })
        }
        Which::ExchangeDeleteOk => Method::ExchangeDeleteOk(ExchangeDeleteOk {}),
        Which::ExchangeBind => Method::ExchangeBind(ExchangeBind {
            destination: g.shortstr(),
            source: g.shortstr(),
            routing_key: g.shortstr(),
            no_wait: g.bit(),
            arguments: g.table(0),
        }),
        Which::ExchangeBindOk => Method::ExchangeBindOk(ExchangeBindOk {}),
        Which::ExchangeUnbind => Method::ExchangeUnbind(ExchangeUnbind {
            destination: g.shortstr(),
            source: g.shortstr(),
            routing_key: g.shortstr(),
            no_wait: g.bit(),
            arguments: g.table(0),
        }),
        Which::ExchangeUnbindOk => Method::ExchangeUnbindOk(ExchangeUnbindOk {}),
        Which::QueueDeclare => Method::QueueDeclare(QueueDeclare {
            queue: g.shortstr(),
            passive: g.bit(),
            durable: g.bit(),
            exclusive: g.bit(),
            auto_delete: g.bit(),
            no_wait: g.bit(),
            arguments: g.table(0),
        }),
        Which::QueueDeclareOk => Method::QueueDeclareOk(QueueDeclareOk {
            queue: g.shortstr(),
            message_count: g.u32(),
            consumer_count: g.u32(),
        }),
        Which::QueueBind => Method::QueueBind(QueueBind {
            queue: g.shortstr(),
            exchange: g.shortstr(),
            routing_key: g.shortstr(),
            no_wait: g.bit(),
            arguments: g.table(0),
        }),
        Which::QueueBindOk => Method::QueueBindOk(QueueBindOk {}),
        Which::QueuePurge => Method::QueuePurge(QueuePurge { queue: g.shortstr(), no_wait: g.bit() }),
        Which::QueuePurgeOk => Method::QueuePurgeOk(QueuePurgeOk { message_count: g.u32() }),
        Which::QueueDelete => Method::QueueDelete(QueueDelete {
            queue: g.shortstr(),
            if_unused: g.bit(),
            if_empty: g.bit(),
            no_wait: g.bit(),
        }),
        Which::QueueDeleteOk => Method::QueueDeleteOk(QueueDeleteOk { message_count: g.u32() }),
        Which::QueueUnbind => Method::QueueUnbind(QueueUnbind {
            queue: g.shortstr(),
            exchange: g.shortstr(),
            routing_key: g.shortstr(),
            arguments: g.table(0),
        }),
        Which::QueueUnbindOk => Method::QueueUnbindOk(QueueUnbindOk {}),
        Which::BasicQos => {
            Method::BasicQos(BasicQos { prefetch_size: g.u32(), prefetch_count: g.u16(), global: g.bit() })
        }
        Which::BasicQosOk => Method::BasicQosOk(BasicQosOk {}),
        Which::BasicConsume => Method::BasicConsume(BasicConsume {
            queue: g.shortstr(),
            consumer_tag: g.shortstr(),
            no_local: g.bit(),
            no_ack: g.bit(),
            exclusive: g.bit(),
            no_wait: g.bit(),
            arguments: g.table(0),
        }),
        Which::BasicConsumeOk => Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: g.shortstr() }),
        Which::BasicCancel => Method::BasicCancel(BasicCancel { consumer_tag: g.shortstr(), no_wait: g.bit() }),
        Which::BasicCancelOk => Method::BasicCancelOk(BasicCancelOk { consumer_tag: g.shortstr() }),
        Which::BasicPublish => Method::BasicPublish(BasicPublish {
            exchange: g.shortstr(),
            routing_key: g.shortstr(),
            mandatory: g.bit(),
            immediate: g.bit(),
        }),
        Which::BasicReturn => Method::BasicReturn(BasicReturn {
            reply_code: g.u16(),
            reply_text: g.shortstr(),
            exchange: g.shortstr(),
            routing_key: g.shortstr(),
        }),
        Which::BasicDeliver => Method::BasicDeliver(BasicDeliver {
            consumer_tag: g.shortstr(),
            delivery_tag: g.u64(),
            redelivered: g.bit(),
            exchange: g.shortstr(),
            routing_key: g.shortstr(),
        }),
        Which::BasicGet => Method::BasicGet(BasicGet { queue: g.shortstr(), no_ack: g.bit() }),
        Which::BasicGetOk => Method::BasicGetOk(BasicGetOk {
            delivery_tag: g.u64(),
            redelivered: g.bit(),
            exchange: g.shortstr(),
            routing_key: g.shortstr(),
            message_count: g.u32(),
        }),
        Which::BasicGetEmpty => Method::BasicGetEmpty(BasicGetEmpty {}),
        Which::BasicAck => Method::BasicAck(BasicAck { delivery_tag: g.u64(), multiple: g.bit() }),
        Which::BasicReject => Method::BasicReject(BasicReject { delivery_tag: g.u64(), requeue: g.bit() }),
        Which::BasicRecoverAsync => Method::BasicRecoverAsync(BasicRecoverAsync { requeue: g.bit() }),
        Which::BasicRecover => Method::BasicRecover(BasicRecover { requeue: g.bit() }),
        Which::BasicRecoverOk => Method::BasicRecoverOk(BasicRecoverOk {}),
        Which::BasicNack => Method::BasicNack(BasicNack { delivery_tag: g.u64(), multiple: g.bit(), requeue: g.bit() }),
        Which::ConfirmSelect => Method::ConfirmSelect(ConfirmSelect { nowait: g.bit() }),
        Which::ConfirmSelectOk => Method::ConfirmSelectOk(ConfirmSelectOk {}),
        Which::TxSelect => Method::TxSelect(TxSelect {}),
        Which::TxSelectOk => Method::TxSelectOk(TxSelectOk {}),
        Which::TxCommit => Method::TxCommit(TxCommit {}),
        Which::TxCommitOk => Method::TxCommitOk(TxCommitOk {}),
        Which::TxRollback => Method::TxRollback(TxRollback {}),
        Which::TxRollbackOk => Method::TxRollbackOk(TxRollbackOk {}),
    }
}

/// One Warren-encoded case: its octets and the frames they must decode to.
struct WarrenCase {
    octets: Vec<u8>,
    frames: Vec<Value>,
    /// Whether pamqp must give back the same octets (false for `Gen::free` cases).
    exact: bool,
}

fn warren_case(g: &mut Gen, n: usize, used: &mut BTreeSet<String>) -> WarrenCase {
    let mut buf = BytesMut::new();
    let channel = g.u16();
    g.free = g.chance(15);
    // The first cases go through every method once, so none is left to chance.
    let pick = if n < Which::ALL.len() { 100 } else { g.below(100) };
    let frames = match pick {
        0..=1 => {
            encode_heartbeat(&mut buf);
            vec![frame_json(&Frame::Heartbeat)]
        }
        2..=11 => {
            let header = ContentHeader {
                class_id: BasicProperties::CLASS_ID,
                body_size: g.u64(),
                properties: Box::new(g.properties()),
            };
            encode_content_header(&mut buf, channel, header.body_size, &header.properties);
            vec![frame_json(&Frame::Header { channel, header })]
        }
        12..=19 => {
            // A whole message; body frames carry at most frame_max - 8 octets each (spec 4.2.6).
            let w = CONTENT_METHODS[g.below(4) as usize];
            let method = random_method(g, w);
            let props = g.properties();
            let len = [0, 1, g.below(401)][g.below(3) as usize] as usize;
            let body: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
            let frame_max = [0, 4096, 9 + g.below(92) as u32][g.below(3) as usize];
            encode_content(&mut buf, channel, &method, &props, &body, frame_max);
            let mut frames = vec![
                method_json(channel, &method),
                header_json(channel, BasicProperties::CLASS_ID, len as u64, &props),
            ];
            let chunk = if frame_max == 0 { len.max(1) } else { frame_max as usize - 8 };
            frames.extend(body.chunks(chunk).map(|part| body_json(channel, part)));
            frames
        }
        _ => {
            let w = if n < Which::ALL.len() {
                Which::ALL[n]
            } else {
                Which::ALL[g.below(Which::ALL.len() as u64) as usize]
            };
            let method = random_method(g, w);
            assert_eq!(which(&method), w, "random_method built the wrong method");
            encode_method(&mut buf, channel, &method);
            vec![method_json(channel, &method)]
        }
    };
    let mut decoded = BytesMut::from(&buf[..]);
    while let Some(f) = decode_frame(&mut decoded, 0).expect("Warren decodes its own frames") {
        match f {
            Frame::Method { method, .. } => letters(&serde_json::to_value(&method).expect("serializes"), used),
            Frame::Header { header, .. } => {
                letters(&serde_json::to_value(&header.properties).expect("serializes"), used)
            }
            _ => {}
        }
    }
    WarrenCase { octets: buf.to_vec(), frames, exact: !g.free }
}

#[test]
fn warren_frames_decode_and_reencode_identically_in_pamqp() {
    let Some(mut oracle) = oracle() else { return };
    let start = Instant::now();
    let mut g = Gen::new(SEED_WARREN_TO_PAMQP);
    let mut used = BTreeSet::new();
    let cases: Vec<WarrenCase> = (0..CASES).map(|n| warren_case(&mut g, n, &mut used)).collect();
    assert_letters("Warren → pamqp", &used);
    for letter in ["B", "d"] {
        assert!(used.contains(letter), "Warren → pamqp: no field value of type {letter} was exercised");
    }
    let mut failures = Failures::default();
    for (b, batch) in cases.chunks(BATCH).enumerate() {
        let blobs: Vec<String> = batch.iter().map(|c| hex(&c.octets)).collect();
        let resp = oracle.call(json!({"op": "roundtrip", "blobs": blobs}));
        let results = resp["results"].as_array().expect("results");
        assert_eq!(results.len(), batch.len(), "the oracle answered for {} of {} blobs", results.len(), batch.len());
        for (i, (case, result)) in batch.iter().zip(results).enumerate() {
            let n = b * BATCH + i;
            let label = format!("case {n} ({})", names(&case.frames));
            if let Some(err) = result.get("error") {
                failures.add(format!(
                    "{label}: pamqp could not decode Warren's octets: {err}\n  Warren octets {}",
                    hex(&case.octets)
                ));
                continue;
            }
            if let Some(d) = first_diff(&Value::Array(case.frames.clone()), &result["frames"], "frames") {
                failures.add(format!(
                    "{label}: pamqp decoded other values than Warren encoded\n  {d}\n  Warren octets {}",
                    hex(&case.octets)
                ));
                continue;
            }
            if !case.exact {
                continue;
            }
            let Some(back) = result["hex"].as_str().map(unhex) else {
                failures.add(format!("{label}: pamqp could not re-encode what it decoded: {}", result["encode_error"]));
                continue;
            };
            if back != case.octets {
                failures.add(format!(
                    "{label}: pamqp's re-encoding differs from Warren's encoding\n{}",
                    bytes_diff(&case.octets, &back)
                ));
            }
        }
    }
    let exact = cases.iter().filter(|c| c.exact).count();
    eprintln!(
        "codec_differential: Warren → pamqp: {} cases ({exact} octet-exact, {} values only), {:.2?}",
        cases.len(),
        cases.len() - exact,
        start.elapsed()
    );
    failures.check("Warren → pamqp", cases.len());
}
