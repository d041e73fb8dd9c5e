"""Group administration with librdkafka's AdminClient (confluent-kafka), an independent client.
Runs each command given and prints what it saw, one fact per line:

    python3 group_admin.py BOOTSTRAP COMMAND ...

    list                      `group G STATE` per group
    describe:G                `G state STATE assignor A members N`, then per member
                              `G member CLIENT_ID HOST TOPIC-P,...` (sorted)
    offsets:G                 `G offset TOPIC-P OFFSET` per committed partition (sorted)
    alter:G:TOPIC:P:OFFSET    `G alter ok` or `G alter ERROR_NAME`
    delete:G                  `G delete ok` or `G delete ERROR_NAME`
"""
import sys

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient


def error_name(e):
    err = e.args[0]
    return err.name() if hasattr(err, "name") else str(err)


def main():
    admin = AdminClient({"bootstrap.servers": sys.argv[1]})
    for command in sys.argv[2:]:
        op, _, rest = command.partition(":")
        if op == "list":
            result = admin.list_consumer_groups(request_timeout=10).result()
            for g in sorted(result.valid, key=lambda g: g.group_id):
                print(f"group {g.group_id} {g.state.name}")
        elif op == "describe":
            d = admin.describe_consumer_groups([rest], request_timeout=10)[rest].result()
            print(f"{rest} state {d.state.name} assignor {d.partition_assignor or '-'} "
                  f"members {len(d.members)}")
            lines = []
            for m in d.members:
                tps = sorted(f"{tp.topic}-{tp.partition}"
                             for tp in (m.assignment.topic_partitions if m.assignment else []))
                lines.append(f"{rest} member {m.client_id} {m.host} {','.join(tps) or '-'}")
            for line in sorted(lines):
                print(line)
        elif op == "offsets":
            request = [ConsumerGroupTopicPartitions(rest)]
            result = admin.list_consumer_group_offsets(request, request_timeout=10)[rest].result()
            for tp in sorted(result.topic_partitions, key=lambda tp: (tp.topic, tp.partition)):
                if tp.offset >= 0:
                    print(f"{rest} offset {tp.topic}-{tp.partition} {tp.offset}")
        elif op == "alter":
            group, topic, partition, offset = rest.split(":")
            request = [ConsumerGroupTopicPartitions(
                group, [TopicPartition(topic, int(partition), int(offset))])]
            try:
                result = admin.alter_consumer_group_offsets(request, request_timeout=10)[group]
                tps = result.result().topic_partitions
                errors = [tp.error for tp in tps if tp.error is not None]
                print(f"{group} alter {errors[0].name() if errors else 'ok'}")
            except KafkaException as e:
                print(f"{group} alter {error_name(e)}")
        elif op == "delete":
            try:
                admin.delete_consumer_groups([rest], request_timeout=10)[rest].result()
                print(f"{rest} delete ok")
            except KafkaException as e:
                print(f"{rest} delete {error_name(e)}")
        else:
            sys.exit(f"unknown command {command}")


main()
