"""Reads a whole topic with librdkafka (the confluent-kafka Python client), an independent
Kafka client, and prints one JSON object: per partition, the record count, the first and last
offset, and a SHA-256 over every record's key, value and headers in offset order.

    python3 read_topic.py BOOTSTRAP TOPIC PARTITIONS [isolation.level [values]]

With `values`, it prints instead every record's value (UTF-8), one per line, partition by
partition in offset order.

The digest's layout (spate's tests compute the same over what they sent): per record,
u32-be length (0xffffffff for null) then bytes, for the key and the value; then u32-be header
count, and each header's key and value the same way.
"""
import hashlib
import json
import struct
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def put(h, b):
    if b is None:
        h.update(b"\xff\xff\xff\xff")
    else:
        h.update(struct.pack(">I", len(b)))
        h.update(b)


def main():
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    isolation = sys.argv[4] if len(sys.argv) > 4 else "read_uncommitted"
    values = len(sys.argv) > 5 and sys.argv[5] == "values"
    kept = {p: [] for p in range(partitions)}
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "spate-interop-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
        "fetch.max.bytes": 50 * 1024 * 1024,
        "check.crcs": True,
    })
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = {p: {"count": 0, "first": None, "last": None, "hash": hashlib.sha256()}
           for p in range(partitions)}
    at_eof = set()
    idle = 0
    while len(at_eof) < partitions:
        msgs = c.consume(num_messages=10000, timeout=1.0)
        if not msgs:
            idle += 1
            if idle > 30:
                sys.exit(f"no progress for 30 s; at end of {sorted(at_eof)}")
            continue
        idle = 0
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                sys.exit(f"consume error: {err}")
            p = out[m.partition()]
            at_eof.discard(m.partition())
            p["count"] += 1
            if p["first"] is None:
                p["first"] = m.offset()
            p["last"] = m.offset()
            if values:
                kept[m.partition()].append(m.value().decode())
            h = p["hash"]
            put(h, m.key())
            put(h, m.value())
            headers = m.headers() or []
            h.update(struct.pack(">I", len(headers)))
            for k, v in headers:
                put(h, k.encode())
                put(h, v)
    c.close()
    if values:
        for p in range(partitions):
            for v in kept[p]:
                print(v)
        return
    print(json.dumps({str(p): {"count": v["count"], "first": v["first"], "last": v["last"],
                               "sha256": v["hash"].hexdigest()} for p, v in out.items()}))


main()
