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
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from support import Cluster, unique_name, wait_until

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
    byte-identical."""
    topic = unique_name("failover")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 3, config={"min.insync.replicas": "2"})])[topic] \
        .result(60)
    wait_until(lambda: len(partition_view(cluster.bootstrap, topic).isrs) == 3, 60,
               "three in-sync replicas")

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


def test_reassign_partitions_moves_replicas_to_another_broker(cluster, kafka_bin, tmp_path):
    """The guides' flow, `kafka-reassign-partitions.sh --generate / --execute / --verify`: two
    partitions on brokers 1 and 2 move to brokers 2 and 3 while records are read back; broker
    3 then holds the data and broker 1 holds nothing of the topic."""
    topic = unique_name("move")
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=-1,
                                  replica_assignment=[[1, 2], [2, 1]])])[topic].result(60)
    producer = Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all",
                         "enable.idempotence": True})
    for i in range(2000):
        producer.produce(topic, str(i).encode(), partition=i % 2)
        producer.poll(0)
    assert producer.flush(60) == 0

    to_move = tmp_path / "topics-to-move.json"
    to_move.write_text(json.dumps({"version": 1, "topics": [{"topic": topic}]}))
    out = run(kafka_bin, "kafka-reassign-partitions.sh", "--bootstrap-server", cluster.bootstrap,
              "--generate", "--topics-to-move-json-file", str(to_move), "--broker-list", "2,3")
    lines = [line.strip() for line in out.splitlines()]
    proposed = json.loads(lines[lines.index("Proposed partition reassignment configuration") + 1])
    for p in proposed["partitions"]:
        assert sorted(p["replicas"]) == [2, 3], proposed
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(proposed))
    run(kafka_bin, "kafka-reassign-partitions.sh", "--bootstrap-server", cluster.bootstrap,
        "--execute", "--reassignment-json-file", str(plan))

    def verified():
        out = run(kafka_bin, "kafka-reassign-partitions.sh", "--bootstrap-server",
                  cluster.bootstrap, "--verify", "--reassignment-json-file", str(plan))
        return all(f"Reassignment of partition {topic}-{p} is completed." in out for p in (0, 1))

    wait_until(verified, 120, "the reassignment to complete", interval=1)
    md = admin.list_topics(topic=topic, timeout=10).topics[topic]
    for p in md.partitions.values():
        assert sorted(p.replicas) == [2, 3] and sorted(p.isrs) == [2, 3], p

    def moved():
        on_3 = all(any(f.stat().st_size > 0 for f in (cluster.node(3).data_dir / f"{topic}-{p}")
                       .glob("*.log")) for p in (0, 1))
        off_1 = not any((cluster.node(1).data_dir / f"{topic}-{p}").exists() for p in (0, 1))
        return on_3 and off_1

    wait_until(moved, 60, "the data on broker 3 and gone from broker 1")

    # kafka-log-dirs.sh (DescribeLogDirs, asked of each broker) sees the bytes on broker 3.
    out = run(kafka_bin, "kafka-log-dirs.sh", "--bootstrap-server", cluster.bootstrap,
              "--describe", "--broker-list", "1,3", "--topic-list", topic)
    dirs = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    sizes = {b["broker"]: {p["partition"]: p["size"] for d in b["logDirs"] for p in d["partitions"]}
             for b in dirs["brokers"]}
    assert sizes[1] == {}, sizes
    assert set(sizes[3]) == {f"{topic}-0", f"{topic}-1"} and min(sizes[3].values()) > 0, sizes

    consumer = Consumer({"bootstrap.servers": cluster.bootstrap, "group.id": unique_name("g"),
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in (0, 1)])
    values = []
    deadline = time.monotonic() + 60
    while len(values) < 2000 and time.monotonic() < deadline:
        for m in consumer.consume(1000, 1.0):
            assert m.error() is None, m.error()
            values.append(int(m.value()))
    consumer.close()
    assert sorted(values) == list(range(2000))
