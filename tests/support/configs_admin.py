"""Topic configs with librdkafka's AdminClient (confluent-kafka), an independent client. Runs
each command given and prints what it saw, one fact per line:

    python3 configs_admin.py BOOTSTRAP COMMAND ...

    describe:T[:K,K]          `T NAME=VALUE SOURCE` per config (sorted), or `T describe ERROR`
    alter:T:OP:K=V[;OP:K=V]   incremental alter (OP set, delete, append, subtract):
                              `T alter ok` or `T alter ERROR_NAME MESSAGE`
    validate:T:OP:K=V         the same with validate_only
    create:T:K=V              create topic T (1 partition) with a config: `T create ok|ERROR`
    broker:ID:K               `broker ID K=VALUE` (a broker resource)
"""
import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry,
                                   ConfigResource, NewTopic, ResourceType)

OPS = {"set": AlterConfigOpType.SET, "delete": AlterConfigOpType.DELETE,
       "append": AlterConfigOpType.APPEND, "subtract": AlterConfigOpType.SUBTRACT}


def error(e):
    err = e.args[0]
    if hasattr(err, "name"):
        return f"{err.name()} {err.str()}"
    return str(err)


def alter(admin, topic, spec, validate_only):
    entries = []
    for part in spec.split(";"):
        op, _, kv = part.partition(":")
        key, _, value = kv.partition("=")
        entries.append(ConfigEntry(key, value if op != "delete" else None,
                                   incremental_operation=OPS[op]))
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)
    future = admin.incremental_alter_configs([resource], request_timeout=10,
                                             validate_only=validate_only)[resource]
    try:
        future.result()
        print(f"{topic} alter ok")
    except KafkaException as e:
        print(f"{topic} alter {error(e)}")


def main():
    admin = AdminClient({"bootstrap.servers": sys.argv[1]})
    for command in sys.argv[2:]:
        op, _, rest = command.partition(":")
        if op == "describe":
            topic, _, keys = rest.partition(":")
            resource = ConfigResource(ResourceType.TOPIC, topic)
            try:
                configs = admin.describe_configs([resource], request_timeout=10)[resource].result()
            except KafkaException as e:
                print(f"{topic} describe {error(e)}")
                continue
            wanted = set(keys.split(",")) if keys else None
            for name in sorted(configs):
                if wanted is None or name in wanted:
                    c = configs[name]
                    print(f"{topic} {name}={c.value} {c.source.name if hasattr(c.source, 'name') else c.source}")
        elif op in ("alter", "validate"):
            topic, _, spec = rest.partition(":")
            alter(admin, topic, spec, op == "validate")
        elif op == "create":
            topic, _, kv = rest.partition(":")
            key, _, value = kv.partition("=")
            future = admin.create_topics([NewTopic(topic, 1, 1, config={key: value})],
                                         request_timeout=10)[topic]
            try:
                future.result()
                print(f"{topic} create ok")
            except KafkaException as e:
                print(f"{topic} create {error(e)}")
        elif op == "broker":
            broker, _, key = rest.partition(":")
            resource = ConfigResource(ResourceType.BROKER, broker)
            configs = admin.describe_configs([resource], request_timeout=10)[resource].result()
            print(f"broker {broker} {key}={configs[key].value}")
        else:
            raise SystemExit(f"unknown command {command}")


main()
