"""Writes N records to a topic with librdkafka (the confluent-kafka Python client), an
independent Kafka client, so spate's consumer can be checked against what another client
produced. Record i goes to partition i % PARTITIONS with key b"key-<i % 1000>", value
b"value-<i:09>-" + 60 * b"x", and a header ("seq", i as 8 bytes big-endian) on odd i.

    python3 write_topic.py BOOTSTRAP TOPIC PARTITIONS COUNT CODEC
"""
import struct
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    partitions, count, codec = int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    p = Producer({
        "bootstrap.servers": bootstrap,
        "compression.codec": codec,
        "linger.ms": 5,
        "enable.idempotence": True,
        "queue.buffering.max.messages": 1000000,
    })
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    pad = b"x" * 60
    for i in range(count):
        headers = [("seq", struct.pack(">q", i))] if i % 2 else None
        while True:
            try:
                p.produce(topic, value=b"value-%09d-" % i + pad, key=b"key-%d" % (i % 1000),
                          partition=i % partitions, headers=headers, on_delivery=report)
                break
            except BufferError:
                p.poll(0.1)
        if i % 10000 == 0:
            p.poll(0)
    left = p.flush(60)
    if left or failed:
        sys.exit(f"{left} not delivered; errors: {failed[:3]}")


main()
