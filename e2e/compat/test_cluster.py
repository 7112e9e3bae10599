"""A three-node cluster from Kafka-style ``server.properties`` files, driven with Apache Kafka's
tools and a real client: topics described as Kafka describes them, the metadata quorum as
``kafka-metadata-quorum.sh`` shows it, and a partition leader killed with SIGKILL under an
idempotent ``acks=all`` load without losing or duplicating an acknowledged record.

Each node is a separate process on loopback (``support.Cluster``). With ``E2E_TARGET=kafka``
the same files start three Apache Kafka nodes.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from support import (Cluster, ClusterNode, kafka_storage_format, new_cluster_id, unique_name,
                     wait_until)

# Failover in a test's time: a silent broker is fenced after 3 s (Kafka's default is 9 s).
FAST_FAILOVER = {
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
}


@pytest.fixture
def cluster(tmp_path, kafka_bin):
    c = Cluster(tmp_path, kafka_bin, 3, FAST_FAILOVER)
    try:
        c.start()
        yield c
    finally:
        c.close()


def run(kafka_bin, tool: str, *args: str) -> str:
    out = subprocess.run(
        [str(kafka_bin / tool), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )
    assert out.returncode == 0, f"{tool} {' '.join(args)} failed:\n{out.stdout}"
    return out.stdout


def describe_partitions(kafka_bin, bootstrap: str, topic: str) -> list[dict]:
    """The partition lines of ``kafka-topics.sh --describe``, parsed."""
    out = run(kafka_bin, "kafka-topics.sh", "--bootstrap-server", bootstrap,
              "--describe", "--topic", topic)
    rows = []
    for line in out.splitlines():
        m = re.search(r"Partition: (\d+)\s+Leader: (-?\d+)\s+Replicas: ([\d,]+)\s+Isr: ([\d,]*)",
                      line)
        if m:
            rows.append({
                "partition": int(m[1]),
                "leader": int(m[2]),
                "replicas": [int(x) for x in m[3].split(",")],
                "isr": [int(x) for x in m[4].split(",") if x],
            })
    return rows


def test_topics_and_the_quorum_are_described_as_kafka_describes_them(cluster, kafka_bin):
    topic = unique_name("rf3")
    run(kafka_bin, "kafka-topics.sh", "--bootstrap-server", cluster.bootstrap, "--create",
        "--topic", topic, "--partitions", "6", "--replication-factor", "3")

    def all_in_sync():
        rows = describe_partitions(kafka_bin, cluster.bootstrap, topic)
        ok = len(rows) == 6 and all(sorted(r["isr"]) == sorted(r["replicas"]) for r in rows)
        return rows if ok else None

    rows = wait_until(all_in_sync, 60, "six partitions with three in-sync replicas each")
    for r in rows:
        assert sorted(r["replicas"]) == [1, 2, 3], r
        assert r["leader"] in r["replicas"], r
    assert {r["leader"] for r in rows} == {1, 2, 3}, f"leaders spread over the nodes: {rows}"

    status = run(kafka_bin, "kafka-metadata-quorum.sh", "--bootstrap-server", cluster.bootstrap,
                 "describe", "--status")
    leader = int(re.search(r"LeaderId:\s+(\d+)", status)[1])
    assert leader in (1, 2, 3), status
    voters = re.search(r"CurrentVoters:\s+(.*)", status)[1]
    assert sorted(int(x) for x in re.findall(r'"id":\s*(\d+)', voters)) == [1, 2, 3], status

    replication = run(kafka_bin, "kafka-metadata-quorum.sh", "--bootstrap-server",
                      cluster.bootstrap, "describe", "--replication")
    roles = {int(m[1]): m[2] for m in re.finditer(r"^(\d+)\s.*?\b(Leader|Follower)\b",
                                                   replication, re.M)}
    assert roles == {leader: "Leader", **{n: "Follower" for n in (1, 2, 3) if n != leader}}, \
        replication


def partition_view(bootstrap: str, topic: str):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=10)
    return md.topics[topic].partitions[0]


def rf3_topic(bootstrap: str, prefix: str) -> str:
    """A new topic of one partition, three replicas and `min.insync.replicas=2`, returned once
    all three replicas are in sync."""
    topic = unique_name(prefix)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic] \
        .result(60)
    wait_until(lambda: len(partition_view(bootstrap, topic).isrs) == 3, 60,
               "three in-sync replicas")
    return topic


def quorum_leader(kafka_bin, bootstrap: str) -> int:
    status = run(kafka_bin, "kafka-metadata-quorum.sh", "--bootstrap-server", bootstrap,
                 "describe", "--status")
    return int(re.search(r"LeaderId:\s+(\d+)", status)[1])


@pytest.mark.parametrize("fault", ["kill-leader", "pause-leader", "stop-leader",
                                   "kill-controller"])
def test_no_acknowledged_record_is_lost(cluster, kafka_bin, fault):
    """Acceptance 2 of issue 8, under an idempotent acks=all load with min.insync.replicas=2:
    the partition's leader killed with SIGKILL, paused with SIGSTOP past the session timeout (it
    is fenced, and truncates what it wrote alone when it resumes), stopped with SIGTERM
    (leadership moves first), or the active controller killed. Every acknowledged record is read
    back exactly once and in order, the broker rejoins the ISR, `kafka-leader-election.sh` gives
    the partition back to its preferred replica, and the three replicas' logs end
    byte-identical. A consumer group reads and commits throughout: no record it saw was later
    truncated (each is in the final log at the offset it was read at), and the committed offset
    it reads back never goes backwards."""
    topic = rf3_topic(cluster.bootstrap, "failover")

    acked: dict[int, int] = {}  # value -> offset
    failed: list[str] = []

    def delivered(err, msg):
        if err is not None:
            failed.append(str(err))
        else:
            acked[int(msg.value())] = msg.offset()

    producer = Producer({
        "bootstrap.servers": cluster.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
    })
    total = 6000
    stop = threading.Event()

    def produce():
        for i in range(total):
            if stop.is_set():
                return
            while True:
                try:
                    producer.produce(topic, str(i).encode(), on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
            time.sleep(0.001)
        producer.flush(180)

    writer = threading.Thread(target=produce)
    writer.start()
    watcher = Watcher(cluster.bootstrap, topic)
    try:
        wait_until(lambda: len(acked) >= 1000, 60, "a thousand acknowledged records")
        leader = partition_view(cluster.bootstrap, topic).leader
        victim = quorum_leader(kafka_bin, cluster.bootstrap) if fault == "kill-controller" \
            else leader
        node = cluster.node(victim)
        others = ",".join(x.bootstrap for x in cluster.nodes if x.node_id != victim)
        if fault == "pause-leader":
            node.proc.send_signal(signal.SIGSTOP)
        elif fault == "stop-leader":
            node.stop()
        else:
            node.kill()
        if victim == leader:
            wait_until(lambda: partition_view(others, topic).leader not in (-1, victim), 60,
                       "a new leader")
        else:
            wait_until(lambda: quorum_leader(kafka_bin, others) != victim, 60,
                       "a new active controller")
        if fault == "pause-leader":
            time.sleep(1)
            node.proc.send_signal(signal.SIGCONT)
        writer.join(240)
        assert not writer.is_alive(), "the producer did not finish"
    finally:
        stop.set()
        writer.join(10)
        if writer.is_alive() or failed or len(acked) != total:
            watcher.stop()
    assert not failed, f"deliveries failed: {failed[:5]}"
    assert len(acked) == total

    if fault != "pause-leader":
        node.start()
    wait_until(lambda: len(partition_view(cluster.bootstrap, topic).isrs) == 3, 120,
               "the restarted broker back in the ISR")

    consumer = Consumer({
        "bootstrap.servers": cluster.bootstrap,
        "group.id": unique_name("check"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(topic, 0, 0)])
    read: list[tuple[int, int]] = []
    deadline = time.monotonic() + 120
    while len(read) < len(acked) and time.monotonic() < deadline:
        for m in consumer.consume(1000, 1.0):
            assert m.error() is None, m.error()
            read.append((m.offset(), int(m.value())))
    consumer.close()
    values = [v for _, v in read]
    assert len(values) == len(set(values)), "a record was written twice"
    assert values == sorted(values), "records out of order"
    missing = set(acked) - set(values)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    assert all(acked[v] == o for o, v in read), "a record is not at its acknowledged offset"

    # What the consumer group saw while the fault happened.
    watcher.stop()
    assert len(watcher.seen) >= 1000, f"the group read only {len(watcher.seen)} records"
    final = dict(read)
    truncated = [(o, v) for o, v in watcher.seen if final.get(o) != v]
    assert not truncated, f"the group read records that were later truncated: {truncated[:5]}"
    assert len(watcher.committed) >= 5, f"only {len(watcher.committed)} commits read back"
    backwards = [(a, b) for a, b in zip(watcher.committed, watcher.committed[1:]) if b < a]
    assert not backwards, f"the committed offset went backwards: {backwards[:5]}"

    # kafka-leader-election.sh gives the partition back to its preferred replica.
    preferred = partition_view(cluster.bootstrap, topic).replicas[0]
    run(kafka_bin, "kafka-leader-election.sh", "--bootstrap-server", cluster.bootstrap,
        "--election-type", "preferred", "--topic", topic, "--partition", "0")
    wait_until(lambda: partition_view(cluster.bootstrap, topic).leader == preferred, 60,
               "the preferred replica leading")

    dirs = [x.data_dir / f"{topic}-0" for x in cluster.nodes]
    cluster.close()
    logs = [{p.name: p.read_bytes() for p in d.glob("*.log")} for d in dirs]
    assert logs[0] and logs[0] == logs[1] == logs[2], "the replicas' logs differ"


class Watcher:
    """A consumer group member reading `topic` (one partition) in the background, committing
    synchronously every 100 records and reading the committed offset back; errors while a
    node is down are retried. `seen` holds (offset, value) of every record it got, `committed`
    every committed offset it read back, in order."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.seen: list[tuple[int, int]] = []
        self.committed: list[int] = []
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("w"),
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        tp = TopicPartition(self.topic, 0)
        since_commit = 0
        while not self.stopping.is_set():
            for m in self.consumer.consume(200, 0.2):
                if m.error() is None:
                    self.seen.append((m.offset(), int(m.value())))
                    since_commit += 1
            if since_commit < 100:
                continue
            try:
                self.consumer.commit(asynchronous=False)
                since_commit = 0
                c = self.consumer.committed([tp], timeout=10)[0]
                if c.error is None and c.offset >= 0:
                    self.committed.append(c.offset)
            except KafkaException:
                pass  # the coordinator moves while a node is down: the next round retries
        self.consumer.close()

    def stop(self):
        self.stopping.set()
        self.thread.join(60)


class Load:
    """An idempotent ``acks=all`` producer writing unique values to every partition of a topic,
    and a consumer group reading them, both in the background until ``stop``."""

    def __init__(self, bootstrap: str, topic: str, partitions: int):
        self.topic, self.partitions = topic, partitions
        self.acked: list[int] = []
        self.consumed: list[int] = []
        self.errors: list[str] = []
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 5})
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("g"),
                                  "auto.offset.reset": "earliest"})
        self.consumer.subscribe([topic])
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._produce), threading.Thread(target=self._consume)]
        for t in self.threads:
            t.start()

    def _delivered(self, err, msg):
        if err is None:
            self.acked.append(int(msg.value()))
        else:
            self.errors.append(str(err))

    def _produce(self):
        i = 0
        while not self.stopping.is_set():
            self.producer.produce(self.topic, str(i).encode(), partition=i % self.partitions,
                                  on_delivery=self._delivered)
            self.producer.poll(0)
            i += 1
            time.sleep(0.002)
        self.producer.flush(60)

    def _consume(self):
        while not self.stopping.is_set() or len(self.consumed) < len(self.acked):
            for m in self.consumer.consume(500, 0.5):
                if m.error() is None:
                    self.consumed.append(int(m.value()))
            if self.stopping.is_set() and time.monotonic() > self.deadline:
                break
        self.consumer.close()

    def stop(self):
        self.deadline = time.monotonic() + 90
        self.stopping.set()
        for t in self.threads:
            t.join(120)


def read_all(bootstrap: str, topic: str, partitions: int, expected: int) -> list[int]:
    """Every value of `topic` from offset 0, read with assign()."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("r"),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values = []
    deadline = time.monotonic() + 60
    while len(values) < expected and time.monotonic() < deadline:
        for m in consumer.consume(1000, 1.0):
            assert m.error() is None, m.error()
            values.append(int(m.value()))
    consumer.close()
    return values


def reassign(kafka_bin, bootstrap: str, *args: str) -> str:
    return run(kafka_bin, "kafka-reassign-partitions.sh", "--bootstrap-server", bootstrap, *args)


def test_a_new_broker_joins_and_reassign_partitions_moves_replicas_to_it(cluster, kafka_bin,
                                                                        tmp_path):
    """The guides' flow: a fourth node (`process.roles=broker`) joins, then
    `kafka-reassign-partitions.sh --generate / --execute / --verify` moves two partitions from
    brokers 1 and 2 to brokers 2 and 4 while an idempotent producer and a consumer group keep
    running. No acknowledged record is lost or duplicated, broker 4 holds the bytes
    (kafka-log-dirs.sh), broker 1 holds nothing of the topic. Then a throttled move back to
    broker 1 (`--throttle 1`, so it cannot finish soon) is cancelled with `--cancel`, which restores
    the replicas and clears the throttles."""
    topic = unique_name("move")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=-1,
                                  replica_assignment=[[1, 2], [2, 1]])])[topic].result(60)
    load = Load(cluster.bootstrap, topic, 2)
    try:
        wait_until(lambda: len(load.acked) > 200, 60, "the producer under way")
        fourth = cluster.add_broker()
        assert fourth.node_id == 4
        wait_until(lambda: len(admin.list_topics(timeout=10).brokers) == 4, 60,
                   "four brokers registered")

        to_move = tmp_path / "topics-to-move.json"
        to_move.write_text(json.dumps({"version": 1, "topics": [{"topic": topic}]}))
        out = reassign(kafka_bin, cluster.bootstrap, "--generate", "--topics-to-move-json-file",
                       str(to_move), "--broker-list", "2,4")
        lines = [line.strip() for line in out.splitlines()]
        proposed = json.loads(lines[lines.index("Proposed partition reassignment configuration") + 1])
        for p in proposed["partitions"]:
            assert sorted(p["replicas"]) == [2, 4], proposed
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps(proposed))
        reassign(kafka_bin, cluster.bootstrap, "--execute", "--reassignment-json-file", str(plan))

        def verified():
            out = reassign(kafka_bin, cluster.bootstrap, "--verify", "--reassignment-json-file",
                           str(plan))
            return all(f"Reassignment of partition {topic}-{p} is completed." in out
                       for p in (0, 1))

        wait_until(verified, 120, "the reassignment to complete", interval=1)
        acked_before = len(load.acked)
        wait_until(lambda: len(load.acked) > acked_before + 100, 60,
                   "the producer going on after the move")
    finally:
        load.stop()
    assert not load.errors, load.errors[:5]
    md = admin.list_topics(topic=topic, timeout=10).topics[topic]
    for p in md.partitions.values():
        assert sorted(p.replicas) == [2, 4] and sorted(p.isrs) == [2, 4], p

    def moved():
        on_4 = all(any(f.stat().st_size > 0 for f in (fourth.data_dir / f"{topic}-{p}")
                       .glob("*.log")) for p in (0, 1))
        off_1 = not any((cluster.node(1).data_dir / f"{topic}-{p}").exists() for p in (0, 1))
        return on_4 and off_1

    wait_until(moved, 60, "the data on broker 4 and gone from broker 1")

    # kafka-log-dirs.sh (DescribeLogDirs, asked of each broker) sees the bytes on broker 4.
    out = run(kafka_bin, "kafka-log-dirs.sh", "--bootstrap-server", cluster.bootstrap,
              "--describe", "--broker-list", "1,4", "--topic-list", topic)
    dirs = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    sizes = {b["broker"]: {p["partition"]: p["size"] for d in b["logDirs"] for p in d["partitions"]}
             for b in dirs["brokers"]}
    assert sizes[1] == {}, sizes
    assert set(sizes[4]) == {f"{topic}-0", f"{topic}-1"} and min(sizes[4].values()) > 0, sizes

    # Every acknowledged record is in the topic exactly once, and the group read them all.
    acked = sorted(load.acked)
    assert len(set(acked)) == len(acked)
    values = read_all(cluster.bootstrap, topic, 2, len(acked))
    assert sorted(values) == acked, (len(values), len(acked))
    assert set(load.consumed) == set(acked), len(set(acked) - set(load.consumed))

    # A move that cannot finish (5 MB at 1 byte/s), then --cancel.
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})
    for _ in range(5000):
        producer.produce(topic, b"x" * 1000, partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0
    before = sorted(admin.list_topics(topic=topic, timeout=10).topics[topic].partitions[0].replicas)
    back = tmp_path / "back.json"
    back.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": 0, "replicas": [1, 2]}]}))
    reassign(kafka_bin, cluster.bootstrap, "--execute", "--reassignment-json-file", str(back),
             "--throttle", "1")
    out = reassign(kafka_bin, cluster.bootstrap, "--verify", "--preserve-throttles",
                   "--reassignment-json-file", str(back))
    assert f"Reassignment of partition {topic}-0 is still in progress" in out, out
    reassign(kafka_bin, cluster.bootstrap, "--cancel", "--reassignment-json-file", str(back))

    def restored():
        p = admin.list_topics(topic=topic, timeout=10).topics[topic].partitions[0]
        return sorted(p.replicas) == before and sorted(p.isrs) == before

    wait_until(restored, 60, "the replicas restored by --cancel")
    wait_until(lambda: not (cluster.node(1).data_dir / f"{topic}-0").exists(), 60,
               "the cancelled replica's directory gone from broker 1")
    out = run(kafka_bin, "kafka-configs.sh", "--bootstrap-server", cluster.bootstrap,
              "--describe", "--entity-type", "topics", "--entity-name", topic)
    assert "throttled.replicas" not in out, out


def test_controller_only_voters_and_broker_only_nodes(tmp_path, kafka_bin):
    """KRaft's split layout, from the `server.properties` shape of Kafka's own
    `controller.properties` and `broker.properties`: three controller-only voters
    (`process.roles=controller`) and two broker-only nodes. Clients see the two brokers,
    `kafka-metadata-quorum.sh` shows the voters and the brokers as observers, and a replicated
    topic lives on the brokers."""
    c = Cluster(tmp_path, kafka_bin, 3, FAST_FAILOVER, brokers=2)
    try:
        c.start()

        def quorum():
            out = run(kafka_bin, "kafka-metadata-quorum.sh", "--bootstrap-server", c.bootstrap,
                      "describe", "--replication")
            roles = {int(m[1]): m[2] for m in
                     re.finditer(r"^(\d+)\s.*?\b(Leader|Follower|Observer)\b", out, re.M)}
            return roles if len(roles) == 5 else None

        roles = wait_until(quorum, 60, "three voters and two observers")
        assert sorted(n for n, r in roles.items() if r != "Observer") == [1, 2, 3], roles
        assert list(roles.values()).count("Leader") == 1, roles
        assert sorted(n for n, r in roles.items() if r == "Observer") == [4, 5], roles
        leader = next(n for n, r in roles.items() if r == "Leader")

        # The same from the controllers themselves (KIP-919's `--bootstrap-controller`).
        status = run(kafka_bin, "kafka-metadata-quorum.sh", "--bootstrap-controller",
                     c.bootstrap_controllers, "describe", "--status")
        assert int(re.search(r"LeaderId:\s+(\d+)", status)[1]) == leader, status
        voters = re.search(r"CurrentVoters:\s+(.*)", status)[1]
        assert sorted(int(x) for x in re.findall(r'"id":\s*(\d+)', voters)) == [1, 2, 3], status
        replication = run(kafka_bin, "kafka-metadata-quorum.sh", "--bootstrap-controller",
                          c.bootstrap_controllers, "describe", "--replication")
        assert f"{leader}" in replication and "Observer" in replication, replication
        assert sorted(AdminClient({"bootstrap.servers": c.bootstrap})
                      .list_topics(timeout=10).brokers) == [4, 5]

        topic = unique_name("split")
        run(kafka_bin, "kafka-topics.sh", "--bootstrap-server", c.bootstrap, "--create",
            "--topic", topic, "--partitions", "2", "--replication-factor", "2")
        rows = wait_until(
            lambda: (r := describe_partitions(kafka_bin, c.bootstrap, topic)) and all(
                sorted(x["isr"]) == [4, 5] for x in r) and r,
            60, "both partitions on the two brokers, in sync")
        assert all(sorted(x["replicas"]) == [4, 5] for x in rows), rows

        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all"})
        for i in range(10):
            p.produce(topic, str(i).encode(), partition=i % 2)
        assert p.flush(30) == 0
        assert sorted(read_all(c.bootstrap, topic, 2, 10)) == list(range(10))
    finally:
        c.close()


def test_two_replicas_down_is_not_enough_replicas_for_acks_all(tmp_path, kafka_bin):
    """Acceptance 3 of issue 8: with two of a partition's three replicas down, acks=all gets
    NOT_ENOUGH_REPLICAS and acks=1 still works. Three controller-only voters keep the quorum
    while two of the three brokers are killed (with combined nodes, two down would take the
    quorum with them)."""
    c = Cluster(tmp_path, kafka_bin, 3, FAST_FAILOVER, brokers=3)
    try:
        c.start()
        topic = rf3_topic(c.bootstrap, "minisr")
        leader = partition_view(c.bootstrap, topic).leader
        for x in c.nodes:
            if x.broker and x.node_id != leader:
                x.kill()
        survivor = c.node(leader).bootstrap
        wait_until(lambda: partition_view(survivor, topic).isrs == [leader], 60,
                   "the ISR down to the leader")

        def send(acks: str):
            results = []
            p = Producer({"bootstrap.servers": survivor, "acks": acks, "retries": 0,
                          "message.timeout.ms": 10000})
            p.produce(topic, b"v", on_delivery=lambda err, msg: results.append(err))
            p.flush(30)
            assert len(results) == 1, "no delivery report"
            return results[0]

        err = send("all")
        assert err is not None and err.code() == KafkaError.NOT_ENOUGH_REPLICAS, err
        assert send("1") is None, "acks=1 with one replica left"
    finally:
        c.close()


# Apache Kafka 4.3's `config/server.properties` as it ships (comments left out), with free
# ports and a temporary log directory: one combined node whose quorum is itself
# (`controller.quorum.bootstrap.servers`, formatted `--standalone` for Kafka).
KAFKA_STOCK_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:{controller}
listeners=PLAINTEXT://:{port},CONTROLLER://:{controller}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:{port},CONTROLLER://localhost:{controller}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs={log_dirs}
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""


def test_kafkas_own_server_properties_start_a_node(tmp_path, kafka_bin):
    """The file Apache Kafka 4.3 ships starts a node unchanged but for ports and directory:
    topics are created through it and `kafka-metadata-quorum.sh --bootstrap-controller` sees
    it lead its own quorum."""
    node = ClusterNode(tmp_path / "node1", kafka_bin, 1)
    node.config_path.write_text(KAFKA_STOCK_SERVER_PROPERTIES.format(
        port=node.port, controller=node.controller_port, log_dirs=node.data_dir))
    if node.target == "kafka":
        kafka_storage_format(kafka_bin, node.config_path, new_cluster_id(), "--standalone")
    try:
        node.start()
        topic = unique_name("stock")
        run(kafka_bin, "kafka-topics.sh", "--bootstrap-server", node.bootstrap, "--create",
            "--topic", topic, "--partitions", "2")
        assert len(describe_partitions(kafka_bin, node.bootstrap, topic)) == 2
        status = run(kafka_bin, "kafka-metadata-quorum.sh", "--bootstrap-controller",
                     f"localhost:{node.controller_port}", "describe", "--status")
        assert re.search(r"LeaderId:\s+1\b", status), status
    finally:
        node.close()
