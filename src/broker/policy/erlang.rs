//! Values in RabbitMQ's error texts, printed as Erlang's `~p` prints the terms it decoded the
//! JSON into: strings as `<<"binaries">>`, `null` as an atom, objects as maps, floats in
//! Erlang's shortest form. A term too long for its line is broken over several as
//! `io_lib_pretty` breaks it (80 columns, counted from where the term starts in its message):
//! clients and tests compare these texts byte for byte.
//!
//! Only the terms a JSON document can produce are covered, plus the tuples RabbitMQ builds
//! around them (`{Key, Value}`, `{"pcre message", Offset}`). Binaries that are not printable
//! Latin-1 are printed as byte lists on one line (Erlang would break very long ones).

use serde_json::Value;

const LINE: i64 = 80;

/// An Erlang term as `io_lib_pretty` lays it out.
#[derive(Debug, Clone)]
pub enum Term {
    /// Already written: integers, floats, atoms, binaries, strings.
    Leaf(String),
    List(Vec<Term>),
    Tuple(Vec<Term>),
    Map(Vec<(Term, Term)>),
}

impl Term {
    /// An Erlang string (a list of characters): `"text"`, or a list when not printable.
    pub fn string(s: &str) -> Term {
        Term::from_json(&Value::Array(s.bytes().map(Value::from).collect()))
    }

    /// A binary from its bytes.
    pub fn binary(b: &[u8]) -> Term {
        if b.is_empty() {
            return Term::Leaf("<<>>".into());
        }
        if b.iter().all(|&c| printable_latin1(c)) {
            return Term::Leaf(format!("<<{}>>", quoted(b)));
        }
        let bytes: Vec<String> = b.iter().map(u8::to_string).collect();
        Term::Leaf(format!("<<{}>>", bytes.join(",")))
    }

    pub fn integer(n: i64) -> Term {
        Term::Leaf(n.to_string())
    }

    pub fn atom(a: &str) -> Term {
        Term::Leaf(a.to_string())
    }

    /// The term RabbitMQ's JSON decoder makes of `v`.
    pub fn from_json(v: &Value) -> Term {
        match v {
            Value::Null => Term::atom("null"),
            Value::Bool(b) => Term::atom(if *b { "true" } else { "false" }),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => Term::Leaf(i.to_string()),
                (_, Some(u), _) => Term::Leaf(u.to_string()),
                (_, _, Some(f)) => Term::Leaf(float(f)),
                _ => Term::Leaf(n.to_string()),
            },
            Value::String(s) => Term::binary(s.as_bytes()),
            Value::Array(items) => {
                // A list of character codes is a string to Erlang, and printed as one.
                let chars: Option<Vec<u8>> =
                    items.iter().map(|i| i.as_u64().and_then(|c| u8::try_from(c).ok())).collect();
                match chars {
                    Some(c) if !c.is_empty() && c.iter().all(|&c| printable_latin1(c)) => Term::Leaf(quoted(&c)),
                    _ if items.is_empty() => Term::Leaf("[]".into()),
                    _ => Term::List(items.iter().map(Term::from_json).collect()),
                }
            }
            Value::Object(map) if map.is_empty() => Term::Leaf("#{}".into()),
            Value::Object(map) => {
                // Erlang orders binary keys byte by byte.
                let mut pairs: Vec<(&String, &Value)> = map.iter().collect();
                pairs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Term::Map(pairs.into_iter().map(|(k, v)| (Term::binary(k.as_bytes()), Term::from_json(v))).collect())
            }
        }
    }

    /// The term as `~p` prints it when `column` characters precede it on its line.
    pub fn print(&self, column: usize) -> String {
        let node = Node::of(self);
        // io_lib_pretty counts columns from 1.
        let col = column as i64 + 1;
        let pp = Pretty { max: node.len };
        if !node.structured() || node.len < LINE - col {
            return node.write();
        }
        pp.pp(&node, col, (col - 1) as usize, 0, 0)
    }
}

fn printable_latin1(c: u8) -> bool {
    matches!(c, b' '..=b'~' | 0xa0..=0xff | b'\n' | b'\r' | b'\t' | 0x0b | 0x08 | 0x0c | 0x1b)
}

/// `"..."` with Erlang's escapes. Bytes are kept as they are (RabbitMQ's Latin-1 characters
/// go back out as the same bytes, so UTF-8 text survives).
fn quoted(b: &[u8]) -> String {
    let mut out = Vec::with_capacity(b.len() + 2);
    out.push(b'"');
    for &c in b {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x0b => out.extend_from_slice(b"\\v"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x1b => out.extend_from_slice(b"\\e"),
            c => out.push(c),
        }
    }
    out.push(b'"');
    String::from_utf8_lossy(&out).into_owned()
}

/// A float as Erlang writes it: the shortest digits that read back the same, in plain or
/// scientific notation, whichever is shorter (plain on a tie): `100.0`, `1.0e3`, `1.0e-5`.
pub fn float(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string(); // JSON has no such numbers
    }
    let sci = format!("{:e}", f.abs()); // "1.23e5": shortest round-trip digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let (first, rest) = digits.split_at(1);
    let scientific = format!("{first}.{}e{exp}", if rest.is_empty() { "0" } else { rest });
    let plain = if exp >= 0 {
        let point = (exp + 1) as usize;
        if digits.len() <= point {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    } else {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    };
    if plain.len() <= scientific.len() {
        format!("{sign}{plain}")
    } else {
        format!("{sign}{scientific}")
    }
}

/// A term with its flat length, as `io_lib_pretty:print_length` builds it.
struct Node {
    shape: Shape,
    len: i64,
}

enum Shape {
    Leaf(String),
    List(Vec<Node>),
    Tuple(Vec<Node>),
    Map(Vec<Node>),
    /// A map pair; the key's length counts the ` => ` after it.
    Pair(Box<Node>, Box<Node>),
}

impl Node {
    fn of(t: &Term) -> Node {
        let seq = |items: &[Term], acc: i64, f: fn(Vec<Node>) -> Shape| {
            let nodes: Vec<Node> = items.iter().map(Node::of).collect();
            let len = acc + nodes.iter().map(|n| n.len).sum::<i64>() + (nodes.len() as i64 - 1).max(0);
            Node { shape: f(nodes), len }
        };
        match t {
            Term::Leaf(s) => Node { len: s.len() as i64, shape: Shape::Leaf(s.clone()) },
            Term::List(items) => seq(items, 2, Shape::List),
            Term::Tuple(items) => seq(items, 2, Shape::Tuple),
            Term::Map(pairs) => {
                let nodes: Vec<Node> = pairs
                    .iter()
                    .map(|(k, v)| {
                        let (mut k, v) = (Node::of(k), Node::of(v));
                        k.len += 4;
                        Node { len: k.len + v.len, shape: Shape::Pair(Box::new(k), Box::new(v)) }
                    })
                    .collect();
                let len = 3 + nodes.iter().map(|n| n.len).sum::<i64>() + (nodes.len() as i64 - 1).max(0);
                Node { shape: Shape::Map(nodes), len }
            }
        }
    }

    /// `?ATM`: written out already (a leaf), not a structure to lay out.
    fn atomic(&self) -> bool {
        match &self.shape {
            Shape::Leaf(_) => true,
            Shape::Pair(k, v) => k.atomic() && v.atomic(),
            _ => false,
        }
    }

    fn structured(&self) -> bool {
        !matches!(self.shape, Shape::Leaf(_))
    }

    fn write(&self) -> String {
        let join = |nodes: &[Node]| nodes.iter().map(Node::write).collect::<Vec<_>>().join(",");
        match &self.shape {
            Shape::Leaf(s) => s.clone(),
            Shape::List(l) => format!("[{}]", join(l)),
            Shape::Tuple(l) => format!("{{{}}}", join(l)),
            Shape::Map(l) => format!("#{{{}}}", join(l)),
            Shape::Pair(k, v) => format!("{} => {}", k.write(), v.write()),
        }
    }
}

/// `last_depth/2`: how many closing brackets follow the last element.
fn last_depth<T>(rest: &[T], ld: i64) -> i64 {
    if rest.is_empty() {
        ld + 1
    } else {
        0
    }
}

/// The parts of `io_lib_pretty:pp` that JSON-made terms reach (no records, no tagged tuples,
/// no depth limit), with its arithmetic kept as it is there.
struct Pretty {
    /// `M`: the flat length of the whole term (no `max_chars` limit).
    max: i64,
}

impl Pretty {
    fn fits(&self, n: &Node, col: i64, ld: i64, w: i64) -> bool {
        n.len < LINE - col - ld && n.len + w + ld <= self.max
    }

    fn pp(&self, n: &Node, col: i64, ind: usize, ld: i64, w: i64) -> String {
        if self.fits(n, col, ld, w) {
            return n.write();
        }
        match &n.shape {
            Shape::List(l) => format!("[{}]", self.pp_list(l, col + 1, ind + 1, ld, w + 1)),
            Shape::Tuple(l) => format!("{{{}}}", self.pp_list(l, col + 1, ind + 1, ld, w + 1)),
            Shape::Map(pairs) => format!("#{{{}}}", self.pp_map(pairs, col + 2, ind + 2, ld, w + 1)),
            Shape::Leaf(_) | Shape::Pair(..) => n.write(),
        }
    }

    fn pp_list(&self, l: &[Node], col0: i64, ind: usize, ld: i64, w: i64) -> String {
        let Some((first, rest)) = l.split_first() else { return String::new() };
        let (mut out, we) = self.pp_element(first, col0, ind, last_depth(rest, ld), w);
        self.pp_tail(rest, col0, col0 + we, ind, ld, w + we, &mut out, false);
        out
    }

    fn pp_map(&self, pairs: &[Node], col0: i64, ind: usize, ld: i64, w: i64) -> String {
        let Some((first, rest)) = pairs.split_first() else { return String::new() };
        let (mut out, pw) = self.pp_pair(first, col0, ind, last_depth(rest, ld), w);
        self.pp_tail(rest, col0, col0 + pw, ind, ld, pw, &mut out, true);
        out
    }

    /// `pp_tail` and `pp_pairs_tail`: the elements after the first, on the same line while
    /// they are leaves that fit, else each on a line of its own.
    #[allow(clippy::too_many_arguments)]
    fn pp_tail(
        &self,
        l: &[Node],
        col0: i64,
        mut col: i64,
        ind: usize,
        ld: i64,
        mut w: i64,
        out: &mut String,
        pairs: bool,
    ) {
        for (i, e) in l.iter().enumerate() {
            let ld1 = last_depth(&l[i + 1..], ld);
            let elen = 1 + e.len;
            let same_line = e.atomic()
                && if ld1 == 0 {
                    elen + 1 < LINE - col && w + elen < self.max
                } else {
                    elen < LINE - col - ld1 && w + elen + ld1 <= self.max
                };
            if same_line {
                out.push(',');
                out.push_str(&e.write());
                col += elen;
                w += elen;
            } else {
                let (s, width) =
                    if pairs { self.pp_pair(e, col0, ind, ld1, 0) } else { self.pp_element(e, col0, ind, ld1, 0) };
                out.push_str(",\n");
                out.push_str(&" ".repeat(ind));
                out.push_str(&s);
                col = col0 + width;
                w = width;
            }
        }
    }

    fn pp_element(&self, e: &Node, col: i64, ind: usize, ld: i64, w: i64) -> (String, i64) {
        if self.fits(e, col, ld, w) && e.atomic() {
            (e.write(), e.len)
        } else {
            (self.pp(e, col, ind, ld, w), LINE) // forces a new line for what follows
        }
    }

    fn pp_pair(&self, p: &Node, col: i64, ind: usize, ld: i64, w: i64) -> (String, i64) {
        if self.fits(p, col, ld, w) {
            return (p.write(), if p.atomic() { p.len } else { LINE });
        }
        let Shape::Pair(k, v) = &p.shape else { return (p.write(), LINE) };
        // The value goes under the key, 4 further in.
        let key = self.pp(k, col, ind, ld, w);
        let value = self.pp(v, col + 4, ind + 4, ld, 0);
        (format!("{key} =>\n{}{value}", " ".repeat(ind + 4)), LINE)
    }
}
