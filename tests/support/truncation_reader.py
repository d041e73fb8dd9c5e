"""A librdkafka consumer (confluent-kafka) reading partition 0 of TOPIC from the beginning,
for checking how the embedded cluster answers around an unclean election (KIP-320: leader
epochs, FENCED_LEADER_EPOCH, OffsetForLeaderEpoch). Prints one line per event, flushed:
"record OFFSET VALUE", "eof OFFSET", "error NAME MESSAGE", until it has run SECONDS.

    python3 truncation_reader.py BOOTSTRAP TOPIC RESET SECONDS
"""
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition


def main():
    bootstrap, topic, reset, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "spate-truncation-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": reset,
        "topic.metadata.refresh.interval.ms": 1000,
        "fetch.wait.max.ms": 100,
    })
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    end = time.time() + seconds
    while time.time() < end:
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                print(f"eof {m.offset()}", flush=True)
            else:
                print(f"error {m.error().name()} {m.error().str()}", flush=True)
            continue
        print(f"record {m.offset()} {m.value().decode()}", flush=True)
    c.close()


main()
