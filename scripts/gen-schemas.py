#!/usr/bin/env python3
"""Generates src/wire/schema/generated.rs: the layout of every message spate reads or serves,
from Apache Kafka's JSON message definitions.

    scripts/gen-schemas.py KAFKA_CHECKOUT > src/wire/schema/generated.rs
    scripts/gen-schemas.py MESSAGE_DIR "LABEL" > src/wire/schema/generated.rs

KAFKA_CHECKOUT is a checkout of apache/kafka (its clients/src/main/resources/common/message
directory is read). MESSAGE_DIR is a directory holding those JSON files as another project
ships them (kafka-python 3.x carries Kafka 4.x's under kafka/protocol/schemas/resources), and
LABEL says where they come from in the generated file's header. The tables hold only what decoding needs: each field's type, the versions it
exists in, the versions it may be null in, and its tag if it is a tagged field. spate's bounds
walk (src/wire/schema/mod.rs) checks every frame against them before anything is allocated.

To add an API: add its name to APIS below, regenerate, and extend SUPPORTED_APIS; the test
`every_api_spate_speaks_has_a_schema` fails until the tables cover it.
"""
import json
import os
import re
import subprocess
import sys

# Request/response pairs, by the name Kafka's JSON files use (FooRequest.json, FooResponse.json).
APIS = [
    "Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch",
    "FindCoordinator", "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup", "DescribeGroups",
    "ListGroups", "SaslHandshake", "ApiVersions", "CreateTopics", "DeleteTopics",
    "InitProducerId", "OffsetForLeaderEpoch", "AddPartitionsToTxn", "AddOffsetsToTxn", "EndTxn",
    "TxnOffsetCommit", "DescribeConfigs", "SaslAuthenticate", "ConsumerGroupHeartbeat",
    "ShareGroupHeartbeat", "ShareFetch", "ShareAcknowledge", "DeleteRecords",
    "DeleteGroups", "CreatePartitions", "IncrementalAlterConfigs", "OffsetDelete",
]
# Other messages: the consumer protocol's member metadata and the request header.
DATA = ["ConsumerProtocolSubscription", "ConsumerProtocolAssignment", "RequestHeader"]

PRIMITIVES = {
    "bool": "Bool", "int8": "Int8", "int16": "Int16", "uint16": "Uint16", "int32": "Int32",
    "uint32": "Uint32", "int64": "Int64", "float64": "Float64", "uuid": "Uuid",
    "string": "String", "bytes": "Bytes", "records": "Records",
}
MAX = 32767


def strip_comments(text):
    """Kafka's message files are JSON with // comments (never inside strings we need, but an
    "about" text may hold a URL, so strings are skipped properly)."""
    out, i, n, in_str = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def versions(spec):
    """"0+", "3-5", "7", "none" or missing -> (min, max); none is (MAX, -1): contains nothing."""
    if spec is None or spec == "none" or spec == "":
        return (MAX, -1)
    spec = spec.strip()
    if spec.endswith("+"):
        return (int(spec[:-1]), MAX)
    if "-" in spec:
        lo, hi = spec.split("-")
        return (int(lo), int(hi))
    return (int(spec), int(spec))


def snake(name):
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    return s.lower()


def vers(v):
    lo, hi = v
    if lo > hi:
        return "NONE"
    return "V(%d, %s)" % (lo, "MAX" if hi == MAX else str(hi))


class Gen:
    def __init__(self, message):
        self.message = message
        self.structs = {}
        for s in message.get("commonStructs", []):
            self.structs[s["name"]] = s["fields"]
        self.collect(message.get("fields", []))

    def collect(self, fields):
        for f in fields:
            if "fields" in f:
                name = f["type"][2:] if f["type"].startswith("[]") else f["type"]
                self.structs[name] = f["fields"]
                self.collect(f["fields"])

    def ty(self, t, depth):
        if t.startswith("[]"):
            return "Ty::Array(&%s)" % self.ty(t[2:], depth)
        if t in PRIMITIVES:
            return "Ty::" + PRIMITIVES[t]
        if t not in self.structs:
            raise SystemExit("%s: unknown type %s" % (self.message["name"], t))
        return "Ty::Struct(&%s)" % self.fields(self.structs[t], depth + 1)

    def fields(self, fields, depth):
        pad = "    " * (depth + 1)
        items = []
        for f in fields:
            item = 'f("%s", %s, %s)' % (snake(f["name"]), self.ty(f["type"], depth), vers(versions(f.get("versions"))))
            nullable = versions(f.get("nullableVersions"))
            if nullable[0] <= nullable[1]:
                item += ".nullable(%s)" % vers(nullable)
            if "tag" in f:
                item += ".tag(%d)" % f["tag"]
            if "flexibleVersions" in f:
                # A field that keeps its non-compact encoding in flexible versions (the
                # request header's client id).
                item += ".flexible(%s)" % vers(versions(f["flexibleVersions"]))
            items.append(pad + item + ",")
        if not items:
            return "[]"
        return "[\n" + "\n".join(items) + "\n" + "    " * depth + "]"

    def emit(self, const_name):
        m = self.message
        api = m.get("apiKey")
        return "pub(super) static %s: MessageSchema = MessageSchema {\n    name: \"%s\",\n    api_key: %s,\n    valid: %s,\n    flexible: %s,\n    fields: &%s,\n};\n" % (
            const_name,
            m["name"],
            "Some(%d)" % api if api is not None else "None",
            vers(versions(m.get("validVersions"))),
            vers(versions(m.get("flexibleVersions"))),
            self.fields(m.get("fields", []), 1),
        )


# Messages a Kafka message directory may lack (kafka-python's has no KIP-848 or KIP-932 ones;
# Kafka 4.1 serves KIP-932's at v1 only), transcribed beside this script.
EXTRA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "messages")


def load(directory, name):
    path = os.path.join(directory, name + ".json")
    if not os.path.exists(path):
        path = os.path.join(EXTRA, name + ".json")
    with open(path) as fh:
        return json.loads(strip_comments(fh.read()))


def main():
    if len(sys.argv) == 3:
        directory, source = sys.argv[1], sys.argv[2]
    elif len(sys.argv) == 2:
        checkout = sys.argv[1]
        directory = os.path.join(checkout, "clients/src/main/resources/common/message")
        try:
            commit = subprocess.check_output(["git", "-C", checkout, "rev-parse", "HEAD"], text=True).strip()
        except Exception:
            commit = "unknown"
        source = "apache/kafka %s" % commit
    else:
        raise SystemExit(__doc__)
    out = [
        "//! Message layouts, generated by `scripts/gen-schemas.py` from Apache Kafka's JSON message",
        "//! definitions (%s). Do not edit: regenerate." % source,
        "",
        "use super::{f, MessageSchema, Ty, NONE, V};",
        "",
        "const MAX: i16 = i16::MAX;",
        "",
    ]
    requests, responses = [], []
    for api in APIS:
        for kind, bucket in (("Request", requests), ("Response", responses)):
            message = load(directory, api + kind)
            const = snake(api + kind).upper()
            out.append(Gen(message).emit(const))
            bucket.append((message["apiKey"], const))
    for name in DATA:
        out.append(Gen(load(directory, name)).emit(snake(name).upper()))
    out.append("/// Request layouts by API key.")
    out.append("pub(super) static REQUESTS: &[(i16, &MessageSchema)] = &[")
    for key, const in sorted(requests):
        out.append("    (%d, &%s)," % (key, const))
    out.append("];")
    out.append("")
    out.append("/// Response layouts by API key.")
    out.append("pub(super) static RESPONSES: &[(i16, &MessageSchema)] = &[")
    for key, const in sorted(responses):
        out.append("    (%d, &%s)," % (key, const))
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main()
