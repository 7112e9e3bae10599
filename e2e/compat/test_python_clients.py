"""kafka-python and confluent-kafka (librdkafka) against the broker, as USERS.md describes:
JSON orders with keys, every compression codec, key -> partition stability, consumer groups
that split and take over partitions, committed offsets, and durability across restarts."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from clients import (CLIENTS, CODECS, GroupMember, Record, consume, encode, produce,
                     read_partitions)
from support import create_topic, unique_name, wait_for_leaders


def orders(n: int, keys: list[str]) -> list[tuple[str, dict]]:
    """Order events shaped like the guides' examples, Korean text included."""
    items = ["치킨", "떡볶이", "김밥", "coffee", "라면"]
    return [(keys[i % len(keys)], {"order_id": i, "user": keys[i % len(keys)],
                                   "item": items[i % len(items)], "price": 1000 + i * 10})
            for i in range(n)]


def by_position(records: list[Record]) -> dict[tuple[int, int], tuple]:
    out = {}
    for r in records:
        assert (r.partition, r.offset) not in out, f"offset delivered twice: {r}"
        out[(r.partition, r.offset)] = (r.key, r.value)
    return out


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("acks", ["1", "all"])
@pytest.mark.parametrize("client", CLIENTS)
def test_keyed_json_round_trips_with_every_codec(broker, topic_factory, client, acks, codec):
    topic = topic_factory(f"orders-{codec}", partitions=3)
    sent = produce(client, broker.bootstrap, topic,
                   orders(60, ["alice", "bob", "철수", "영희", "min-su"]), acks=acks, codec=codec)
    assert len({(r.partition, r.offset) for r in sent}) == 60

    got = consume(client, broker.bootstrap, topic, unique_name("g"), count=60, settle=0.5)

    assert by_position(got) == by_position(sent)
    # Within each partition records come back in offset order.
    for p in {r.partition for r in got}:
        offsets = [r.offset for r in got if r.partition == p]
        assert offsets == sorted(offsets)


@pytest.mark.parametrize("client", CLIENTS)
def test_same_key_always_lands_in_the_same_partition(broker, topic_factory, client):
    topic = topic_factory("keys", partitions=6)
    keys = [f"user-{i}" for i in range(40)] + ["김철수", "이영희"]
    sent = produce(client, broker.bootstrap, topic, orders(420, keys), acks="all")

    partitions_of = defaultdict(set)
    for r in sent:
        partitions_of[r.key].add(r.partition)
    assert all(len(ps) == 1 for ps in partitions_of.values()), dict(partitions_of)
    assert len({next(iter(ps)) for ps in partitions_of.values()}) > 1, "all keys in one partition"

    # What a consumer reads agrees with what the producer was told, in send order per key.
    got = consume(client, broker.bootstrap, topic, unique_name("g"), count=len(sent))
    assert by_position(got) == by_position(sent)
    for key in keys:
        assert {r.partition for r in got if r.key == key} == partitions_of[key]
        assert [r.value["order_id"] for r in got if r.key == key] == \
            [r.value["order_id"] for r in sent if r.key == key]


@pytest.mark.parametrize("client", CLIENTS)
def test_records_without_key_spread_over_partitions(broker, topic_factory, client):
    topic = topic_factory("nokey", partitions=4)
    # A pause between sends lets librdkafka's sticky partitioner (10 ms) move on.
    sent = produce(client, broker.bootstrap, topic, [(None, {"n": i}) for i in range(40)],
                   pause=0.03)
    assert len({r.partition for r in sent}) > 1


@pytest.mark.auto_create
def test_producing_to_a_missing_topic_creates_it(broker):
    topic = unique_name("autocreated")
    sent = produce("confluent-kafka", broker.bootstrap, topic, [("k", {"n": 1})])
    assert sent[0].offset == 0
    got = consume("kafka-python", broker.bootstrap, topic, unique_name("g"), count=1)
    assert [(r.key, r.value) for r in got] == [("k", {"n": 1})]


# ----------------------------------------------------------------------------- groups


def poll_until(members: list[GroupMember], done, timeout: float, what: str) -> None:
    """Polls every open member in turn (rebalances need all of them to poll) until
    ``done()`` holds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; assignments: "
                + str([sorted(m.assignment()) for m in members if not m.closed]))
        for m in members:
            if not m.closed:
                m.poll(0.1)


GROUP_CASES = [
    ("confluent-kafka", "range"),
    ("confluent-kafka", "roundrobin"),
    ("confluent-kafka", "cooperative-sticky"),
    ("kafka-python", "range"),
    ("kafka-python", "roundrobin"),
    ("kafka-python", "cooperative-sticky"),
    # The consumer group protocol (KIP-848): the broker assigns.
    ("confluent-kafka", "consumer:uniform"),
    ("confluent-kafka", "consumer:range"),
]


@pytest.mark.parametrize("client,strategy", GROUP_CASES)
def test_two_consumers_split_partitions_and_one_takes_over(broker, topic_factory, client, strategy):
    topic = topic_factory("split", partitions=4)
    group = unique_name("g")
    a = GroupMember(client, broker.bootstrap, topic, group, strategy, client_id="member-a")
    b = None
    try:
        poll_until([a], lambda: a.assignment() == {0, 1, 2, 3}, 60, "a alone to own 4 partitions")

        b = GroupMember(client, broker.bootstrap, topic, group, strategy, client_id="member-b")
        poll_until([a, b], lambda: len(a.assignment()) == 2 and len(b.assignment()) == 2, 90,
                   "a and b to own 2 partitions each")
        assert a.assignment() | b.assignment() == {0, 1, 2, 3}
        # The group runs the strategy the members asked for (the broker picks the protocol).
        split = {frozenset(a.assignment()), frozenset(b.assignment())}
        if strategy in ("range", "consumer:range"):
            assert split == {frozenset({0, 1}), frozenset({2, 3})}
        elif strategy == "roundrobin":
            assert split == {frozenset({0, 2}), frozenset({1, 3})}

        b.close()
        poll_until([a], lambda: a.assignment() == {0, 1, 2, 3}, 90,
                   "a to take over all 4 partitions after b left")
    finally:
        a.close()
        if b is not None:
            b.close()


@pytest.mark.parametrize("client,strategy", [(c, "range") for c in CLIENTS]
                         + [("confluent-kafka", "consumer:uniform")])
def test_consumer_beyond_partition_count_stays_idle(broker, topic_factory, client, strategy):
    topic = topic_factory("idle", partitions=2)
    group = unique_name("g")
    members = []
    try:
        for i in range(3):
            members.append(GroupMember(client, broker.bootstrap, topic, group, strategy,
                                       client_id=f"member-{i}"))
            poll_until(members, lambda: set().union(*(m.assignment() for m in members)) == {0, 1},
                       60, "the group to own both partitions")
        poll_until(members, lambda: sorted(len(m.assignment()) for m in members) == [0, 1, 1], 90,
                   "one partition each for two members and none for the third")
    finally:
        for m in members:
            m.close()


def test_separate_groups_each_see_every_message(broker, topic_factory):
    topic = topic_factory("fanout", partitions=3)
    sent = produce("confluent-kafka", broker.bootstrap, topic, orders(30, ["a", "b", "c"]))
    for client in CLIENTS:
        got = consume(client, broker.bootstrap, topic, unique_name(f"g-{client}"), count=30,
                      settle=0.5)
        assert by_position(got) == by_position(sent)


@pytest.mark.parametrize("client,strategy", [(c, None) for c in CLIENTS]
                         + [("confluent-kafka", "consumer:uniform")])
def test_committed_offsets_resume_where_the_consumer_stopped(broker, topic_factory, client,
                                                             strategy):
    topic = topic_factory("resume", partitions=3)
    group = unique_name("order-processor")
    sent = produce(client, broker.bootstrap, topic, orders(90, [f"u{i}" for i in range(9)]))

    # Commits from a member of the consumer protocol carry its member epoch.
    first = GroupMember(client, broker.bootstrap, topic, group, strategy)
    seen: list[Record] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 30:
            assert time.monotonic() < deadline, f"first consumer got only {len(seen)} records"
            seen += first.poll(0.5)
        # Commit exactly what was processed: the next offset per partition.
        positions: dict[int, int] = {}
        for r in seen:
            positions[r.partition] = max(positions.get(r.partition, 0), r.offset + 1)
        first.commit(positions, topic)
    finally:
        first.close()

    rest = consume(client, broker.bootstrap, topic, group, count=len(sent) - len(seen), settle=1.0,
                   strategy=strategy)

    expected = {k: v for k, v in by_position(sent).items() if k[1] >= positions.get(k[0], 0)}
    assert by_position(rest) == expected


# --------------------------------------------------------------------------- restarts


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_data_and_committed_offsets_survive_a_broker_restart(make_broker, how):
    broker = make_broker()
    topic = create_topic(broker.bootstrap, unique_name("durable"), partitions=3)
    group = unique_name("g")
    sent = produce("confluent-kafka", broker.bootstrap, topic,
                   orders(150, [f"k{i}" for i in range(15)]), acks="all")
    member = GroupMember("confluent-kafka", broker.bootstrap, topic, group)
    seen: list[Record] = []
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 60:
            assert time.monotonic() < deadline
            seen += member.poll(0.5)
        positions: dict[int, int] = {}
        for r in seen:
            positions[r.partition] = max(positions.get(r.partition, 0), r.offset + 1)
        member.commit(positions, topic)
    finally:
        member.close()

    broker.restart(kill=(how == "sigkill"))
    wait_for_leaders(broker.bootstrap, topic, 3, timeout=120)

    # Every record is still there at its offset...
    stored = read_partitions(broker.bootstrap, topic, range(3))
    assert {(p, o): v for p, recs in stored.items() for o, v in recs} == \
        {(r.partition, r.offset): encode(r.value) for r in sent}
    # ...and the group resumes at its committed offsets (read back by the other client).
    rest = consume("kafka-python", broker.bootstrap, topic, group,
                   count=len(sent) - len(seen), settle=1.0)
    expected = {k: v for k, v in by_position(sent).items() if k[1] >= positions.get(k[0], 0)}
    assert by_position(rest) == expected
