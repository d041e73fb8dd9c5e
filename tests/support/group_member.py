"""A librdkafka consumer-group member (confluent-kafka), to share a group with spate members.
Consumes TOPIC in GROUP for SECONDS, printing "partition offset" per record and "assigned P,Q"
per assignment, commits, and leaves.

    python3 group_member.py BOOTSTRAP TOPIC GROUP SECONDS [commit-on-revoke]

With `commit-on-revoke`, auto-commit is off and the revoke callback commits synchronously (as
a Java application's onPartitionsRevoked does), printing "revoke-commit ok" or
"revoke-commit failed: ERROR".
"""
import sys
import time

from confluent_kafka import Consumer


def main():
    bootstrap, topic, group, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    commit_on_revoke = len(sys.argv) > 5 and sys.argv[5] == "commit-on-revoke"
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": "range",
        "enable.auto.commit": not commit_on_revoke,
        "auto.commit.interval.ms": 500,
    })

    def on_assign(_consumer, partitions):
        print("assigned " + ",".join(str(p.partition) for p in partitions), flush=True)

    def on_revoke(consumer, partitions):
        if commit_on_revoke and partitions:
            try:
                consumer.commit(asynchronous=False)
                print("revoke-commit ok", flush=True)
            except Exception as e:  # KafkaException: what the coordinator answered
                print(f"revoke-commit failed: {e}", flush=True)

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
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
