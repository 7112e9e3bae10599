"""Apache Kafka's own command-line tools (Java admin client, producer and consumer), run
exactly as the guides in USERS.md teach, against the broker. The tools come from Maven
Central through e2e/kafka/install; their text output is parsed as a user would read it."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections import Counter, defaultdict
from pathlib import Path

from confluent_kafka import Consumer, Producer

from clients import read_partitions
from support import NODE_ID, create_topic, unique_name, wait_until

# Lines that 4.x tools print about their own deprecated flags (the console consumer prints
# them on stdout, in front of the records).
TOOL_NOISE = re.compile(r"^(Option|Warning:) .*deprecated")


def run(kafka_bin: Path, tool: str, *args: str, input: str | None = None, timeout: float = 180,
        check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(kafka_bin / tool), *args]
    try:
        out = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{tool} ran longer than {timeout}s: {' '.join(args)}\n"
                             f"stdout: {e.stdout}\nstderr: {e.stderr}") from None
    if check:
        assert out.returncode == 0, (f"{tool} {' '.join(args)} exited {out.returncode}\n"
                                     f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}")
    return out


def output_lines(out: subprocess.CompletedProcess) -> list[str]:
    return [line for line in out.stdout.splitlines() if line and not TOOL_NOISE.match(line)]


def fields(line: str) -> dict[str, str]:
    """Parses a `kafka-topics --describe` line: tab-separated `Key: value` pairs."""
    out = {}
    for part in line.strip().split("\t"):
        key, _, value = part.partition(":")
        out[key.strip()] = value.strip()
    return out


def describe_topic(kafka_bin: Path, bootstrap: str, topic: str) -> tuple[dict, dict[int, dict]]:
    out = run(kafka_bin, "kafka-topics.sh", "--bootstrap-server", bootstrap,
              "--describe", "--topic", topic)
    header, partitions = None, {}
    for line in output_lines(out):
        f = fields(line)
        if f.get("Topic") != topic:
            continue
        if "Partition" in f:
            partitions[int(f["Partition"])] = f
        else:
            header = f
    assert header is not None, f"no topic line in:\n{out.stdout}"
    return header, partitions


def describe_rows(kafka_bin: Path, bootstrap: str, group: str, *flags: str) -> list[dict]:
    """The rows of a `kafka-consumer-groups --describe --group G <flags>` table."""
    out = run(kafka_bin, "kafka-consumer-groups.sh", "--bootstrap-server", bootstrap,
              "--describe", "--group", group, *flags)
    rows, columns = [], None
    for line in output_lines(out):
        cells = line.split()
        if cells[0] == "GROUP":
            columns = cells
        elif columns and cells[0] == group:
            assert len(cells) == len(columns), f"unexpected row {line!r} for {columns}"
            rows.append(dict(zip(columns, cells)))
    return rows


def group_table(kafka_bin: Path, bootstrap: str, group: str) -> dict[tuple[str, int], dict]:
    """`kafka-consumer-groups --describe` as {(topic, partition): row}."""
    rows = describe_rows(kafka_bin, bootstrap, group)
    assert all(list(r) == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET",
                           "LAG", "CONSUMER-ID", "HOST", "CLIENT-ID"] for r in rows), rows
    return {(r["TOPIC"], int(r["PARTITION"])): r for r in rows}


def test_topic_create_list_describe_alter_delete(broker, kafka_bin):
    bs, topic = broker.bootstrap, unique_name("hello-kafka")
    out = run(kafka_bin, "kafka-topics.sh", "--create", "--topic", topic, "--bootstrap-server", bs,
              "--partitions", "3", "--replication-factor", "1")
    assert f"Created topic {topic}." in out.stdout

    listed = output_lines(run(kafka_bin, "kafka-topics.sh", "--list", "--bootstrap-server", bs))
    assert topic in listed
    assert not any(t.startswith("__") for t in listed), "internal topics are not listed"

    header, partitions = describe_topic(kafka_bin, bs, topic)
    assert header["PartitionCount"] == "3"
    assert header["ReplicationFactor"] == "1"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", header["TopicId"]) and \
        header["TopicId"] != "AAAAAAAAAAAAAAAAAAAAAA"
    assert sorted(partitions) == [0, 1, 2]
    for p in partitions.values():
        assert (p["Leader"], p["Replicas"], p["Isr"]) == (str(NODE_ID),) * 3, p

    # A second create of the same name is refused, as is shrinking.
    again = run(kafka_bin, "kafka-topics.sh", "--create", "--topic", topic, "--bootstrap-server",
                bs, "--partitions", "3", "--replication-factor", "1", check=False)
    assert again.returncode != 0 and "already exists" in again.stdout + again.stderr

    run(kafka_bin, "kafka-topics.sh", "--alter", "--topic", topic, "--partitions", "4",
        "--bootstrap-server", bs)
    header, partitions = describe_topic(kafka_bin, bs, topic)
    assert header["PartitionCount"] == "4"
    assert sorted(partitions) == [0, 1, 2, 3]
    assert partitions[3]["Leader"] == str(NODE_ID)

    shrink = run(kafka_bin, "kafka-topics.sh", "--alter", "--topic", topic, "--partitions", "2",
                 "--bootstrap-server", bs, check=False)
    assert shrink.returncode != 0
    assert "InvalidPartitionsException" in shrink.stdout + shrink.stderr
    assert describe_topic(kafka_bin, bs, topic)[0]["PartitionCount"] == "4"

    run(kafka_bin, "kafka-topics.sh", "--delete", "--topic", topic, "--bootstrap-server", bs)
    wait_until(lambda: topic not in output_lines(
        run(kafka_bin, "kafka-topics.sh", "--list", "--bootstrap-server", bs)), 60,
        f"{topic} to disappear from --list")
    gone = run(kafka_bin, "kafka-topics.sh", "--describe", "--topic", topic,
               "--bootstrap-server", bs, check=False)
    assert gone.returncode != 0 and "does not exist" in gone.stdout + gone.stderr


def test_console_producer_and_consumer_one_line_one_message(broker, kafka_bin):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("hello-kafka"), 3)
    lines = ["hello kafka", "안녕하세요 카프카", "주문이 접수되었습니다 🍗"]
    run(kafka_bin, "kafka-console-producer.sh", "--topic", topic, "--bootstrap-server", bs,
        input="".join(f"{line}\n" for line in lines))

    out = run(kafka_bin, "kafka-console-consumer.sh", "--topic", topic, "--from-beginning",
              "--bootstrap-server", bs, "--max-messages", str(len(lines)), "--timeout-ms", "60000")
    assert Counter(output_lines(out)) == Counter(lines)
    assert f"Processed a total of {len(lines)} messages" in out.stderr


def test_console_tools_with_keys_and_a_consumer_group(broker, kafka_bin):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("orders"), 3)
    group = unique_name("console-group")
    lines = [
        "주문1:치킨 두 마리",
        "user-2:hello world",
        "결제:₩15,000:완료",  # the first separator splits; the value keeps its colon
        "주문1:콜라 추가",
        "user-2:second",
        "배송:출발했습니다",
        "주문1:배달 완료",
        "user-3:",  # empty value
    ]
    run(kafka_bin, "kafka-console-producer.sh", "--topic", topic, "--bootstrap-server", bs,
        "--property", "parse.key=true", "--property", "key.separator=:",
        input="".join(f"{line}\n" for line in lines))

    consume = ["kafka-console-consumer.sh", "--topic", topic, "--bootstrap-server", bs,
               "--from-beginning", "--property", "print.key=true", "--property", "key.separator=:",
               "--group", group]
    out = run(kafka_bin, *consume, "--max-messages", str(len(lines)), "--timeout-ms", "60000")
    got = output_lines(out)
    assert Counter(got) == Counter(lines)
    per_key = defaultdict(list)
    for line in got:
        per_key[line.split(":", 1)[0]].append(line)
    for key, msgs in per_key.items():
        assert msgs == [line for line in lines if line.split(":", 1)[0] == key], key

    # The Java consumer committed its position on close: the group has nothing left to read.
    out = run(kafka_bin, *consume, "--timeout-ms", "5000")
    assert output_lines(out) == []
    assert "Processed a total of 0 messages" in out.stderr


def _produce_to_partitions(bs: str, topic: str, counts: dict[int, int]) -> None:
    p = Producer({"bootstrap.servers": bs, "acks": "all"})
    for partition, n in counts.items():
        for i in range(n):
            p.produce(topic, key=f"k{i}".encode(), value=f"p{partition}-{i}".encode(),
                      partition=partition)
    assert p.flush(60) == 0


def test_consumer_groups_describe_lag_and_reset_offsets(broker, kafka_bin):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("lag"), 2)
    group = unique_name("my-group")
    _produce_to_partitions(bs, topic, {0: 7, 1: 5})
    run(kafka_bin, "kafka-console-consumer.sh", "--topic", topic, "--bootstrap-server", bs,
        "--from-beginning", "--group", group, "--max-messages", "12", "--timeout-ms", "60000")
    _produce_to_partitions(bs, topic, {0: 3})

    listed = output_lines(run(kafka_bin, "kafka-consumer-groups.sh", "--bootstrap-server", bs,
                              "--list"))
    assert group in listed

    rows = group_table(kafka_bin, bs, group)
    assert {k: (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for k, r in rows.items()} == {
        (topic, 0): ("7", "10", "3"),
        (topic, 1): ("5", "5", "0"),
    }
    assert all(r["CONSUMER-ID"] == "-" for r in rows.values()), "the group has no members now"

    out = run(kafka_bin, "kafka-consumer-groups.sh", "--bootstrap-server", bs, "--group", group,
              "--reset-offsets", "--to-earliest", "--execute", "--topic", topic)
    reset = {}
    for line in output_lines(out):
        cells = line.split()
        if cells[0] == group:
            reset[(cells[1], int(cells[2]))] = cells[3]
    assert reset == {(topic, 0): "0", (topic, 1): "0"}, out.stdout

    rows = group_table(kafka_bin, bs, group)
    assert {k: (r["CURRENT-OFFSET"], r["LOG-END-OFFSET"], r["LAG"]) for k, r in rows.items()} == {
        (topic, 0): ("0", "10", "10"),
        (topic, 1): ("0", "5", "5"),
    }

    # With a live member, describe shows who owns each partition (the tool decodes the
    # member assignment that the broker stored from SyncGroup).
    stop = threading.Event()
    consumer = Consumer({"bootstrap.servers": bs, "group.id": group, "client.id": "e2e-active",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])

    def keep_polling():
        while not stop.is_set():
            consumer.poll(0.1)

    poller = threading.Thread(target=keep_polling, daemon=True)
    poller.start()
    try:
        def members_shown():
            rows = group_table(kafka_bin, bs, group)
            return len(rows) == 2 and all(r["CLIENT-ID"] == "e2e-active" for r in rows.values()) \
                and rows
        rows = wait_until(members_shown, 90, "describe to show the active member", interval=1)
        for r in rows.values():
            assert r["CONSUMER-ID"].startswith("e2e-active-"), r
            assert r["HOST"] == "/127.0.0.1", r
            assert r["CURRENT-OFFSET"] == "0", "nothing was committed by the live member"
    finally:
        stop.set()
        poller.join(10)
        consumer.close()


def test_java_consumers_with_the_consumer_group_protocol(broker, kafka_bin, tmp_path):
    """KIP-848 (`group.protocol=consumer`, Kafka 4's default for new deployments to opt into):
    the broker assigns, two Java consumers split the partitions, and the group tool shows
    members, epochs and assignments."""
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("kip848"), 4)
    group = unique_name("order-processor")
    _produce_to_partitions(bs, topic, {p: 5 for p in range(4)})
    expected = {f"p{p}-{i}" for p in range(4) for i in range(5)}

    consumers = []

    def start(name: str) -> subprocess.Popen:
        out = open(tmp_path / f"{name}.out", "w")
        proc = subprocess.Popen(
            [str(kafka_bin / "kafka-console-consumer.sh"), "--bootstrap-server", bs,
             "--topic", topic, "--group", group, "--from-beginning",
             "--consumer-property", "group.protocol=consumer",
             "--consumer-property", f"client.id={name}"],
            stdout=out, stderr=subprocess.STDOUT, text=True)
        consumers.append((proc, out))
        return proc

    def members() -> list[dict]:
        return describe_rows(kafka_bin, bs, group, "--members", "--verbose")

    try:
        start("java-a")

        def alone():
            rows = members()
            return len(rows) == 1 and rows[0]["#PARTITIONS"] == "4" and \
                rows[0]["CURRENT-EPOCH"] == rows[0]["TARGET-EPOCH"] and rows
        [row] = wait_until(alone, 90, "the first Java consumer to own all 4 partitions",
                           interval=1)
        assert row["CLIENT-ID"] == "java-a" and row["HOST"] == "/127.0.0.1", row
        assert row["CURRENT-ASSIGNMENT"] == f"{topic}:0,1,2,3", row
        [state] = describe_rows(kafka_bin, bs, group, "--state")
        assert (state["ASSIGNMENT-STRATEGY"], state["STATE"], state["#MEMBERS"]) == \
            ("uniform", "Stable", "1"), state

        start("java-b")

        def split():
            rows = members()
            return len(rows) == 2 and all(r["#PARTITIONS"] == "2" for r in rows) and \
                all(r["CURRENT-EPOCH"] == r["TARGET-EPOCH"] for r in rows) and rows
        rows = wait_until(split, 90, "the two Java consumers to own 2 partitions each", interval=1)
        owned = [set(r["CURRENT-ASSIGNMENT"].split(":", 1)[1].split(",")) for r in rows]
        assert owned[0] | owned[1] == {"0", "1", "2", "3"} and not owned[0] & owned[1], rows
    finally:
        for proc, out in consumers:
            proc.terminate()
            proc.wait(60)
            out.close()

    seen = set()
    for name in ("java-a", "java-b"):
        seen |= {line for line in (tmp_path / f"{name}.out").read_text().splitlines()
                 if line.startswith("p")}
    assert seen == expected
    # Both committed their positions when they closed (auto commit), with their member epochs.
    rows = group_table(kafka_bin, bs, group)
    assert {k: r["LAG"] for k, r in rows.items()} == {(topic, p): "0" for p in range(4)}, rows


def test_configs_alter_and_describe_topic_retention(broker, kafka_bin):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("my-topic"), 1)
    configs = ["kafka-configs.sh", "--bootstrap-server", bs, "--entity-type", "topics",
               "--entity-name", topic]
    out = run(kafka_bin, *configs, "--alter", "--add-config", "retention.ms=604800000")
    assert f"Completed updating config for topic {topic}." in out.stdout
    run(kafka_bin, *configs, "--alter", "--add-config", "retention.bytes=1073741824")

    described = output_lines(run(kafka_bin, *configs, "--describe"))
    assert described[0] == f"Dynamic configs for topic {topic} are:"
    entries = {line.strip().split("=", 1)[0]: line.strip() for line in described[1:]}
    assert entries.keys() == {"retention.ms", "retention.bytes"}
    assert entries["retention.ms"].startswith("retention.ms=604800000 sensitive=false synonyms={")
    assert "DYNAMIC_TOPIC_CONFIG:retention.ms=604800000" in entries["retention.ms"]
    assert entries["retention.bytes"].startswith("retention.bytes=1073741824 sensitive=false")

    header, _ = describe_topic(kafka_bin, bs, topic)
    assert {"retention.ms=604800000", "retention.bytes=1073741824"} <= \
        set(header["Configs"].split(","))

    run(kafka_bin, *configs, "--alter", "--delete-config", "retention.ms")
    described = output_lines(run(kafka_bin, *configs, "--describe"))
    assert [line.strip().split("=", 1)[0] for line in described[1:]] == ["retention.bytes"]


def test_producer_and_consumer_perf_tools_run_to_completion(broker, kafka_bin):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("perf"), 3)
    # The Java producer with default settings: idempotent, acks=all, 5 batches in flight.
    out = run(kafka_bin, "kafka-producer-perf-test.sh", "--topic", topic, "--num-records", "20000",
              "--record-size", "1024", "--throughput", "-1",
              "--producer-props", f"bootstrap.servers={bs}", timeout=300)
    assert re.search(r"^20000 records sent, [\d.]+ records/sec", out.stdout, re.M), out.stdout

    stored = read_partitions(bs, topic, range(3))
    assert sum(len(v) for v in stored.values()) == 20000, "each record stored exactly once"
    assert all(len(v) == 1024 for recs in stored.values() for _, v in recs)

    out = run(kafka_bin, "kafka-consumer-perf-test.sh", "--bootstrap-server", bs, "--topic", topic,
              "--messages", "20000", timeout=300)
    table = output_lines(out)
    header = [c.strip() for c in table[0].split(",")]
    values = dict(zip(header, (c.strip() for c in table[1].split(","))))
    assert int(values["data.consumed.in.nMsg"]) == 20000, out.stdout
    assert abs(float(values["data.consumed.in.MB"]) - 20000 * 1024 / 1024 / 1024) < 0.01


def test_end_to_end_latency_tool_runs(broker, kafka_bin):
    out = run(kafka_bin, "kafka-e2e-latency.sh", "--bootstrap-server", broker.bootstrap,
              "--topic", unique_name("latency"), "--num-records", "300", "--producer-acks", "all",
              "--record-size", "100", timeout=300)
    assert re.search(r"^Avg latency: [\d.]+ ms", out.stdout, re.M), out.stdout


def test_reassign_partitions_generate_execute_verify(broker, kafka_bin, tmp_path):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("move"), 2)
    to_move = tmp_path / "topics-to-move.json"
    to_move.write_text(json.dumps({"version": 1, "topics": [{"topic": topic}]}))
    out = run(kafka_bin, "kafka-reassign-partitions.sh", "--bootstrap-server", bs, "--generate",
              "--topics-to-move-json-file", str(to_move), "--broker-list", str(NODE_ID))
    lines = output_lines(out)
    current = json.loads(lines[lines.index("Current partition replica assignment") + 1])
    proposed = json.loads(lines[lines.index("Proposed partition reassignment configuration") + 1])
    assert sorted((p["partition"], p["replicas"]) for p in current["partitions"]) == \
        [(0, [NODE_ID]), (1, [NODE_ID])]
    assert sorted((p["partition"], p["replicas"]) for p in proposed["partitions"]) == \
        [(0, [NODE_ID]), (1, [NODE_ID])]

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(proposed))
    run(kafka_bin, "kafka-reassign-partitions.sh", "--bootstrap-server", bs, "--execute",
        "--reassignment-json-file", str(plan))

    def verified():
        out = run(kafka_bin, "kafka-reassign-partitions.sh", "--bootstrap-server", bs, "--verify",
                  "--reassignment-json-file", str(plan))
        return all(f"Reassignment of partition {topic}-{p} is completed." in out.stdout
                   for p in (0, 1))

    wait_until(verified, 90, "the reassignment to complete", interval=1)
