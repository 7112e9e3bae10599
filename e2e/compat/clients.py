"""One small interface over the two Python clients, so a test can be parametrized by client.

- kafka-python: pure Python, murmur2 partitioner (as the Java client), Range/RoundRobin
  assignors by default, idempotent producer by default (disabled when acks != all).
- confluent-kafka: librdkafka. For ``acks=all`` the producer here also turns on
  ``enable.idempotence`` (as the Java client does by default), so InitProducerId and
  sequence numbers are exercised; ``acks=1`` is the plain producer.

Records are ``Record(partition, offset, key, value)`` with ``key`` a str (or None) and
``value`` the JSON-decoded object.
"""

from __future__ import annotations

import json
import time
from typing import Iterable, NamedTuple

import kafka
from confluent_kafka import Consumer as CkConsumer
from confluent_kafka import KafkaError
from confluent_kafka import Producer as CkProducer
from confluent_kafka import TopicPartition as CkTopicPartition
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from support import wait_until

CLIENTS = ("kafka-python", "confluent-kafka")
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


class Record(NamedTuple):
    partition: int
    offset: int
    key: str | None
    value: object


def encode(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def decode(raw: bytes | None) -> object:
    return None if raw is None else json.loads(raw.decode())


# ---------------------------------------------------------------------------- produce


def produce(client: str, bootstrap: str, topic: str, items: Iterable[tuple[str | None, object]],
            acks: str = "all", codec: str = "none", pause: float = 0.0,
            timeout: float = 60) -> list[Record]:
    """Sends (key, value) pairs in order and returns what the broker acknowledged."""
    if client == "kafka-python":
        return _produce_kafka_python(bootstrap, topic, items, acks, codec, pause, timeout)
    return _produce_confluent(bootstrap, topic, items, acks, codec, pause, timeout)


def _produce_kafka_python(bootstrap, topic, items, acks, codec, pause, timeout):
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap,
        acks=-1 if acks == "all" else int(acks),
        compression_type=None if codec == "none" else codec,
        key_serializer=lambda k: None if k is None else k.encode(),
        value_serializer=encode,
        linger_ms=5,
        request_timeout_ms=30000,
    )
    try:
        pending = []
        for key, value in items:
            pending.append((key, value, producer.send(topic, key=key, value=value)))
            if pause:
                time.sleep(pause)
        producer.flush(timeout=timeout)
        out = []
        for key, value, future in pending:
            md = future.get(timeout=timeout)
            out.append(Record(md.partition, md.offset, key, value))
        return out
    finally:
        producer.close(timeout=10)


def _produce_confluent(bootstrap, topic, items, acks, codec, pause, timeout):
    conf = {
        "bootstrap.servers": bootstrap,
        "acks": acks,
        "compression.type": codec,
        "linger.ms": 5,
        "enable.idempotence": acks == "all",
        "message.timeout.ms": int(timeout * 1000),
    }
    producer = CkProducer(conf)
    out: list[Record] = []
    errors: list[str] = []

    def on_delivery(err, msg, key, value):
        if err is not None:
            errors.append(f"{key}: {err}")
        else:
            out.append(Record(msg.partition(), msg.offset(), key, value))

    n = 0
    for key, value in items:
        producer.produce(topic, key=None if key is None else key.encode(), value=encode(value),
                         on_delivery=lambda err, msg, k=key, v=value: on_delivery(err, msg, k, v))
        producer.poll(0)
        n += 1
        if pause:
            time.sleep(pause)
    remaining = producer.flush(timeout)
    assert remaining == 0, f"{remaining} messages still queued after {timeout}s"
    assert not errors, f"delivery failed: {errors[:5]}"
    assert len(out) == n
    return out


# ---------------------------------------------------------------------------- consume


KAFKA_PYTHON_MIN_POLL = 0.5


class GroupMember:
    """A subscribed group consumer that can be polled step by step, so one thread can drive
    several members through a rebalance.

    ``strategy`` is a classic assignor (range, roundrobin, cooperative-sticky), or
    ``consumer:<assignor>`` for the consumer group protocol of KIP-848 (librdkafka's
    ``group.protocol=consumer`` with ``group.remote.assignor``: uniform or range)."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str,
                 strategy: str | None = None, auto_commit: bool = False,
                 client_id: str | None = None):
        self.client = client
        self.closed = False
        if client == "kafka-python":
            kw = {}
            if strategy is not None:
                kw["partition_assignment_strategy"] = [{
                    "range": RangePartitionAssignor,
                    "roundrobin": RoundRobinPartitionAssignor,
                    "cooperative-sticky": CooperativeStickyAssignor,
                }[strategy]]
            # kafka-python 3.0.x loses an assignment when poll()'s timer runs out between
            # the SyncGroup response and the assignment being applied, if that rejoin was
            # started by a metadata change (the leader's first join before it knew the
            # topic). Fetching the topic's metadata before subscribing avoids that rejoin,
            # and polls of at least KAFKA_PYTHON_MIN_POLL make the window rare for the others.
            self._c = kafka.KafkaConsumer(
                bootstrap_servers=bootstrap,
                group_id=group,
                client_id=client_id or "kafka-python-e2e",
                auto_offset_reset="earliest",
                enable_auto_commit=auto_commit,
                session_timeout_ms=10000,
                heartbeat_interval_ms=1000,
                key_deserializer=lambda k: None if k is None else k.decode(),
                value_deserializer=decode,
                **kw,
            )
            wait_until(lambda: self._c.partitions_for_topic(topic), 30,
                       f"kafka-python to see the partitions of {topic}", interval=0.2)
            self._c.subscribe([topic])
        else:
            conf = {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": auto_commit,
            }
            if client_id:
                conf["client.id"] = client_id
            if strategy is not None and strategy.startswith("consumer:"):
                # Session and heartbeat timing belong to the broker in this protocol.
                conf["group.protocol"] = "consumer"
                conf["group.remote.assignor"] = strategy.split(":", 1)[1]
            else:
                conf["session.timeout.ms"] = 10000
                conf["heartbeat.interval.ms"] = 1000
                if strategy is not None:
                    conf["partition.assignment.strategy"] = strategy
            self._c = CkConsumer(conf)
            self._c.subscribe([topic])

    def poll(self, timeout: float = 0.2) -> list[Record]:
        if self.client == "kafka-python":
            timeout = max(timeout, KAFKA_PYTHON_MIN_POLL)
            batches = self._c.poll(timeout_ms=int(timeout * 1000))
            return [Record(m.partition, m.offset, m.key, m.value)
                    for msgs in batches.values() for m in msgs]
        out = []
        for m in self._c.consume(num_messages=500, timeout=timeout):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer error: {m.error()}")
            key = m.key()
            out.append(Record(m.partition(), m.offset(), None if key is None else key.decode(),
                              decode(m.value())))
        return out

    def assignment(self) -> set[int]:
        if self.client == "kafka-python":
            return {tp.partition for tp in self._c.assignment()}
        return {tp.partition for tp in self._c.assignment()}

    def commit(self, positions: dict[int, int], topic: str) -> None:
        """Synchronously commits ``{partition: next offset to read}``."""
        if self.client == "kafka-python":
            offsets = {kafka.TopicPartition(topic, p): kafka.OffsetAndMetadata(o, "", -1)
                       for p, o in positions.items()}
            self._c.commit(offsets)
        else:
            self._c.commit(offsets=[CkTopicPartition(topic, p, o) for p, o in positions.items()],
                           asynchronous=False)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._c.close()


def consume(client: str, bootstrap: str, topic: str, group: str, count: int,
            timeout: float = 60, settle: float = 0.0, strategy: str | None = None) -> list[Record]:
    """Consumes from the group's committed position (earliest if none) until ``count``
    records arrived, then keeps polling ``settle`` seconds so that extra records (duplicates,
    records before the committed offset) show up in the result."""
    member = GroupMember(client, bootstrap, topic, group, strategy)
    try:
        out: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            assert time.monotonic() < deadline, (
                f"{client}: got {len(out)} of {count} records from {topic} in {timeout}s")
            out += member.poll(0.5)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            out += member.poll(0.2)
        return out
    finally:
        member.close()


def read_partitions(bootstrap: str, topic: str, partitions: Iterable[int],
                    timeout: float = 60) -> dict[int, list[tuple[int, bytes | None]]]:
    """Reads every partition from offset 0 to its high watermark without a group and
    returns ``{partition: [(offset, raw value), ...]}``."""
    c = CkConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": "e2e-reader-unused",  # required by librdkafka; nothing is committed
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        partitions = list(partitions)
        ends = {}
        for p in partitions:
            # Right after a restart a broker may still answer NOT_LEADER for a moment,
            # which clients retry; so does this.
            ends[p] = wait_until(
                lambda p=p: (c.get_watermark_offsets(CkTopicPartition(topic, p), timeout=5)[1],),
                timeout, f"the high watermark of {topic}-{p}", interval=0.5)[0]
        out: dict[int, list[tuple[int, bytes | None]]] = {p: [] for p in partitions}
        todo = {p for p in partitions if ends[p] > 0}
        if not todo:
            return out
        c.assign([CkTopicPartition(topic, p, 0) for p in todo])
        deadline = time.monotonic() + timeout
        while todo:
            assert time.monotonic() < deadline, f"reading {topic}: partitions {todo} unfinished"
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error() is not None:
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        if m.offset() >= ends[m.partition()]:
                            todo.discard(m.partition())
                        continue
                    raise AssertionError(f"reader error: {m.error()}")
                out[m.partition()].append((m.offset(), m.value()))
                if m.offset() + 1 >= ends[m.partition()]:
                    todo.discard(m.partition())
        return out
    finally:
        c.close()
