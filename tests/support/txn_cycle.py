"""A librdkafka transactional producer (the confluent-kafka Python client, which speaks
transactions v1 only: AddPartitionsToTxn, EndTxn below v5) running a cycle of transactions, to
check that the embedded cluster serves v1 clients as Apache Kafka does whatever
`transaction.version` it has finalized.

    python3 txn_cycle.py BOOTSTRAP TOPIC

Commits 5 records ("c1-0".."c1-4"), aborts 5 ("a-0".."a-4"), begins and aborts a transaction
with nothing in it, commits 5 more ("c2-0".."c2-4"), then prints "ok". Any error ends the
script with a message.
"""
import sys

from confluent_kafka import Producer


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": "librdkafka-cycle",
        "linger.ms": 0,
    })
    p.init_transactions(30)
    for prefix, commit in (("c1", True), ("a", False), (None, False), ("c2", True)):
        p.begin_transaction()
        if prefix:
            for i in range(5):
                p.produce(topic, value=b"%s-%d" % (prefix.encode(), i), partition=0)
            if p.flush(30):
                sys.exit("records not delivered")
        if commit:
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    print("ok", flush=True)


main()
