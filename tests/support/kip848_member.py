"""A librdkafka member of a KIP-848 group (confluent-kafka, `group.protocol=consumer`).

    python3 kip848_member.py BOOTSTRAP TOPIC GROUP [assignor=uniform|range] [instance=ID]
        [regex=1]

Consumes TOPIC (a regular expression when `regex=1`: librdkafka's `^` prefix), printing one
line per event, flushed:
    assigned T:P,T:P   partitions added to this member (incremental, as KIP-848 hands them)
    revoked T:P,...    partitions taken away; the offsets consumed from them were committed
                       synchronously before this line (as onPartitionsRevoked does)
    lost T:P,...       partitions lost without a chance to commit
    record T P OFFSET  one record
    commit-failed ERR  a commit on revocation failed
    closed             after `close()` (which revokes and commits what it still owns)
It stops when a line `stop` arrives on stdin (then closes, leaving the group) or when stdin
closes. Auto-commit is off: it commits on revocation and every 200 records.
"""
import select
import sys

from confluent_kafka import Consumer, KafkaException


def fmt(partitions):
    return ",".join(f"{p.topic}:{p.partition}" for p in partitions)


def main():
    bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    opts = dict(a.split("=", 1) for a in sys.argv[4:])
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.protocol": "consumer",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if "assignor" in opts:
        config["group.remote.assignor"] = opts["assignor"]
    if "instance" in opts:
        config["group.instance.id"] = opts["instance"]
    c = Consumer(config)

    def on_assign(_consumer, partitions):
        if partitions:
            print("assigned " + fmt(partitions), flush=True)

    def on_revoke(consumer, partitions):
        if not partitions:
            return
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            # Nothing consumed since the last commit is not an error worth a line.
            if "_NO_OFFSET" not in str(e):
                print(f"commit-failed {e}", flush=True)
        print("revoked " + fmt(partitions), flush=True)

    def on_lost(_consumer, partitions):
        print("lost " + fmt(partitions), flush=True)

    subscription = ["^" + topic] if opts.get("regex") == "1" else [topic]
    c.subscribe(subscription, on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    since_commit = 0
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if ready:
            line = sys.stdin.readline()
            if line == "" or line.strip() == "stop":
                break
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            print(f"error {m.error()}", flush=True)
            continue
        print(f"record {m.topic()} {m.partition()} {m.offset()}", flush=True)
        since_commit += 1
        if since_commit >= 200:
            since_commit = 0
            try:
                c.commit(asynchronous=False)
            except KafkaException as e:
                print(f"commit-failed {e}", flush=True)
    c.close()
    print("closed", flush=True)


main()
