//! Generates the AMQP method structs, the `Method` enum, reply codes, constants and the basic
//! content properties from `spec/amqp-0-9-1.json`.
//!
//! Hand-written method code drifts from the protocol (field order, bit packing, ids such as
//! `exchange.unbind-ok` = 51); generating it from one table keeps the ~64 methods consistent and
//! lets `spec/check_against_xml.py` vouch for that table. The output goes to `$OUT_DIR` and is
//! pulled in by `src/methods.rs` (and `src/strategies.rs` for the property tests), so it can
//! never be stale. `spec/` stays at the repository root, two levels up from this crate, because
//! it is the protocol's table for the whole repository (the XML cross-check reads it there too).

use serde::Deserialize;
use std::fmt::Write as _;
use std::path::Path;

const SPEC: &str = "../../spec/amqp-0-9-1.json";

#[derive(Deserialize)]
struct Spec {
    constants: Vec<Constant>,
    reply_codes: Vec<ReplyCodeDef>,
    classes: Vec<Class>,
}

#[derive(Deserialize)]
struct Constant {
    name: String,
    value: u32,
}

#[derive(Deserialize)]
struct ReplyCodeDef {
    name: String,
    value: u16,
    scope: String,
}

#[derive(Deserialize)]
struct Class {
    name: String,
    id: u16,
    methods: Vec<MethodDef>,
    #[serde(default)]
    properties: Vec<Field>,
}

#[derive(Deserialize)]
struct MethodDef {
    name: String,
    id: u16,
    synchronous: bool,
    content: bool,
    sent_by: String,
    fields: Vec<Field>,
    #[serde(default)]
    responses: Vec<String>,
}

#[derive(Deserialize)]
struct Field {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    reserved: bool,
}

fn camel(s: &str) -> String {
    s.split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn snake(s: &str) -> String {
    match s {
        // `type` is a keyword; lapin and amq-protocol call it `kind` too.
        "type" => "kind".to_string(),
        _ => s.replace('-', "_"),
    }
}

fn screaming(s: &str) -> String {
    s.replace('-', "_").to_ascii_uppercase()
}

fn rust_type(ty: &str) -> &'static str {
    match ty {
        "bit" => "bool",
        "octet" => "u8",
        "short" => "u16",
        "long" => "u32",
        "longlong" | "timestamp" => "u64",
        "shortstr" => "ShortStr",
        "longstr" => "LongStr",
        "table" => "FieldTable",
        other => panic!("unknown field type {other} in {SPEC}"),
    }
}

/// Expression that decodes one value of `ty` from `i` (a `&[u8]` inside `src`).
fn decode_expr(ty: &str) -> &'static str {
    match ty {
        "octet" => "wire::octet(i)",
        "short" => "wire::short(i)",
        "long" => "wire::long(i)",
        "longlong" | "timestamp" => "wire::longlong(i)",
        "shortstr" => "wire::shortstr(src, i)",
        "longstr" => "wire::longstr(src, i)",
        "table" => "wire::table(src, i)",
        other => panic!("no decoder for {other}"),
    }
}

fn encode_stmt(ty: &str, expr: &str) -> String {
    match ty {
        "octet" => format!("buf.put_u8({expr});"),
        "short" => format!("buf.put_u16({expr});"),
        "long" => format!("buf.put_u32({expr});"),
        "longlong" | "timestamp" => format!("buf.put_u64({expr});"),
        "shortstr" => format!("wire::put_shortstr(buf, &{expr});"),
        "longstr" => format!("wire::put_longstr(buf, &{expr});"),
        "table" => format!("wire::put_table(buf, &{expr});"),
        other => panic!("no encoder for {other}"),
    }
}

fn reserved_value(ty: &str) -> &'static str {
    match ty {
        "bit" => "false",
        "octet" | "short" | "long" | "longlong" | "timestamp" => "0",
        "shortstr" => "ShortStr::EMPTY",
        "longstr" => "LongStr::EMPTY",
        "table" => "FieldTable::EMPTY",
        other => panic!("no reserved value for {other}"),
    }
}

fn gen_constants(spec: &Spec, out: &mut String) {
    out.push_str("/// Frame types and sizes from the protocol's constant table.\npub mod constants {\n");
    for c in &spec.constants {
        let ty = if c.value > 255 { "u32" } else { "u8" };
        writeln!(out, "    pub const {}: {ty} = {};", screaming(&c.name), c.value).unwrap();
    }
    out.push_str("}\n\n");
}

fn gen_reply_codes(spec: &Spec, out: &mut String) {
    out.push_str(
        "/// Every AMQP reply code, with whether it is a channel (soft) or connection (hard) error.\n\
         #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\n#[repr(u16)]\npub enum ReplyCode {\n",
    );
    for r in &spec.reply_codes {
        writeln!(out, "    {} = {},", camel(&r.name), r.value).unwrap();
    }
    out.push_str("}\n\nimpl ReplyCode {\n    pub const ALL: &'static [ReplyCode] = &[");
    for r in &spec.reply_codes {
        write!(out, "ReplyCode::{}, ", camel(&r.name)).unwrap();
    }
    out.push_str("];\n\n    pub fn value(self) -> u16 {\n        self as u16\n    }\n\n");
    out.push_str("    pub fn from_u16(v: u16) -> Option<ReplyCode> {\n        match v {\n");
    for r in &spec.reply_codes {
        writeln!(out, "            {} => Some(ReplyCode::{}),", r.value, camel(&r.name)).unwrap();
    }
    out.push_str("            _ => None,\n        }\n    }\n\n");
    out.push_str("    /// The name RabbitMQ puts at the start of reply texts, e.g. `NOT_FOUND`.\n");
    out.push_str("    pub fn name(self) -> &'static str {\n        match self {\n");
    for r in &spec.reply_codes {
        writeln!(out, "            ReplyCode::{} => \"{}\",", camel(&r.name), screaming(&r.name)).unwrap();
    }
    out.push_str("        }\n    }\n\n");
    out.push_str("    /// Whether the spec makes this a channel or a connection exception.\n");
    out.push_str("    pub fn scope(self) -> Scope {\n        match self {\n");
    for r in &spec.reply_codes {
        let scope = match r.scope.as_str() {
            "channel" | "none" => "Channel",
            "connection" => "Connection",
            other => panic!("unknown scope {other}"),
        };
        writeln!(out, "            ReplyCode::{} => Scope::{scope},", camel(&r.name)).unwrap();
    }
    out.push_str("        }\n    }\n}\n\n");
}

fn gen_method_struct(class: &Class, m: &MethodDef, out: &mut String) {
    let name = format!("{}{}", camel(&class.name), camel(&m.name));
    let public: Vec<&Field> = m.fields.iter().filter(|f| !f.reserved).collect();
    writeln!(out, "/// `{}.{}` (class {}, method {}).", class.name, m.name, class.id, m.id).unwrap();
    out.push_str("#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]\n");
    if public.is_empty() {
        writeln!(out, "pub struct {name} {{}}\n").unwrap();
    } else {
        writeln!(out, "pub struct {name} {{").unwrap();
        for f in &public {
            writeln!(out, "    pub {}: {},", snake(&f.name), rust_type(&f.ty)).unwrap();
        }
        out.push_str("}\n\n");
    }
    writeln!(out, "impl {name} {{").unwrap();
    writeln!(out, "    pub const CLASS_ID: u16 = {};\n    pub const METHOD_ID: u16 = {};", class.id, m.id).unwrap();

    // Decoding: bits are packed LSB-first into octets; any non-bit field ends a run of bits.
    writeln!(
        out,
        "\n    #[allow(unused_variables, unused_mut)]\n    fn decode_args<'a>(src: &'a Bytes, i: &'a [u8]) -> wire::PResult<'a, Self> {{"
    )
    .unwrap();
    let mut bit_index = 8; // 8 = no octet of bits is open
    for f in &m.fields {
        let var = if f.reserved { "_".to_string() } else { snake(&f.name) };
        if f.ty == "bit" {
            if bit_index == 8 {
                out.push_str("        let (i, bits) = wire::octet(i)?;\n");
                bit_index = 0;
            }
            writeln!(out, "        let {var} = bits & {:#04x} != 0;", 1u8 << bit_index).unwrap();
            bit_index += 1;
        } else {
            bit_index = 8;
            writeln!(out, "        let (i, {var}) = {}?;", decode_expr(&f.ty)).unwrap();
        }
    }
    write!(out, "        Ok((i, {name} {{").unwrap();
    for f in &public {
        write!(out, " {},", snake(&f.name)).unwrap();
    }
    out.push_str(" }))\n    }\n\n");

    writeln!(out, "    #[allow(unused_variables)]\n    fn encode_args(&self, buf: &mut BytesMut) {{").unwrap();
    let mut open_bits: Vec<String> = Vec::new();
    let flush = |bits: &mut Vec<String>, out: &mut String| {
        if bits.is_empty() {
            return;
        }
        let parts: Vec<String> = bits
            .iter()
            .enumerate()
            .map(|(n, b)| if n == 0 { format!("{b} as u8") } else { format!("({b} as u8) << {n}") })
            .collect();
        writeln!(out, "        buf.put_u8({});", parts.join(" | ")).unwrap();
        bits.clear();
    };
    for f in &m.fields {
        let expr = if f.reserved { reserved_value(&f.ty).to_string() } else { format!("self.{}", snake(&f.name)) };
        if f.ty == "bit" {
            if open_bits.len() == 8 {
                flush(&mut open_bits, out);
            }
            open_bits.push(expr);
        } else {
            flush(&mut open_bits, out);
            writeln!(out, "        {}", encode_stmt(&f.ty, &expr)).unwrap();
        }
    }
    flush(&mut open_bits, out);
    out.push_str("    }\n}\n\n");
    writeln!(
        out,
        "impl From<{name}> for Method {{\n    fn from(m: {name}) -> Method {{\n        Method::{name}(m)\n    }}\n}}\n"
    )
    .unwrap();
}

fn gen_method_enum(spec: &Spec, out: &mut String) {
    let all: Vec<(&Class, &MethodDef, String)> = spec
        .classes
        .iter()
        .flat_map(|c| c.methods.iter().map(move |m| (c, m, format!("{}{}", camel(&c.name), camel(&m.name)))))
        .collect();

    out.push_str("/// Which peer may send a method.\n#[derive(Debug, Clone, Copy, PartialEq, Eq)]\npub enum Sender {\n    Client,\n    Server,\n    Both,\n}\n\n");
    out.push_str("/// Every AMQP 0-9-1 method (with RabbitMQ's extensions) as a typed value.\n");
    out.push_str("#[derive(Debug, Clone, PartialEq, serde::Serialize)]\n#[serde(tag = \"method\", content = \"fields\")]\npub enum Method {\n");
    for (c, m, name) in &all {
        writeln!(out, "    #[serde(rename = \"{}.{}\")]\n    {name}({name}),", c.name, m.name).unwrap();
    }
    out.push_str("}\n\nimpl Method {\n");

    let arms = |out: &mut String, f: &dyn Fn(&Class, &MethodDef, &str) -> String| {
        for (c, m, name) in &all {
            writeln!(out, "            Method::{name}(_) => {},", f(c, m, name)).unwrap();
        }
    };
    out.push_str("    pub fn class_id(&self) -> u16 {\n        match self {\n");
    arms(out, &|c, _, _| c.id.to_string());
    out.push_str("        }\n    }\n\n    pub fn method_id(&self) -> u16 {\n        match self {\n");
    arms(out, &|_, m, _| m.id.to_string());
    out.push_str("        }\n    }\n\n    /// `class.method`, as RabbitMQ names it in errors and logs.\n    pub fn name(&self) -> &'static str {\n        match self {\n");
    arms(out, &|c, m, _| format!("\"{}.{}\"", c.name, m.name));
    out.push_str("        }\n    }\n\n    /// Whether content (header and body frames) follows this method.\n    pub fn has_content(&self) -> bool {\n        match self {\n");
    arms(out, &|_, m, _| m.content.to_string());
    out.push_str("        }\n    }\n\n    /// Whether the sender waits for a reply.\n    pub fn is_synchronous(&self) -> bool {\n        match self {\n");
    arms(out, &|_, m, _| m.synchronous.to_string());
    out.push_str("        }\n    }\n\n    /// The replies the spec allows to this method, as `class.method` names.\n    pub fn responses(&self) -> &'static [&'static str] {\n        match self {\n");
    arms(out, &|c, m, _| {
        let names: Vec<String> = m.responses.iter().map(|r| format!("\"{}.{}\"", c.name, r)).collect();
        format!("&[{}]", names.join(", "))
    });
    out.push_str("        }\n    }\n\n    pub fn sent_by(&self) -> Sender {\n        match self {\n");
    arms(out, &|_, m, _| {
        match m.sent_by.as_str() {
            "client" => "Sender::Client",
            "server" => "Sender::Server",
            "both" => "Sender::Both",
            other => panic!("unknown sender {other}"),
        }
        .to_string()
    });
    out.push_str("        }\n    }\n\n    /// Writes class id, method id and arguments (the payload of a method frame).\n    pub fn encode(&self, buf: &mut BytesMut) {\n        buf.put_u16(self.class_id());\n        buf.put_u16(self.method_id());\n        match self {\n");
    for (_, _, name) in &all {
        writeln!(out, "            Method::{name}(m) => m.encode_args(buf),").unwrap();
    }
    out.push_str("        }\n    }\n\n");

    out.push_str(
        "    /// Decodes the arguments of `class_id`/`method_id` from `args`, which must be exactly\n\
         \x20   /// the rest of the method frame's payload.\n\
         \x20   pub fn decode_args(class_id: u16, method_id: u16, args: &Bytes) -> Result<Method, AmqpError> {\n\
         \x20       let i: &[u8] = &args[..];\n\
         \x20       let parsed = match (class_id, method_id) {\n",
    );
    for (c, m, name) in &all {
        writeln!(
            out,
            "            ({}, {}) => {name}::decode_args(args, i).map(|(rest, m)| (rest, Method::{name}(m))),",
            c.id, m.id
        )
        .unwrap();
    }
    out.push_str(
        "            _ => return Err(unknown_method(class_id, method_id)),\n        };\n\
         \x20       finish_decode(parsed, class_id, method_id)\n    }\n}\n\n",
    );

    out.push_str("/// `class.method` for a class and method id, if the protocol has it.\npub fn method_name(class_id: u16, method_id: u16) -> Option<&'static str> {\n    match (class_id, method_id) {\n");
    for (c, m, _) in &all {
        writeln!(out, "        ({}, {}) => Some(\"{}.{}\"),", c.id, m.id, c.name, m.name).unwrap();
    }
    out.push_str("        _ => None,\n    }\n}\n\n");
    out.push_str("/// Whether a class id belongs to the protocol.\npub fn is_known_class(class_id: u16) -> bool {\n    matches!(class_id, ");
    let ids: Vec<String> = spec.classes.iter().map(|c| c.id.to_string()).collect();
    out.push_str(&ids.join(" | "));
    out.push_str(")\n}\n\n");
}

fn gen_properties(spec: &Spec, out: &mut String) {
    let class = spec.classes.iter().find(|c| c.name == "basic").expect("basic class");
    let props = &class.properties;
    assert!(props.len() <= 15, "more than one flag word of properties is not generated");
    out.push_str("/// The content properties of class `basic` (all optional; presence is the flag bit).\n");
    out.push_str("#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]\npub struct BasicProperties {\n");
    for p in props {
        writeln!(out, "    pub {}: Option<{}>,", snake(&p.name), rust_type(&p.ty)).unwrap();
    }
    out.push_str("}\n\nimpl BasicProperties {\n");
    writeln!(out, "    pub const CLASS_ID: u16 = {};", class.id).unwrap();
    writeln!(out, "    /// Flag bits this class defines (bit 15 is the first property; bit 0 is continuation).")
        .unwrap();
    let mask: u16 = (0..props.len()).map(|n| 1u16 << (15 - n)).sum();
    writeln!(out, "    pub const KNOWN_FLAGS: u16 = {mask:#06x};\n").unwrap();

    out.push_str("    pub fn flags(&self) -> u16 {\n        let mut flags = 0u16;\n");
    for (n, p) in props.iter().enumerate() {
        writeln!(
            out,
            "        if self.{}.is_some() {{\n            flags |= 1 << {};\n        }}",
            snake(&p.name),
            15 - n
        )
        .unwrap();
    }
    out.push_str("        flags\n    }\n\n");

    out.push_str("    /// Writes the flag word and the present properties.\n    pub fn encode(&self, buf: &mut BytesMut) {\n        buf.put_u16(self.flags());\n");
    for p in props {
        let f = snake(&p.name);
        writeln!(
            out,
            "        if let Some(v) = &self.{f} {{\n            {}\n        }}",
            encode_stmt(&p.ty, "*v").replace("&*v", "v")
        )
        .unwrap();
    }
    out.push_str("    }\n\n");

    out.push_str("    /// Decodes the properties given the (first) flag word; `i` follows the flag words.\n");
    out.push_str("    /// In place on the heap: the struct is a few hundred octets, and a boxed one moves\n    /// through the frame and message types as one pointer.\n");
    // Public: the broker's store decodes the properties of stored messages with it.
    out.push_str("    pub fn decode_boxed<'a>(flags: u16, src: &'a Bytes, i: &'a [u8]) -> wire::PResult<'a, Box<Self>> {\n        let mut p = Box::<BasicProperties>::default();\n");
    for (n, p) in props.iter().enumerate() {
        let f = snake(&p.name);
        writeln!(
            out,
            "        let i = if flags & (1 << {}) != 0 {{\n            let (i, v) = {}?;\n            p.{f} = Some(v);\n            i\n        }} else {{\n            i\n        }};",
            15 - n,
            decode_expr(&p.ty)
        )
        .unwrap();
    }
    out.push_str("        Ok((i, p))\n    }\n}\n");
}

/// Proptest strategy expression for one value of `ty` (helpers live in `src/strategies.rs`).
fn strategy_expr(ty: &str) -> &'static str {
    match ty {
        "bit" => "any::<bool>()",
        "octet" => "any::<u8>()",
        "short" => "any::<u16>()",
        "long" => "any::<u32>()",
        "longlong" | "timestamp" => "any::<u64>()",
        "shortstr" => "arb_shortstr()",
        "longstr" => "arb_longstr()",
        "table" => "arb_table()",
        other => panic!("no strategy for {other}"),
    }
}

/// Strategies that produce every method and property set, for the property tests: generated so a
/// method added to the spec is covered without anyone remembering to.
fn gen_strategies(spec: &Spec) -> String {
    let mut out = String::from("// @generated by build.rs from spec/amqp-0-9-1.json. Do not edit.\n\n");
    let mut all = Vec::new();
    for class in &spec.classes {
        for m in &class.methods {
            let name = format!("{}{}", camel(&class.name), camel(&m.name));
            let public: Vec<&Field> = m.fields.iter().filter(|f| !f.reserved).collect();
            let strategy = if public.is_empty() {
                format!("Just(Method::{name}({name} {{}})).boxed()")
            } else {
                let tuple: Vec<&str> = public.iter().map(|f| strategy_expr(&f.ty)).collect();
                let names: Vec<String> = public.iter().map(|f| snake(&f.name)).collect();
                format!(
                    "({},).prop_map(|({},)| Method::{name}({name} {{ {} }})).boxed()",
                    tuple.join(", "),
                    names.join(", "),
                    names.join(", ")
                )
            };
            all.push(strategy);
        }
    }
    out.push_str("/// Any method of the protocol with arbitrary field values.\npub fn arb_method() -> BoxedStrategy<Method> {\n    Union::new(vec![\n");
    for s in &all {
        writeln!(out, "        {s},").unwrap();
    }
    out.push_str("    ])\n    .boxed()\n}\n\n");
    let class = spec.classes.iter().find(|c| c.name == "basic").expect("basic class");
    let props = &class.properties;
    // Proptest tuples stop at 12 elements, so the optional properties come in two halves.
    let (a, b) = props.split_at(props.len() / 2);
    let half = |ps: &[Field]| -> (String, String) {
        let s: Vec<String> = ps.iter().map(|p| format!("proptest::option::of({})", strategy_expr(&p.ty))).collect();
        let n: Vec<String> = ps.iter().map(|p| snake(&p.name)).collect();
        (s.join(", "), n.join(", "))
    };
    let ((sa, na), (sb, nb)) = (half(a), half(b));
    writeln!(
        out,
        "/// Any combination of basic properties, present or absent.\npub fn arb_properties() -> BoxedStrategy<BasicProperties> {{\n    (({sa},), ({sb},))\n        .prop_map(|(({na},), ({nb},))| BasicProperties {{ {na}, {nb} }})\n        .boxed()\n}}"
    )
    .unwrap();
    out
}

fn main() {
    println!("cargo:rerun-if-changed={SPEC}");
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(SPEC).expect("read spec");
    let spec: Spec = serde_json::from_str(&text).expect("parse spec");

    let mut out = String::from("// @generated by build.rs from spec/amqp-0-9-1.json. Do not edit.\n\n");
    gen_constants(&spec, &mut out);
    gen_reply_codes(&spec, &mut out);
    for class in &spec.classes {
        for m in &class.methods {
            gen_method_struct(class, m, &mut out);
        }
    }
    gen_method_enum(&spec, &mut out);
    gen_properties(&spec, &mut out);

    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR");
    std::fs::write(Path::new(&out_dir).join("amqp_generated.rs"), out).expect("write generated code");
    std::fs::write(Path::new(&out_dir).join("amqp_strategies.rs"), gen_strategies(&spec)).expect("write strategies");
}
