"""Deletes records with librdkafka's AdminClient (confluent-kafka), an independent client, then
reads what is left, and prints one line per partition and fact:

    python3 delete_records.py BOOTSTRAP TOPIC:PARTITION:OFFSET ...

`TOPIC-P low N` (the new low watermark) or `TOPIC-P ERROR_NAME`; then, for each partition
deleted from, `TOPIC-P watermarks LOW HIGH` and `TOPIC-P first OFFSET` (the first record a
consumer reads from the beginning; `none` if it reads nothing).
"""
import sys

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient


def main():
    bootstrap = sys.argv[1]
    tps = []
    for spec in sys.argv[2:]:
        topic, partition, offset = spec.rsplit(":", 2)
        tps.append(TopicPartition(topic, int(partition), int(offset)))
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_records(tps, operation_timeout=10)
    deleted = []
    for tp in tps:
        name = f"{tp.topic}-{tp.partition}"
        try:
            result = futures[tp].result(timeout=20)
            print(f"{name} low {result.low_watermark}")
            deleted.append(tp)
        except KafkaException as e:
            print(f"{name} {e.args[0].name()}")
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "spate-delete-records-check",
        "enable.auto.commit": False,
    })
    for tp in deleted:
        name = f"{tp.topic}-{tp.partition}"
        low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                   timeout=10)
        print(f"{name} watermarks {low} {high}")
        consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING)])
        first = "none"
        if high > low:
            for _ in range(20):
                m = consumer.poll(1.0)
                if m is not None and m.error() is None:
                    first = str(m.offset())
                    break
        print(f"{name} first {first}")
    consumer.close()


main()
