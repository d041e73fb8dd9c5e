"""OffsetDelete with kafka-python's KafkaAdminClient (an independent client; confluent-kafka's
Python AdminClient has no OffsetDelete). Runs each command given, one fact per line:

    python3 kafka_python_offset_delete.py BOOTSTRAP COMMAND ...

    G:TOPIC:P       `G deloffsets TOPIC-P ok|ERROR_NAME`, or `G deloffsets ERROR_NAME` for the
                    group's own error
    offsets:G       `G offset TOPIC-P OFFSET` per committed partition (sorted)
"""
import sys

from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import KafkaError, NoError


def main():
    admin = KafkaAdminClient(bootstrap_servers=sys.argv[1])
    for command in sys.argv[2:]:
        if command.startswith("offsets:"):
            group = command.split(":", 1)[1]
            offsets = admin.list_group_offsets({group: None})[group]
            for tp in sorted(offsets, key=lambda tp: (tp.topic, tp.partition)):
                if offsets[tp].offset >= 0:
                    print(f"{group} offset {tp.topic}-{tp.partition} {offsets[tp].offset}")
            continue
        group, topic, partition = command.split(":")
        try:
            result = admin.delete_group_offsets(group, [TopicPartition(topic, int(partition))])
        except KafkaError as e:
            print(f"{group} deloffsets {type(e).message}")
            continue
        for tp, error in sorted(result.items()):
            print(f"{group} deloffsets {tp.topic}-{tp.partition} "
                  f"{'ok' if error is NoError else error.message}")
    admin.close()


main()
