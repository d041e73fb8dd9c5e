"""A librdkafka producer (the confluent-kafka Python client) through a cluster switch: it
delivers one record, prints "first", waits for a line on stdin (the test replaces the cluster
behind the bootstrap address meanwhile), then delivers COUNT more and prints "done <failed>".

    python3 produce_through_switch.py BOOTSTRAP TOPIC COUNT
"""
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 0,
        "topic.metadata.refresh.interval.ms": 200,
        "metadata.recovery.strategy": "rebootstrap",
        "message.timeout.ms": 20000,
    })
    failed = []

    def report(err, _msg):
        if err is not None:
            failed.append(err)

    p.produce(topic, value=b"first", partition=0, on_delivery=report)
    if p.flush(30) or failed:
        sys.exit("the first record was not delivered: %s" % failed)
    print("first", flush=True)
    sys.stdin.readline()
    for i in range(count):
        p.produce(topic, value=b"v-%d" % i, partition=0, on_delivery=report)
    p.flush(30)
    print("done %d" % len(failed), flush=True)


main()
