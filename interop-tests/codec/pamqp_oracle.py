#!/usr/bin/env python3
"""pamqp as an independent oracle for Warren's AMQP 0-9-1 codec (tests/codec_differential.rs).

Speaks JSON lines on stdin/stdout: one request per line, one response per line. Every response
has "ok"; on failure {"ok": false, "error": "..."}.

  {"op": "hello"}
      -> {"ok": true, "pamqp": "3.3.0", "python": "3.11.7"}
  {"op": "generate", "seed": S, "count": N}
      -> {"ok": true, "cases": [CASE, ...]}   random frames encoded by pamqp
  {"op": "defaults"}
      -> {"ok": true, "cases": [CASE, ...], "skipped": [...]}
         one frame per pamqp method class built with pamqp's own constructor defaults
  {"op": "roundtrip", "blobs": [HEX, ...]}
      -> {"ok": true, "results": [{"frames": [FRAME, ...], "hex": HEX} | {"error": "..."}]}
         pamqp decodes every frame in each blob, then re-encodes them all; when it can decode
         but not re-encode, "encode_error" replaces "hex"

  CASE  = {"hex": HEX, "frames": [FRAME, ...], "frame_max": N (content only), "exact": BOOL,
           "note": TEXT}
          "frames" are the values Python asked pamqp to encode (not pamqp's decoding of them).
          "exact": false marks frames whose reserved fields are not empty, which Warren (like
          RabbitMQ) does not keep, so only the values are compared.
  FRAME = {"type": "method", "channel": C, "method": "basic.publish", "fields": {...}}
        | {"type": "header", "channel": C, "class_id": 60, "body_size": N, "properties": {...}}
        | {"type": "body", "channel": C, "payload": HEX}
        | {"type": "heartbeat", "channel": 0}

Values are given in Warren's terms (its Serialize output, normalised by the Rust test): spec
field names in snake case (`type` is `kind`), reserved fields left out, absent properties null.
Field tables are lists of [name, VALUE] in wire order, and VALUE is one of {"bool": b},
{"int": n} (all integer letters: pamqp chooses the letter from the magnitude), {"float": HEX of
the IEEE double} ('f' and 'd'), {"dec": [scale, raw]}, {"str": s}, {"bytes": HEX}, {"ts": n},
{"array": [VALUE, ...]}, {"table": [[name, VALUE], ...]}, {"void": null}.

pamqp quirks the generator stays clear of (the Rust side avoids the same ones in its octet-exact
cases; see there):
  * it writes 'b' with an unsigned pack, so it cannot encode table integers -128..-1 at all;
  * it re-encodes every float as 32-bit 'f', so 64-bit 'd' values cannot round trip;
  * 'D' is packed with a *signed* raw value and from str(Decimal), which turns into exponent
    notation (and then loses the scale) once scale > digits + 5; RabbitMQ reads the raw value
    unsigned, so only raw < 2^31 and scale <= digits + 5 are generated;
  * 'T' values above 2^32-1 are read back as milliseconds;
  * table keys are sorted and kept unique (Python dicts) and cut to 128 characters;
  * shortstr/longstr/'S' values must be valid UTF-8 (they become Python str);
  * a present but empty shortstr property is dropped on encode, and an absent cluster-id reads
    back as '': to pamqp the two are one, so '' properties are normalised to absent;
  * longlong method fields (delivery-tag) are signed in pamqp. Values >= 2^63 are passed to
    pamqp as their negative two's complement twin (same octets), and decoded ones are read
    back modulo 2^64.
pamqp's client-side argument validation (name regexes, delivery-mode 1|2, "must be empty") is
policy, not wire format, so it is switched off to let arbitrary values through the codec.
"""

import datetime
import decimal
import json
import logging
import random
import re
import struct
import sys
import traceback

try:
    import pamqp
    from pamqp import base, body, commands, frame, header, heartbeat
except ImportError as exc:  # reported to the test, which skips or fails
    sys.stdout.write(json.dumps({"ok": False, "missing": "pamqp", "error": "cannot import pamqp: %s" % exc}) + "\n")
    sys.stdout.flush()
    sys.exit(3)

if not pamqp.__version__.startswith("3."):
    sys.stdout.write(json.dumps({
        "ok": False, "missing": "pamqp",
        "error": "pamqp %s found, 3.x expected (interop-tests/requirements.txt)" % pamqp.__version__,
    }) + "\n")
    sys.stdout.flush()
    sys.exit(3)


# pamqp warns on stderr when it cuts a long table key while re-encoding a values-only case.
logging.getLogger("pamqp").setLevel(logging.ERROR)


def _no_validation(self):
    return None


for _cls in list(commands.INDEX_MAPPING.values()) + [commands.Basic.Properties]:
    _cls.validate = _no_validation

METHOD_CLASSES = [commands.INDEX_MAPPING[k] for k in sorted(commands.INDEX_MAPPING)]
CONTENT_METHODS = [commands.Basic.Publish, commands.Basic.Return, commands.Basic.Deliver, commands.Basic.GetOk]

# pamqp attribute -> Warren field, where they differ.
RENAMES = {"nowait": "no_wait", "exchange_type": "kind", "global_": "global", "message_type": "kind"}
# Reserved fields per method (pamqp's names); Warren does not expose them and writes them empty.
RESERVED = {
    "Connection.Open": {"capabilities", "insist"},
    "Connection.OpenOk": {"known_hosts"},
    "Channel.Open": {"out_of_band"},
    "Channel.OpenOk": {"channel_id"},
    "Basic.GetEmpty": {"cluster_id"},
}
EMPTY = {"bit": False, "octet": 0, "short": 0, "long": 0, "longlong": 0, "shortstr": "", "longstr": "",
         "table": {}}


def is_reserved(cls, slot):
    return slot == "ticket" or slot in RESERVED.get(cls.name, ())


def warren_field(cls, slot):
    if cls.name == "Confirm.Select":  # the spec itself spells this one `nowait`
        return slot
    return RENAMES.get(slot, slot)


def method_name(cls):
    klass, meth = cls.name.split(".")
    return klass.lower() + "." + re.sub(r"(?<!^)(?=[A-Z])", "-", meth).lower()


# ---------------------------------------------------------------------------------------------
# Normal form of values


def canon(v, sort_keys):
    """A field-table value in the normal form described in the module docstring."""
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"float": struct.pack(">d", v).hex()}
    if isinstance(v, decimal.Decimal):
        sign, digits, exponent = v.as_tuple()
        raw = int("".join(map(str, digits)) or "0")
        return {"dec": [-exponent, -raw if sign else raw]}
    if isinstance(v, str):
        return {"str": v}
    if isinstance(v, (bytes,)):  # pamqp's fallback for an 'S' that is not UTF-8
        return {"str_bytes": v.hex()}
    if isinstance(v, bytearray):
        return {"bytes": bytes(v).hex()}
    if isinstance(v, datetime.datetime):
        return {"ts": int(v.timestamp())}
    if isinstance(v, dict):
        return {"table": canon_table(v, sort_keys)}
    if isinstance(v, list):
        return {"array": [canon(x, sort_keys) for x in v]}
    if v is None:
        return {"void": None}
    raise TypeError("no normal form for %r" % (v,))


def canon_table(t, sort_keys):
    items = sorted(t.items()) if sort_keys else t.items()
    return [[k, canon(v, sort_keys)] for k, v in items]


def canon_field(amqp_type, v, sort_keys):
    if amqp_type == "table":
        return canon_table(v or {}, sort_keys)
    if amqp_type == "longlong":
        return v % (1 << 64)
    if amqp_type == "timestamp":
        return None if v is None else int(v.timestamp())
    if amqp_type == "bit":
        return bool(v)
    if isinstance(v, bytes):  # longstr pamqp could not decode as UTF-8
        return {"str_bytes": v.hex()}
    return v


def method_json(channel, obj, sort_keys):
    cls = type(obj)
    fields = {}
    for slot in cls.__slots__:
        if is_reserved(cls, slot):
            continue
        fields[warren_field(cls, slot)] = canon_field(cls.amqp_type(slot), getattr(obj, slot), sort_keys)
    return {"type": "method", "channel": channel, "method": method_name(cls), "fields": fields}


def properties_json(props, sort_keys):
    out = {}
    for slot in commands.Basic.Properties.__slots__:
        v = getattr(props, slot)
        t = commands.Basic.Properties.amqp_type(slot)
        # pamqp writes no flag for a '' property and leaves an absent cluster_id at '': for it the
        # two are one, so '' reads as absent (and no present-but-empty property is generated).
        absent = v is None or (t == "shortstr" and v == "")
        out[RENAMES.get(slot, slot)] = None if absent else canon_field(t, v, sort_keys)
    return out


def frame_json(channel, obj, sort_keys):
    if isinstance(obj, base.Frame):
        return method_json(channel, obj, sort_keys)
    if isinstance(obj, header.ContentHeader):
        return {"type": "header", "channel": channel, "class_id": obj.class_id,
                "body_size": obj.body_size, "properties": properties_json(obj.properties, sort_keys)}
    if isinstance(obj, body.ContentBody):
        return {"type": "body", "channel": channel, "payload": bytes(obj.value).hex()}
    if isinstance(obj, heartbeat.Heartbeat):
        return {"type": "heartbeat", "channel": channel}
    raise TypeError("unexpected frame %r" % (obj,))


# ---------------------------------------------------------------------------------------------
# Random values pamqp can encode faithfully

# (lowest, highest code point, weight): ASCII, controls, 2-, 3- and 4-octet UTF-8.
CHAR_POOLS = [(0x20, 0x7E, 6), (0x00, 0x1F, 1), (0x80, 0x7FF, 2), (0x800, 0xD7FF, 1), (0xE000, 0xFFFF, 1),
              (0x10000, 0x10FFFF, 1)]
POOL_WEIGHTS = [p[2] for p in CHAR_POOLS]


def text(rng, max_bytes, max_chars=None):
    """A str whose UTF-8 form has at most max_bytes octets, biased to the edges."""
    r = rng.random()
    if r < 0.1:
        target = 0
    elif r < 0.2:
        target = max_bytes
    elif r < 0.6:
        target = rng.randint(1, min(12, max_bytes))
    else:
        target = rng.randint(0, max_bytes)
    out, used = [], 0
    while used < target and (max_chars is None or len(out) < max_chars):
        lo, hi, _ = rng.choices(CHAR_POOLS, POOL_WEIGHTS)[0]
        c = chr(rng.randint(lo, hi))
        n = len(c.encode("utf-8"))
        if used + n > target:
            c, n = chr(rng.randint(0x20, 0x7E)), 1
        out.append(c)
        used += n
    return "".join(out)


def unsigned(rng, bits):
    top = (1 << bits) - 1
    r = rng.random()
    if r < 0.1:
        return rng.choice([0, 1, top, top - 1, 1 << (bits - 1)])
    if r < 0.4:
        return rng.randint(0, min(top, 1000))
    return rng.randint(0, top)


def table_int(rng):
    """An integer of any magnitude pamqp encodes in a table (it picks b s u I i l itself)."""
    edges = [0, 1, 127, 128, -129, 32767, 32768, -32768, -32769, 65535, 65536, 2**31 - 1, 2**31, -2**31,
             -2**31 - 1, 2**32 - 1, 2**32, 2**63 - 1, -2**63]
    while True:
        if rng.random() < 0.25:
            v = rng.choice(edges)
        else:
            lo, hi = rng.choice([(0, 127), (-32768, 32767), (32768, 65535), (-2**31, 2**31 - 1), (2**31, 2**32 - 1),
                                 (-2**63, 2**63 - 1)])
            v = rng.randint(lo, hi)
        if not -128 <= v < 0:  # pamqp packs 'b' unsigned and cannot write these at all
            return v


def f32(rng):
    if rng.random() < 0.2:
        v = rng.choice([0.0, -0.0, 1.5, -2.25, 1e-45, 3.4028234663852886e38, 0.1])
        return struct.unpack(">f", struct.pack(">f", v))[0]  # the f32 nearest v, as pamqp sends it
    while True:
        v = struct.unpack(">f", struct.pack(">I", rng.getrandbits(32)))[0]
        if v == v and abs(v) != float("inf"):
            return v


def decimal_value(rng):
    raw = rng.choice([0, 1, 2**31 - 1, rng.randint(0, 999), rng.randint(0, 2**31 - 1)])
    scale = rng.randint(0, len(str(raw)) + 5)
    return decimal.Decimal(raw).scaleb(-scale)


def timestamp(rng, max_seconds):
    r = rng.random()
    if r < 0.1:
        s = rng.choice([0, 1, min(2**32 - 1, max_seconds), max_seconds])
    else:
        s = rng.randint(0, max_seconds)
    return datetime.datetime.fromtimestamp(s, tz=datetime.timezone.utc)


MAX_DATETIME = 253402300799  # 9999-12-31T23:59:59Z, the last second Python's datetime holds


def field_value(rng, depth):
    kinds = ["bool", "int", "int", "float", "decimal", "str", "bytes", "ts", "void"]
    if depth < 3:
        kinds += ["array", "table"]
    kind = rng.choice(kinds)
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return table_int(rng)
    if kind == "float":
        return f32(rng)
    if kind == "decimal":
        return decimal_value(rng)
    if kind == "str":
        return text(rng, 80)
    if kind == "bytes":
        return bytearray(rng.getrandbits(8) for _ in range(rng.randint(0, 24)))
    if kind == "ts":
        return timestamp(rng, MAX_DATETIME)
    if kind == "void":
        return None
    if kind == "array":
        return [field_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return table(rng, depth + 1)


def table(rng, depth=0):
    t = {}
    for _ in range(rng.randint(0, 6 if depth == 0 else 4)):
        t[text(rng, 255, max_chars=128)] = field_value(rng, depth)
    return t


def method_value(rng, amqp_type):
    """(value handed to pamqp, value expected on the wire) for one method field."""
    if amqp_type == "bit":
        v = rng.random() < 0.5
        return v, v
    if amqp_type == "octet":
        v = unsigned(rng, 8)
        return v, v
    if amqp_type == "short":
        v = unsigned(rng, 16)
        return v, v
    if amqp_type == "long":
        v = unsigned(rng, 32)
        return v, v
    if amqp_type == "longlong":
        v = unsigned(rng, 64)
        return (v - (1 << 64) if v >= 1 << 63 else v), v
    if amqp_type == "shortstr":
        v = text(rng, 255)
        return v, v
    if amqp_type == "longstr":
        v = text(rng, rng.choice([16, 300]))
        return v, v
    if amqp_type == "table":
        v = table(rng)
        return v, canon_table(v, True)
    raise ValueError("no generator for %s" % amqp_type)


def random_method(rng, cls):
    obj = cls.__new__(cls)
    fields = {}
    for slot in cls.__slots__:
        t = cls.amqp_type(slot)
        if is_reserved(cls, slot):
            setattr(obj, slot, EMPTY[t])
            continue
        given, expected = method_value(rng, t)
        setattr(obj, slot, given)
        fields[warren_field(cls, slot)] = expected
    return obj, fields


def random_properties(rng):
    given, expected = {}, {}
    for slot in commands.Basic.Properties.__slots__:
        t = commands.Basic.Properties.amqp_type(slot)
        name = RENAMES.get(slot, slot)
        if rng.random() < 0.5:
            given[slot], expected[name] = None, None
        elif t == "shortstr":
            v = text(rng, 255) or "x"  # pamqp drops a present but empty shortstr
            given[slot], expected[name] = v, v
        elif t == "octet":
            v = unsigned(rng, 8)
            given[slot], expected[name] = v, v
        elif t == "timestamp":
            v = timestamp(rng, MAX_DATETIME)
            given[slot], expected[name] = v, int(v.timestamp())
        elif t == "table":
            v = table(rng)
            given[slot], expected[name] = v, canon_table(v, True)
        else:
            raise ValueError("no generator for property type %s" % t)
    return commands.Basic.Properties(**given), expected


def header_json(channel, body_size, expected_props):
    return {"type": "header", "channel": channel, "class_id": commands.Basic.frame_id, "body_size": body_size,
            "properties": expected_props}


def generate_case(rng):
    r = rng.random()
    channel = unsigned(rng, 16)
    if r < 0.02:
        return {"hex": heartbeat.Heartbeat().marshal().hex(), "frames": [{"type": "heartbeat", "channel": 0}]}
    if r < 0.12:
        props, expected = random_properties(rng)
        body_size = unsigned(rng, 64)
        raw = frame.marshal(header.ContentHeader(0, body_size, props), channel)
        return {"hex": raw.hex(), "frames": [header_json(channel, body_size, expected)]}
    if r < 0.20:
        # A whole message as a client sends it: method, header, body split to fit frame_max.
        obj, fields = random_method(rng, rng.choice(CONTENT_METHODS))
        props, expected = random_properties(rng)
        payload = bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, rng.randint(0, 400)])))
        frame_max = rng.choice([0, 4096, rng.randint(9, 100)])
        chunk = max(frame_max - 8, 1) if frame_max else max(len(payload), 1)
        parts = [payload[i:i + chunk] for i in range(0, len(payload), chunk)]
        raw = frame.marshal(obj, channel) + frame.marshal(header.ContentHeader(0, len(payload), props), channel)
        frames = [{"type": "method", "channel": channel, "method": method_name(type(obj)), "fields": fields},
                  header_json(channel, len(payload), expected)]
        for part in parts:
            raw += frame.marshal(body.ContentBody(part), channel)
            frames.append({"type": "body", "channel": channel, "payload": part.hex()})
        return {"hex": raw.hex(), "frames": frames, "frame_max": frame_max}
    obj, fields = random_method(rng, rng.choice(METHOD_CLASSES))
    return {"hex": frame.marshal(obj, channel).hex(),
            "frames": [{"type": "method", "channel": channel, "method": method_name(type(obj)), "fields": fields}]}


def op_generate(req):
    rng = random.Random(req["seed"])
    cases = []
    for _ in range(req["count"]):
        case = generate_case(rng)
        case["exact"] = True
        cases.append(case)
    return {"ok": True, "cases": cases}


def op_defaults(_req):
    """Frames as pamqp-based clients really send them: every method with pamqp's defaults."""
    cases, skipped = [], []
    for cls in METHOD_CLASSES:
        try:
            obj = cls()
            raw = frame.marshal(obj, 1)
        except Exception as exc:  # a method without defaults for its required fields
            skipped.append("%s: %s" % (cls.name, exc))
            continue
        nonempty = [s for s in cls.__slots__
                    if is_reserved(cls, s) and getattr(obj, s) != EMPTY[cls.amqp_type(s)]]
        case = {"hex": raw.hex(), "frames": [method_json(1, obj, True)], "exact": not nonempty}
        if nonempty:
            case["note"] = "pamqp's default for reserved %s is %s" % (
                ", ".join(nonempty), ", ".join(repr(getattr(obj, s)) for s in nonempty))
        cases.append(case)
    props = commands.Basic.Properties()
    raw = frame.marshal(header.ContentHeader(0, 0, props), 1)
    cases.append({"hex": raw.hex(), "frames": [header_json(1, 0, properties_json(props, True))], "exact": True})
    return {"ok": True, "cases": cases, "skipped": skipped}


def roundtrip(raw):
    decoded, offset = [], 0
    while offset < len(raw):
        consumed, channel, obj = frame.unmarshal(raw[offset:])
        if consumed <= 0:
            raise ValueError("pamqp consumed no octets at offset %d" % offset)
        offset += consumed
        decoded.append((channel, obj))
    result = {"frames": [frame_json(channel, obj, False) for channel, obj in decoded]}
    try:
        result["hex"] = b"".join(frame.marshal(obj, channel) for channel, obj in decoded).hex()
    except Exception as exc:  # values pamqp reads but cannot write, e.g. a 'b' of -1
        result["encode_error"] = "%s: %s" % (type(exc).__name__, exc)
    return result


def op_roundtrip(req):
    results = []
    for blob in req["blobs"]:
        try:
            results.append(roundtrip(bytes.fromhex(blob)))
        except Exception as exc:
            results.append({"error": "%s: %s" % (type(exc).__name__, exc)})
    return {"ok": True, "results": results}


def op_hello(_req):
    return {"ok": True, "pamqp": pamqp.__version__, "python": sys.version.split()[0]}


OPS = {"hello": op_hello, "generate": op_generate, "defaults": op_defaults, "roundtrip": op_roundtrip}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            resp = OPS[req["op"]](req)
        except Exception:
            resp = {"ok": False, "error": traceback.format_exc()}
        sys.stdout.write(json.dumps(resp) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
