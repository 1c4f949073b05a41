#!/usr/bin/env python3
"""Cross-check spec/amqp-0-9-1.json against an AMQP 0-9-1 XML definition.

Our table is written by hand; this script is how we know it agrees with the protocol's own
definition (Debian's `amqp-specs` package ships it). It compares class and method ids, field
names, field wire types (domains resolved), the synchronous/content flags, constants and reply
codes. Methods that RabbitMQ added and the XML lacks must be marked `"extension": "rabbitmq"`.

usage: check_against_xml.py [XML ...]   (default: the 0-9-1 and 0-9-1-rabbit files from amqp-specs)
exit 0 when they agree, 1 on any difference, 2 when no XML is found.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_XML = [
    "/usr/share/amqp/specs/0-9-1/amqp0-9-1.stripped.xml",
    "/usr/share/amqp/specs/0-9-1-rabbit/amqp0-9-1.stripped.extended.xml",
]
HARD_SOFT = {"hard-error": "connection", "soft-error": "channel"}
# Where RabbitMQ deliberately differs from the plain XML; each entry is (method, key): why.
KNOWN_DEVIATIONS = {
    ("exchange.declare", "fields"): "RabbitMQ gives the XML's reserved-2/reserved-3 bits meaning: auto-delete, internal",
    ("basic.recover", "synchronous"): "RabbitMQ answers basic.recover with recover-ok, so clients wait for it",
}


def load_xml(path):
    root = ET.parse(path).getroot()
    domains = {d.get("name"): d.get("type") for d in root.iter("domain")}
    consts = {c.get("name"): (int(c.get("value")), c.get("class")) for c in root.iter("constant")}
    classes = {}
    for c in root.iter("class"):
        methods = {}
        for mth in c.findall("method"):
            fields = [(f.get("name"), f.get("type") or domains[f.get("domain")]) for f in mth.findall("field")]
            methods[mth.get("name")] = {
                "id": int(mth.get("index")),
                "synchronous": mth.get("synchronous") == "1",
                "content": mth.get("content") == "1",
                "fields": fields,
            }
        props = [(f.get("name"), f.get("type") or domains[f.get("domain")]) for f in c.findall("field")]
        classes[c.get("name")] = {"id": int(c.get("index")), "methods": methods, "properties": props}
    return consts, classes


def check(spec, path):
    errors = []
    consts, classes = load_xml(path)
    ours_consts = {c["name"]: c["value"] for c in spec["constants"]}
    ours_codes = {c["name"]: c for c in spec["reply_codes"]}
    for name, (value, cls) in consts.items():
        if cls in HARD_SOFT or name == "reply-success":
            code = ours_codes.get(name)
            if not code or code["value"] != value:
                errors.append(f"reply code {name}={value} missing or different")
            elif cls and code["scope"] != HARD_SOFT[cls]:
                errors.append(f"reply code {name}: scope {code['scope']} but XML says {cls}")
        elif ours_consts.get(name) != value:
            errors.append(f"constant {name}={value}: ours is {ours_consts.get(name)}")
    for ours in spec["classes"]:
        theirs = classes.get(ours["name"])
        if theirs is None:
            if ours.get("extension") != "rabbitmq":
                errors.append(f"class {ours['name']} not in XML and not marked as an extension")
            continue
        if theirs["id"] != ours["id"]:
            errors.append(f"class {ours['name']}: id {ours['id']} vs XML {theirs['id']}")
        for m in ours["methods"]:
            full = f"{ours['name']}.{m['name']}"
            t = theirs["methods"].get(m["name"])
            if t is None:
                if m.get("extension") != "rabbitmq" and ours.get("extension") != "rabbitmq":
                    errors.append(f"{full} not in XML and not marked as an extension")
                continue
            for key in ("id", "synchronous", "content"):
                if t[key] != m[key] and (full, key) not in KNOWN_DEVIATIONS:
                    errors.append(f"{full}: {key} {m[key]} vs XML {t[key]}")
            mine = [(f["name"], f["type"]) for f in m["fields"]]
            if mine != t["fields"] and (full, "fields") not in KNOWN_DEVIATIONS:
                errors.append(f"{full}: fields {mine} vs XML {t['fields']}")
        for name in theirs["methods"]:
            if name not in {m["name"] for m in ours["methods"]}:
                errors.append(f"{ours['name']}.{name} is in the XML but not in our table")
        props = [(p["name"], p["type"]) for p in ours.get("properties", [])]
        xml_props = [("cluster-id" if n == "reserved" else n, ty) for n, ty in theirs["properties"]]
        if xml_props and props != xml_props:
            errors.append(f"{ours['name']} properties {props} vs XML {xml_props}")
    for name in classes:
        if name not in {c["name"] for c in spec["classes"]} and name != "access":
            errors.append(f"class {name} is in the XML but not in our table")
    return errors


def main():
    paths = sys.argv[1:] or [p for p in DEFAULT_XML if os.path.exists(p)]
    if not paths:
        print("no AMQP XML found (apt-get install amqp-specs)", file=sys.stderr)
        return 2
    with open(os.path.join(HERE, "amqp-0-9-1.json")) as f:
        spec = json.load(f)
    failed = False
    for path in paths:
        errors = check(spec, path)
        for e in errors:
            print(f"{os.path.basename(path)}: {e}")
        print(f"{path}: {'OK' if not errors else f'{len(errors)} difference(s)'}")
        failed |= bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
