"""A Kafka Streams application (USERS.md: windowed counts, 5-minute windows advancing by one
minute) against the broker: its internal topics, its consumer group, its repartition purge and
the restore of its state from a compacted changelog topic. The application is
`java/WindowedCounts.java`, run with the Kafka jars from e2e/kafka/install."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from support import create_topic, unique_name, wait_until

APP = Path(__file__).parent / "java" / "WindowedCounts.java"
MINUTE_MS = 60_000
WINDOW_MS = 5 * MINUTE_MS
USERS = ["김민수", "lee", "park-ji"]


class StreamsApp:
    """One run of the Streams application as a child process (stopped with SIGTERM, as a
    deployment would stop it)."""

    def __init__(self, kafka_bin: Path, bootstrap: str, app_id: str, source: str, sink: str,
                 state_dir: Path, log_path: Path):
        kafka_home = kafka_bin.parent
        env = dict(os.environ)
        cmd = ["java", "-Xmx256m",
               f"-Dlog4j2.configurationFile={kafka_home / 'config' / 'tools-log4j2.properties'}",
               "-cp", f"{kafka_home / 'libs'}/*", str(APP),
               bootstrap, app_id, source, sink, str(state_dir)]
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.closed:
            self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"the Streams application exited with {code}:\n{self.log_tail()}"

    def stop(self) -> None:
        """SIGTERM, then asserts that Streams closed every thread in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"SIGTERM ignored for 60 s:\n{self.log_tail()}") from None
        self.log.close()
        lines = self.log_path.read_text(errors="replace").splitlines()
        assert "CLOSED" in lines, \
            f"the application did not close cleanly (exit {self.proc.returncode}):\n{self.log_tail()}"


def page_views(start_ms: int, count: int, first_order: int) -> list[tuple[str, str, int]]:
    """(order id, user, timestamp) every 20 s from start_ms, users taking turns unevenly."""
    return [(f"order-{first_order + i}", USERS[(i * i + i // 3) % len(USERS)],
             start_ms + i * 20_000) for i in range(count)]


def expected_counts(events: list[tuple[str, str, int]]) -> dict[str, str]:
    """What the application must end up with: for each user and each hopping window
    [start, start + 5 min) with start on a minute that holds the event, the number of events."""
    counts: Counter[str] = Counter()
    for _, user, ts in events:
        last_start = ts - ts % MINUTE_MS
        for start in range(last_start, ts - WINDOW_MS, -MINUTE_MS):
            counts[f"{user}@{start}"] += 1
    return {k: str(v) for k, v in counts.items()}


def produce_events(bootstrap: str, topic: str, events: list[tuple[str, str, int]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    for order, user, ts in events:
        p.produce(topic, key=order.encode(), value=user.encode(), timestamp=ts)
    assert p.flush(30) == 0, "not every page view was delivered"


class LatestValues:
    """Follows a topic from the beginning and keeps the latest value of every key."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("r"),
                                  "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.latest: dict[str, str] = {}

    def poll(self) -> dict[str, str]:
        for m in self.consumer.consume(num_messages=1000, timeout=0.5):
            assert m.error() is None, m.error()
            self.latest[m.key().decode()] = m.value().decode()
        return self.latest

    def close(self) -> None:
        self.consumer.close()


def wait_for_counts(app: StreamsApp, output: LatestValues, expected: dict[str, str],
                    timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while output.poll() != expected:
        app.check_alive()
        if time.monotonic() > deadline:
            wrong = {k: (output.latest.get(k), v) for k, v in expected.items()
                     if output.latest.get(k) != v}
            extra = set(output.latest) - set(expected)
            raise AssertionError(f"after {timeout}s, {len(wrong)} windows differ "
                                 f"(got, expected): {dict(list(wrong.items())[:10])}; "
                                 f"unexpected windows: {sorted(extra)[:10]}\n{app.log_tail()}")


def test_streams_windowed_counts_survive_a_restart_with_a_lost_state_dir(broker, kafka_bin,
                                                                          tmp_path):
    bs = broker.bootstrap
    app_id = unique_name("page-view-counts")
    source = create_topic(bs, unique_name("page-views"), 3)
    sink = create_topic(bs, unique_name("page-views-per-5min"), 3)
    # An hour ago, on a minute boundary, so every window is in the past and well inside the
    # changelog's retention.
    t0 = (int(time.time() * 1000) // MINUTE_MS - 60) * MINUTE_MS
    first = page_views(t0, 45, 0)
    produce_events(bs, source, first)

    output = LatestValues(bs, sink, 3)
    app = StreamsApp(kafka_bin, bs, app_id, source, sink, tmp_path / "state-1",
                     tmp_path / "streams-1.log")
    try:
        wait_for_counts(app, output, expected_counts(first), timeout=120)
        internal = [t for t in AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10).topics
                    if t.startswith(app_id + "-")]
        repartition = f"{app_id}-by-user-repartition"
        assert repartition in internal, internal
        # Streams deletes repartition records once their offsets are committed (DeleteRecords).
        watcher = Consumer({"bootstrap.servers": bs, "group.id": unique_name("w")})
        try:
            def purged() -> bool:
                app.check_alive()
                marks = [watcher.get_watermark_offsets(TopicPartition(repartition, p), timeout=5)
                         for p in range(3)]
                return sum(high for _, high in marks) == len(first) and \
                    all(low == high for low, high in marks)
            wait_until(purged, 60, "the repartition topic to be purged up to the committed offsets")
        finally:
            watcher.close()
    finally:
        app.stop()

    admin = AdminClient({"bootstrap.servers": bs})
    changelogs = [t for t in admin.list_topics(timeout=10).topics
                  if t.startswith(app_id + "-") and t.endswith("-changelog")]
    assert len(changelogs) == 1, changelogs
    resource = ConfigResource(ConfigResource.Type.TOPIC, changelogs[0])
    configs = admin.describe_configs([resource])[resource].result(30)
    assert set(configs["cleanup.policy"].value.split(",")) == {"compact", "delete"}

    # The state directory is lost (a new pod without its volume): the counts are restored
    # from the changelog topic, and new page views add to them.
    second = page_views(t0 + len(first) * 20_000, 30, len(first))
    produce_events(bs, source, second)
    app = StreamsApp(kafka_bin, bs, app_id, source, sink, tmp_path / "state-2",
                     tmp_path / "streams-2.log")
    try:
        wait_for_counts(app, output, expected_counts(first + second), timeout=120)
    finally:
        output.close()
        app.stop()
