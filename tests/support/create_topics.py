"""Creates topics with librdkafka's AdminClient (confluent-kafka), an independent client, and
prints one line per topic: `NAME ok PARTITIONS` or `NAME ERROR_NAME`.

    python3 create_topics.py BOOTSTRAP NAME:PARTITIONS:REPLICATION ... [--validate-only]
"""
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap = sys.argv[1]
    validate = "--validate-only" in sys.argv
    specs = [a for a in sys.argv[2:] if a != "--validate-only"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = []
    for spec in specs:
        name, partitions, replication = spec.rsplit(":", 2)
        topics.append(NewTopic(name, num_partitions=int(partitions),
                               replication_factor=int(replication),
                               config={"cleanup.policy": "compact"}))
    futures = admin.create_topics(topics, validate_only=validate, operation_timeout=10)
    for topic in topics:
        try:
            futures[topic.topic].result(timeout=20)
            print(f"{topic.topic} ok")
        except KafkaException as e:
            print(f"{topic.topic} {e.args[0].name()}")
    if not validate:
        md = admin.list_topics(timeout=10)
        for topic in topics:
            t = md.topics.get(topic.topic)
            if t is not None and t.error is None:
                print(f"{topic.topic} partitions {len(t.partitions)}")


main()
