"""Produces COUNT records ("v-<i:06>", partition 0) with librdkafka (the confluent-kafka Python
client) in two halves: after the first half is delivered it prints "half" and waits for a line
on stdin (the test moves the partition's leader meanwhile), then sends the second half and
prints "done <failed deliveries>".

    python3 produce_in_halves.py BOOTSTRAP TOPIC COUNT
"""
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 1,
        "enable.idempotence": True,
    })
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    for half in (range(count // 2), range(count // 2, count)):
        for i in half:
            p.produce(topic, value=b"v-%06d" % i, partition=0, on_delivery=report)
        if p.flush(30):
            sys.exit("records not delivered")
        if half.start == 0:
            print("half", flush=True)
            sys.stdin.readline()
    print("done %d" % len(failed), flush=True)


main()
