"""Fixtures for the client-compatibility suite (helpers live in support.py).

- ``kafka_bin``: the directory of the Apache Kafka command-line tools.
- ``broker``: one broker for the whole session (tests use fresh topic names).
- ``make_broker``: a factory for private brokers that a test may stop, kill and restart.
- ``topic_factory``: creates a fresh topic on the session broker.

``E2E_TARGET=kafka`` runs everything against Apache Kafka instead of Fjord.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest

from support import Broker, create_topic, install_kafka, new_broker, unique_name


def pytest_configure(config):
    # A SIGTERM (a CI time limit, a parent's kill) becomes KeyboardInterrupt, so that the
    # fixtures' teardown stops the brokers, which run in their own sessions.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def kafka_bin() -> Path:
    """Bin directory of Apache Kafka's tools (installed from Maven Central on first use)."""
    return install_kafka()


@pytest.fixture(scope="session")
def broker(tmp_path_factory, kafka_bin) -> Iterator[Broker]:
    b = new_broker(tmp_path_factory.mktemp("broker"), kafka_bin)
    try:
        b.start()
        yield b
    finally:
        b.close()


@pytest.fixture
def make_broker(tmp_path_factory, kafka_bin) -> Iterator[Callable[[], Broker]]:
    """Starts private brokers for tests that stop or kill them; all are closed afterwards."""
    started: list[Broker] = []

    def make() -> Broker:
        b = new_broker(tmp_path_factory.mktemp("private-broker"), kafka_bin)
        started.append(b)
        b.start()
        return b

    yield make
    for b in started:
        b.close()


@pytest.fixture
def topic_factory(broker) -> Callable[..., str]:
    def make(prefix: str = "t", partitions: int = 3, config: dict | None = None) -> str:
        return create_topic(broker.bootstrap, unique_name(prefix), partitions, config)

    return make


