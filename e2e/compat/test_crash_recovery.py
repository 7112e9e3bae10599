"""SIGKILL under load: every record the broker acknowledged (acks=1) is still there after
restart, at the offset it was acknowledged with, and each partition's offsets run from 0 to
the high watermark with no gap and no duplicate.

A librdkafka producer (idempotence off, so retries may write a value twice: that is allowed,
a lost or moved acknowledged record is not) sends while the broker is killed; the test
restarts it on the same data directory and port, a few times, within a bounded time.
"""

from __future__ import annotations

import random
import time

from confluent_kafka import Producer

from clients import read_partitions
from support import create_topic, unique_name, wait_for_leaders

PARTITIONS = 3
KILL_CYCLES = 3
LOAD_SECONDS = 20           # producing time over all cycles
MAX_RATE = 20_000           # records/s, so that verification reads a bounded amount


def test_acknowledged_records_survive_sigkill(make_broker):
    broker = make_broker()
    topic = create_topic(broker.bootstrap, unique_name("crash"), PARTITIONS)
    rng = random.Random()

    acked: dict[tuple[int, int], bytes] = {}
    conflicts: list[str] = []
    failed = 0

    def on_delivery(err, msg):
        nonlocal failed
        if err is not None:
            failed += 1
            return
        pos = (msg.partition(), msg.offset())
        if pos in acked and acked[pos] != msg.value():
            conflicts.append(f"{pos}: acked {acked[pos]!r} and then {msg.value()!r}")
        acked[pos] = msg.value()

    producer = Producer({
        "bootstrap.servers": broker.bootstrap,
        "acks": "1",
        "enable.idempotence": False,
        "linger.ms": 2,
        "message.timeout.ms": 30_000,
        "reconnect.backoff.max.ms": 500,
    })
    seq = 0
    per_cycle = LOAD_SECONDS / KILL_CYCLES
    for cycle in range(KILL_CYCLES):
        acked_before = len(acked)
        kill_at = time.monotonic() + rng.uniform(0.4, 0.9) * per_cycle
        sent_this_cycle = 0
        started = time.monotonic()
        while time.monotonic() < kill_at:
            # Pace the load so the rate stays bounded.
            if sent_this_cycle > (time.monotonic() - started) * MAX_RATE:
                producer.poll(0.001)
                continue
            value = f"c{cycle}-{seq:08d}".encode()
            try:
                producer.produce(topic, key=str(seq % 97).encode(), value=value,
                                 on_delivery=on_delivery)
            except BufferError:
                producer.poll(0.01)
                continue
            seq += 1
            sent_this_cycle += 1
            producer.poll(0)
        # Kill while records are in flight, then bring the broker back on the same data.
        broker.kill()
        broker.start()
        wait_for_leaders(broker.bootstrap, topic, PARTITIONS, timeout=120)
        assert producer.flush(60) == 0, "producer could not settle after restart"
        assert len(acked) > acked_before, f"cycle {cycle}: nothing was acknowledged"

    assert not conflicts, conflicts[:5]
    assert acked, "nothing acknowledged"

    stored = read_partitions(broker.bootstrap, topic, range(PARTITIONS))
    for p, records in stored.items():
        offsets = [o for o, _ in records]
        assert offsets == list(range(len(offsets))), (
            f"partition {p}: offsets are not 0..{len(offsets) - 1} without gaps or duplicates")
    at = {(p, o): v for p, records in stored.items() for o, v in records}
    missing = [pos for pos in acked if pos not in at]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    moved = [pos for pos, v in acked.items() if at[pos] != v]
    assert not moved, f"{len(moved)} offsets hold another value than acknowledged: {moved[:5]}"
    print(f"{len(acked)} acknowledged, {failed} failed, {len(at)} stored, {seq} sent")
