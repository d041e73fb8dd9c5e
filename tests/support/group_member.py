"""A librdkafka consumer-group member (confluent-kafka), to share a group with spate members.
Consumes TOPIC in GROUP for SECONDS, printing "partition offset" per record and "assigned P,Q"
per assignment, commits, and leaves.

    python3 group_member.py BOOTSTRAP TOPIC GROUP SECONDS
"""
import sys
import time

from confluent_kafka import Consumer


def main():
    bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "range",
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 500,
    })

    def on_assign(_consumer, partitions):
        print("assigned " + ",".join(str(p.partition) for p in partitions), flush=True)

    c.subscribe([topic], on_assign=on_assign)
    end = time.time() + seconds
    while time.time() < end:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            sys.exit(f"consume error: {m.error()}")
        print(f"{m.partition()} {m.offset()}", flush=True)
    c.close()


main()
