"""Real clients against `spate serve`: librdkafka (confluent-kafka) and kafka-python, on topics
created on first use. Prints one line per check, `ok WHAT` or `FAILED WHAT: why`:

    python3 serve_clients.py BOOTSTRAP

- librdkafka produces 200 keyed messages with each codec (none, gzip, snappy, lz4, zstd) to
  an auto-created topic and reads them back, every one, in order per partition;
- two librdkafka consumers in one group share a topic's partitions and read every message
  once between them;
- a librdkafka transactional producer commits, aborts and commits; a read_committed consumer
  sees exactly the committed messages;
- kafka-python produces (none and gzip) and reads back as a group member.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

BOOTSTRAP = sys.argv[1]


def report(what, ok, why=""):
    print(f"ok {what}" if ok else f"FAILED {what}: {why}", flush=True)


def read_all(topic, expected, group, isolation="read_uncommitted", timeout=30):
    c = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation, "check.crcs": True})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    while len(got) < expected and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error() is None:
                got.append((m.partition(), m.offset(), m.key(), m.value()))
    # Anything past the expected count shows too.
    for m in c.consume(num_messages=1000, timeout=1.0):
        if m.error() is None:
            got.append((m.partition(), m.offset(), m.key(), m.value()))
    c.close()
    return got


def codecs():
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        topic = f"auto-{codec}"
        p = Producer({"bootstrap.servers": BOOTSTRAP, "compression.type": codec,
                      "linger.ms": 5, "enable.idempotence": True})
        sent = [(f"k{i % 7}".encode(), f"{codec}-{i}".encode()) for i in range(200)]
        for k, v in sent:
            p.produce(topic, key=k, value=v)
        left = p.flush(30)
        got = read_all(topic, len(sent), f"read-{codec}")
        values = sorted(v for _, _, _, v in got)
        per_partition = {}
        for part, off, _, v in sorted(got, key=lambda g: (g[0], g[1])):
            per_partition.setdefault(part, []).append(int(v.split(b"-")[1]))
        in_order = all(vs == sorted(vs) for vs in per_partition.values())
        report(f"librdkafka {codec}", left == 0 and values == sorted(v for _, v in sent)
               and in_order, f"{len(got)} read of {len(sent)}, in order: {in_order}")


def group():
    topic = "auto-group"
    p = Producer({"bootstrap.servers": BOOTSTRAP})
    for i in range(300):
        p.produce(topic, key=str(i).encode(), value=str(i).encode())
    p.flush(30)
    conf = {"bootstrap.servers": BOOTSTRAP, "group.id": "shared", "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
    a, b = Consumer(dict(conf, **{"client.id": "a"})), Consumer(dict(conf, **{"client.id": "b"}))
    a.subscribe([topic])
    b.subscribe([topic])
    seen = {"a": [], "b": []}
    deadline = time.time() + 60
    while len(seen["a"]) + len(seen["b"]) < 300 and time.time() < deadline:
        for name, c in (("a", a), ("b", b)):
            for m in c.consume(num_messages=100, timeout=0.2):
                if m.error() is None:
                    seen[name].append(int(m.value()))
    both = sorted(seen["a"] + seen["b"])
    shared = bool(a.assignment()) and bool(b.assignment())
    a.close()
    b.close()
    report("librdkafka group", both == list(range(300)) and shared,
           f"{len(both)} read, assignments shared: {shared}")


def transactions():
    topic = "auto-txn"
    p = Producer({"bootstrap.servers": BOOTSTRAP, "transactional.id": "serve-txn"})
    p.init_transactions(30)
    for round_, commit in enumerate([True, False, True]):
        p.begin_transaction()
        for i in range(10):
            p.produce(topic, value=f"{round_}-{i}".encode())
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    got = read_all(topic, 20, "txn-reader", isolation="read_committed")
    values = sorted(v.decode() for _, _, _, v in got)
    expected = sorted([f"0-{i}" for i in range(10)] + [f"2-{i}" for i in range(10)])
    report("librdkafka transactions", values == expected, f"read {values}")


def kafka_python():
    from kafka import KafkaConsumer, KafkaProducer
    for codec in [None, "gzip"]:
        topic = f"auto-kp-{codec or 'none'}"
        p = KafkaProducer(bootstrap_servers=BOOTSTRAP, compression_type=codec)
        for i in range(100):
            p.send(topic, key=b"k", value=str(i).encode())
        p.flush(30)
        p.close()
        c = KafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=f"kp-{codec}",
                          auto_offset_reset="earliest", consumer_timeout_ms=5000)
        got = [int(m.value) for m in c]
        c.close()
        report(f"kafka-python {codec or 'none'}", got == list(range(100)),
               f"read {len(got)}")


for check in (codecs, group, transactions, kafka_python):
    try:
        check()
    except Exception as e:  # a client that fails says so, and the next check still runs
        report(check.__name__, False, repr(e))
