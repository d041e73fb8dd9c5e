"""A librdkafka transactional producer (the confluent-kafka Python client) whose transaction
outlives its transaction.timeout.ms, to check that the embedded cluster aborts it and fences the
producer as Apache Kafka's transaction coordinator does.

    python3 txn_timeout.py BOOTSTRAP TOPIC TIMEOUT_MS

Writes 10 records in a transaction, prints "open", waits for a line on stdin (the test sends it
once the coordinator has aborted the transaction), tries to commit, and prints "committed" or
"error NAME fatal=BOOL abortable=BOOL".
"""
import sys

from confluent_kafka import KafkaException, Producer


def main():
    bootstrap, topic, timeout_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": "librdkafka-timeout",
        "transaction.timeout.ms": timeout_ms,
        "linger.ms": 0,
    })
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=b"never-%d" % i, partition=0)
    if p.flush(30):
        sys.exit("records not delivered")
    print("open", flush=True)
    sys.stdin.readline()
    try:
        p.commit_transaction(30)
        print("committed", flush=True)
    except KafkaException as e:
        err = e.args[0]
        print(f"error {err.name()} fatal={err.fatal()} abortable={err.txn_requires_abort()}",
              flush=True)


main()
