"""Confluent's own Schema Registry serializers (confluent-kafka, with librdkafka), the
independent side of spate's Schema Registry tests.

    python3 sr_clients.py produce FORMAT BOOTSTRAP TOPIC REGISTRY SCHEMA_FILE INPUT_FILE [prefix|header]
        Reads JSON objects, one per line, from INPUT_FILE and writes each as a value with
        confluent_kafka's serializer for FORMAT (auto.register.schemas), the schema id in the
        payload prefix (the default) or a `__value_schema_id` header
        (header_schema_id_serializer). FORMAT: `avro` (SCHEMA_FILE: the Avro schema), `json`
        (SCHEMA_FILE: the JSON Schema), `protobuf` (SCHEMA_FILE ignored: the message is
        shop.Order, built below as a descriptor, as generated code would be). Prints
        `produced N`; for protobuf, first each message as MessageToDict prints it.
    python3 sr_clients.py consume FORMAT BOOTSTRAP TOPIC REGISTRY N [READER_SCHEMA_FILE]
        Reads N records from every partition's beginning with confluent_kafka's deserializer
        for FORMAT (Avro: the writer's schema by id, or into the reader schema; JSON: checked
        against the writer's schema; Protobuf: as shop.Order) and prints each value as JSON with
        sorted keys, one per line, in partition then offset order.
"""
import json
import sys

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition, OFFSET_BEGINNING
from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    header_schema_id_serializer,
    prefix_schema_id_serializer,
)
from confluent_kafka.serialization import MessageField, SerializationContext


def order_class():
    """shop.Order, as `protoc` would generate it from tests' order.proto."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf import timestamp_pb2  # noqa: F401 (registers the import)

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="shop/order.proto", package="shop", syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )
    money = fdp.message_type.add(name="Money")
    money.field.add(name="currency", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    money.field.add(name="units", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    order = fdp.message_type.add(name="Order")
    order.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    order.field.add(name="customer", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    order.field.add(name="tags", number=3, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    order.field.add(name="total", number=4, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".shop.Money")
    state = order.enum_type.add(name="State")
    for i, s in enumerate(["NEW", "PAID", "SHIPPED"]):
        state.value.add(name=s, number=i)
    order.field.add(name="state", number=5, type=F.TYPE_ENUM, label=F.LABEL_OPTIONAL,
                    type_name=".shop.Order.State")
    order.field.add(name="at", number=6, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=".google.protobuf.Timestamp")
    line = order.nested_type.add(name="Line")
    line.field.add(name="sku", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    line.field.add(name="qty", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    order.field.add(name="lines", number=7, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                    type_name=".shop.Order.Line")
    entry = order.nested_type.add(name="CountsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    order.field.add(name="counts", number=8, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                    type_name=".shop.Order.CountsEntry")
    pool = descriptor_pool.Default()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))


def as_dict(message):
    from google.protobuf import json_format
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def produce(fmt, bootstrap, topic, registry, schema_file, input_file, placement="prefix"):
    client = SchemaRegistryClient({"url": registry})
    conf = {
        "auto.register.schemas": True,
        "schema.id.serializer": header_schema_id_serializer
        if placement == "header"
        else prefix_schema_id_serializer,
    }
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer
        serializer = AvroSerializer(client, open(schema_file).read(), conf=conf)
        convert = lambda obj: obj  # noqa: E731
    elif fmt == "json":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        serializer = JSONSerializer(open(schema_file).read(), client, conf=conf)
        convert = lambda obj: obj  # noqa: E731
    elif fmt == "protobuf":
        from google.protobuf import json_format
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        Order = order_class()
        serializer = ProtobufSerializer(Order, client, conf)
        convert = lambda obj: json_format.ParseDict(obj, Order())  # noqa: E731
    else:
        sys.exit(f"unknown format {fmt}")
    p = Producer({"bootstrap.servers": bootstrap})
    n = 0
    for line in open(input_file):
        if not line.strip():
            continue
        headers = []
        ctx = SerializationContext(topic, MessageField.VALUE, headers)
        value = convert(json.loads(line))
        if fmt == "protobuf":
            print(json.dumps(as_dict(value), sort_keys=True), flush=True)
        p.produce(topic, value=serializer(value, ctx), headers=headers or None)
        n += 1
    left = p.flush(30)
    if left:
        sys.exit(f"{left} records not delivered")
    print(f"produced {n}", flush=True)


def consume(fmt, bootstrap, topic, registry, n, reader_file=None):
    client = SchemaRegistryClient({"url": registry})
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        reader = open(reader_file).read() if reader_file else None
        deserializer = AvroDeserializer(client, reader)
        convert = lambda v: v  # noqa: E731
    elif fmt == "json":
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer
        deserializer = JSONDeserializer(None, schema_registry_client=client)
        convert = lambda v: v  # noqa: E731
    elif fmt == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        # As generated code: the message class, not the registry's copy of its schema (this
        # test registry keeps schemas as registered and does not convert .proto text to the
        # `format=serialized` descriptors Confluent's registry serves).
        deserializer = ProtobufDeserializer(order_class(), {})
        convert = as_dict
    else:
        sys.exit(f"unknown format {fmt}")
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
        seen[m.partition()].append(convert(deserializer(m.value(), ctx)))
    c.close()
    for p in partitions:
        for value in seen[p]:
            print(json.dumps(value, sort_keys=True), flush=True)


def main():
    mode = sys.argv[1]
    if mode == "produce":
        produce(*sys.argv[2:])
    elif mode == "consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), *sys.argv[7:])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
