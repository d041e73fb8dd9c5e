"""Confluent's own Schema Registry serializers (confluent-kafka, with librdkafka), the
independent side of spate's Schema Registry tests.

    python3 sr_clients.py produce BOOTSTRAP TOPIC REGISTRY SCHEMA_FILE INPUT_FILE [prefix|header]
        Reads JSON objects, one per line, from INPUT_FILE; writes each as an Avro value with
        confluent_kafka's AvroSerializer (auto.register.schemas), the schema id in the payload
        prefix (the default) or a `__value_schema_id` header (header_schema_id_serializer);
        prints `produced N`.
    python3 sr_clients.py consume BOOTSTRAP TOPIC REGISTRY N [READER_SCHEMA_FILE]
        Reads N records from every partition's beginning with confluent_kafka's
        AvroDeserializer (the writer's schema by id, or into the reader schema) and prints each
        value as JSON with sorted keys, one per line, in partition then offset order.
"""
import json
import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    header_schema_id_serializer,
    prefix_schema_id_serializer,
)
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def produce(bootstrap, topic, registry, schema_file, input_file, placement="prefix"):
    client = SchemaRegistryClient({"url": registry})
    with open(schema_file) as f:
        schema = f.read()
    conf = {
        "auto.register.schemas": True,
        "schema.id.serializer": header_schema_id_serializer
        if placement == "header"
        else prefix_schema_id_serializer,
    }
    serializer = AvroSerializer(client, schema, conf=conf)
    p = Producer({"bootstrap.servers": bootstrap})
    n = 0
    for line in open(input_file):
        if not line.strip():
            continue
        headers = []
        ctx = SerializationContext(topic, MessageField.VALUE, headers)
        value = serializer(json.loads(line), ctx)
        p.produce(topic, value=value, headers=headers or None)
        n += 1
    left = p.flush(30)
    if left:
        sys.exit(f"{left} records not delivered")
    print(f"produced {n}", flush=True)


def consume(bootstrap, topic, registry, n, reader_file=None):
    client = SchemaRegistryClient({"url": registry})
    reader = open(reader_file).read() if reader_file else None
    deserializer = AvroDeserializer(client, reader)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "spate-sr-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    meta = c.list_topics(topic, timeout=30)
    partitions = sorted(meta.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen = {p: [] for p in partitions}
    at_end = set()
    while sum(len(v) for v in seen.values()) < n or len(at_end) < len(partitions):
        m = c.poll(30)
        if m is None:
            sys.exit(f"no record within 30 s; {sum(len(v) for v in seen.values())} of {n} read")
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                at_end.add(m.partition())
                continue
            sys.exit(f"consumer error: {m.error()}")
        at_end.discard(m.partition())
        ctx = SerializationContext(topic, MessageField.VALUE, m.headers())
        seen[m.partition()].append(deserializer(m.value(), ctx))
    c.close()
    for p in partitions:
        for value in seen[p]:
            print(json.dumps(value, sort_keys=True), flush=True)


def main():
    mode = sys.argv[1]
    if mode == "produce":
        produce(*sys.argv[2:])
    elif mode == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), *sys.argv[6:])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
