"""Grows topics with librdkafka's AdminClient (confluent-kafka), an independent client, and
prints one line per topic: `NAME ok` or `NAME ERROR_NAME`, then `NAME partitions N` for each
topic that exists.

    python3 create_partitions.py BOOTSTRAP NAME:COUNT ... [--validate-only]
"""
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions


def main():
    bootstrap = sys.argv[1]
    validate = "--validate-only" in sys.argv
    specs = [a for a in sys.argv[2:] if a != "--validate-only"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    asked = [NewPartitions(name, int(count))
             for name, count in (s.rsplit(":", 1) for s in specs)]
    futures = admin.create_partitions(asked, validate_only=validate, operation_timeout=10)
    for new in asked:
        try:
            futures[new.topic].result(timeout=20)
            print(f"{new.topic} ok")
        except KafkaException as e:
            print(f"{new.topic} {e.args[0].name()}")
    md = admin.list_topics(timeout=10)
    for new in asked:
        t = md.topics.get(new.topic)
        if t is not None and t.error is None:
            print(f"{new.topic} partitions {len(t.partitions)}")


main()
