"""A librdkafka share consumer (confluent-kafka 2.16, KIP-932).

    python3 share_member.py BOOTSTRAP TOPIC GROUP [explicit=1] [release=P:O,...]
        [reject=P:O,...] [hold=1] [max=N]

Prints one line per record, flushed: `record PARTITION OFFSET DELIVERY_COUNT`
(the delivery count when librdkafka exposes it, else -1). Implicit acknowledgement unless
`explicit=1`; in explicit mode every record is accepted except those listed in `release`
(released, every time they come) and `reject` (rejected), and with `hold=1` nothing is
acknowledged at all (the records stay acquired until the process dies or their locks expire).
Stops on a `stop` line (closing: pending acknowledgements are sent, the group left) or when
stdin closes; prints `closed`.
"""
import select
import sys

from confluent_kafka import ShareConsumer

try:
    from confluent_kafka import AcknowledgeType
except ImportError:  # older layouts
    from confluent_kafka.cimpl import AcknowledgeType


def parse(spec):
    out = set()
    for item in filter(None, spec.split(",")):
        p, o = item.split(":")
        out.add((int(p), int(o)))
    return out


def main():
    bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]
    opts = dict(a.split("=", 1) for a in sys.argv[4:])
    explicit = opts.get("explicit") == "1"
    release, reject = parse(opts.get("release", "")), parse(opts.get("reject", ""))
    hold = opts.get("hold") == "1"
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "share.acknowledgement.mode": "explicit" if explicit else "implicit",
    }
    if "max" in opts:
        config["max.poll.records"] = int(opts["max"])
    c = ShareConsumer(config)
    c.subscribe([topic])
    holding = False
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 0.2 if holding else 0)
        if ready:
            line = sys.stdin.readline()
            if line == "" or line.strip() == "stop":
                break
        if holding:
            # Explicit mode may not poll again before acknowledging: it just sits on them.
            continue
        messages = c.poll(0.2)
        if messages is None:
            continue
        for m in messages:
            if m.error():
                print(f"error {m.error()}", flush=True)
                continue
            count = -1
            if hasattr(m, "delivery_count"):
                count = m.delivery_count()
            print(f"record {m.partition()} {m.offset()} {count}", flush=True)
            if explicit and not hold:
                key = (m.partition(), m.offset())
                kind = AcknowledgeType.ACCEPT
                if key in release:
                    kind = AcknowledgeType.RELEASE
                elif key in reject:
                    kind = AcknowledgeType.REJECT
                c.acknowledge(m, kind)
        if explicit and not hold:
            c.commit_async()
        if hold and len(messages) > 0:
            holding = True
    if not hold:
        c.close()
    print("closed", flush=True)


main()
