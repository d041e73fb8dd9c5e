"""librdkafka (confluent-kafka) authenticating to `spate serve`: the independent check of the
embedded cluster's SASL (and TLS) server side. Prints one line per check:

    python3 sasl_clients.py BOOTSTRAP USER PASSWORD TOKEN_URL CLIENT_ID CLIENT_SECRET [CA_PEM]

- `ok NAME`: with these settings librdkafka produced 20 messages to topic `rd-NAME` and read
  every one back;
- `refused NAME: message`: with a wrong password (or client secret) librdkafka got no
  connection, and the error it reports;
- `FAILED NAME: why` otherwise.

NAME is PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (unsecured JWT, librdkafka's
`enable.sasl.oauthbearer.unsecure.jwt`) and OIDC (librdkafka's client-credentials flow against
TOKEN_URL). With CA_PEM the listener is SASL_SSL and only SCRAM-SHA-512 is tried.
"""
import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

BOOTSTRAP, USER, PASSWORD, TOKEN_URL, CLIENT_ID, CLIENT_SECRET = sys.argv[1:7]
CA = sys.argv[7] if len(sys.argv) > 7 else None


def settings(name, password=PASSWORD, secret=CLIENT_SECRET):
    s = {"bootstrap.servers": BOOTSTRAP,
         "security.protocol": "sasl_ssl" if CA else "sasl_plaintext"}
    if CA:
        s["ssl.ca.location"] = CA
    if name in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        s.update({"sasl.mechanism": name, "sasl.username": USER, "sasl.password": password})
    elif name == "OAUTHBEARER":
        s.update({"sasl.mechanism": "OAUTHBEARER",
                  "enable.sasl.oauthbearer.unsecure.jwt": True,
                  "sasl.oauthbearer.config": f"principal={USER}"})
    elif name == "OIDC":
        s.update({"sasl.mechanism": "OAUTHBEARER", "sasl.oauthbearer.method": "oidc",
                  "sasl.oauthbearer.client.id": CLIENT_ID,
                  "sasl.oauthbearer.client.secret": secret,
                  "sasl.oauthbearer.token.endpoint.url": TOKEN_URL})
    return s


def round_trip(name):
    topic = f"rd-{name}"
    p = Producer({**settings(name), "linger.ms": 5})
    sent = [f"{name}-{i}".encode() for i in range(20)]
    for v in sent:
        p.produce(topic, value=v)
    left = p.flush(30)
    c = Consumer({**settings(name), "group.id": f"g-{name}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < len(sent) and time.time() < deadline:
        for m in c.consume(num_messages=100, timeout=0.5):
            if m.error() is None:
                got.append(m.value())
    c.close()
    if left == 0 and got == sent:
        print(f"ok {name}", flush=True)
    else:
        print(f"FAILED {name}: {left} unsent, read {len(got)} of {len(sent)}", flush=True)


def refused(name, **wrong):
    """librdkafka reports a refused authentication through its error callback
    (`_AUTHENTICATION`, with the broker's message); wait for it."""
    errors = []
    p = Producer({**settings(name, **wrong), "error_cb": errors.append})
    deadline = time.time() + 15
    while time.time() < deadline and not any(
            e.code() == KafkaError._AUTHENTICATION for e in errors):
        p.poll(0.2)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    try:
        p.list_topics(timeout=2)
        print(f"FAILED {name}: a wrong credential was accepted", flush=True)
        return
    except KafkaException:
        pass
    if auth:
        print(f"refused {name}: {auth[0].str()}", flush=True)
    else:
        print(f"FAILED {name}: no authentication error, only {[str(e) for e in errors]}",
              flush=True)


if CA:
    round_trip("SCRAM-SHA-512")
    refused("SCRAM-SHA-512", password="wrong")
else:
    for name in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "OIDC"]:
        round_trip(name)
    refused("PLAIN", password="wrong")
    refused("SCRAM-SHA-256", password="wrong")
    refused("OIDC", secret="wrong")
