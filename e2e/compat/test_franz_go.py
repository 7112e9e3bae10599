"""franz-go (the Go client, github.com/twmb/franz-go) against the broker, through the small
program in go/: produce with every codec (franz-go's defaults: acks=all, idempotent), consume
in a group and commit, and fetch from an offset inside a batch, which once made franz-go hang
on a broker that answered with the next batch instead of the whole one."""

from __future__ import annotations

import json
import os
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from clients import CODECS
from support import create_topic, unique_name

GO_DIR = Path(__file__).parent / "go"


@pytest.fixture(scope="session")
def franz(tmp_path_factory) -> Path:
    """Builds the franz-go program (modules from the Go proxy, pinned by go.sum; Go's build
    cache makes a warm build take about a second)."""
    binary = tmp_path_factory.mktemp("franz") / "franz"
    env = dict(os.environ, GOFLAGS="-mod=readonly")
    out = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=GO_DIR, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"go build failed:\n{out.stderr}"
    return binary


def run_franz(franz: Path, *args: str, timeout: float = 90) -> list[dict]:
    out = subprocess.run([str(franz), *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"franz {' '.join(args)} exited {out.returncode}:\n{out.stderr}"
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize("codec", CODECS)
def test_franz_go_produces_with_every_codec_and_a_group_reads_everything(broker, franz, codec):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name(f"franz-{codec}"), 3)
    group = unique_name("franz-group")
    sent = run_franz(franz, "produce", "-brokers", bs, "-topic", topic, "-n", "200",
                     "-codec", codec, "-keys", "12")
    assert len({(r["partition"], r["offset"]) for r in sent}) == 200
    partitions_of = defaultdict(set)
    for r in sent:
        partitions_of[r["key"]].add(r["partition"])
    assert all(len(ps) == 1 for ps in partitions_of.values()), "a key moved between partitions"

    got = run_franz(franz, "consume", "-brokers", bs, "-topic", topic, "-group", group,
                    "-n", "200")
    as_set = lambda rs: {(r["partition"], r["offset"], r["key"], r["value"]) for r in rs}  # noqa: E731
    assert as_set(got) == as_set(sent)
    for p in range(3):
        offsets = [r["offset"] for r in got if r["partition"] == p]
        assert offsets == sorted(offsets), "records of a partition arrive in order"

    # The group committed what it read: another client sees the end of every partition.
    c = Consumer({"bootstrap.servers": bs, "group.id": group})
    try:
        committed = c.committed([TopicPartition(topic, p) for p in range(3)], timeout=30)
        ends = {p: 1 + max([r["offset"] for r in sent if r["partition"] == p], default=-1)
                for p in range(3)}
        assert {tp.partition: tp.offset for tp in committed} == ends
    finally:
        c.close()


def test_franz_go_fetching_from_inside_a_batch_gets_the_rest_of_it(broker, franz):
    bs = broker.bootstrap
    topic = create_topic(bs, unique_name("franz-mid-batch"), 1)
    # Ten records in one batch: librdkafka holds them for linger.ms and sends them together.
    p = Producer({"bootstrap.servers": bs, "linger.ms": 500, "enable.idempotence": True})
    for i in range(10):
        p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), partition=0)
    assert p.flush(30) == 0

    got = run_franz(franz, "fetch-at", "-brokers", bs, "-topic", topic, "-partition", "0",
                    "-offset", "5", "-n", "5", "-timeout", "30s")
    assert [(r["offset"], r["value"]) for r in got] == [(o, f"v{o}") for o in range(5, 10)]
