"""What kafka-python (an independent client, no librdkafka) reports for a consumer group, per
partition of TOPIC: `PARTITION COMMITTED LOG_END LAG` (`-` where nothing is committed).
(Its describe_groups is not used: it fails on the authorized-operations bits tansu sends.)

    python3 kafka_python_group.py BOOTSTRAP GROUP TOPIC
"""
import sys

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition


def main():
    bootstrap, group, topic = sys.argv[1], sys.argv[2], sys.argv[3]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    committed = {tp.partition: meta.offset
                 for tp, meta in admin.list_group_offsets({group: None})[group].items()
                 if tp.topic == topic and meta.offset >= 0}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    ends = consumer.end_offsets(partitions)
    for tp in partitions:
        end = ends[tp]
        c = committed.get(tp.partition)
        lag = "-" if c is None else str(max(end - c, 0))
        print(f"{tp.partition} {'-' if c is None else c} {end} {lag}")
    consumer.close()
    admin.close()


main()
