"""Helpers shared by the compatibility tests and their fixtures: free ports, deadlines,
fresh names, broker processes (Fjord or Apache Kafka) and topic creation.

The same tests run against the Fjord broker (default) or, with ``E2E_TARGET=kafka``,
against Apache Kafka 4.x installed from Maven Central by ``e2e/kafka/install``; the
second proves that a test is sound before Fjord has to pass it.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

E2E_DIR = Path(__file__).resolve().parent.parent
REPO = E2E_DIR.parent
TARGET = os.environ.get("E2E_TARGET", "fjord")
if TARGET not in ("fjord", "kafka"):
    raise pytest.UsageError(f"E2E_TARGET must be 'fjord' or 'kafka', not {TARGET!r}")

# The broker's node id; `kafka-topics --describe` must report it as the leader.
NODE_ID = 1
# Broker start-up on a 2-core machine that may be compiling Rust at the same time.
START_TIMEOUT = float(os.environ.get("E2E_START_TIMEOUT", "180"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerExited(Exception):
    """The broker process is gone: waiting for it any longer is pointless."""


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """Polls ``predicate`` until it returns a truthy value, which is returned."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except BrokerExited:
            raise
        except Exception as e:  # noqa: BLE001 - reported if the deadline passes
            last_error = e
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


def install_kafka() -> Path:
    """Runs e2e/kafka/install (fast when warm) and returns the bin directory of the tools."""
    if os.environ.get("KAFKA_BIN"):
        return Path(os.environ["KAFKA_BIN"])
    out = subprocess.run(
        [str(E2E_DIR / "kafka" / "install")],
        check=True, stdout=subprocess.PIPE, text=True, timeout=900,
    )
    path = Path(out.stdout.strip().splitlines()[-1])
    assert (path / "kafka-topics.sh").is_file(), f"no kafka-topics.sh in {path}"
    return path


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Broker:
    """One broker process on loopback: start, stop (SIGTERM), kill (SIGKILL), restart.

    Restarts reuse the same ports and data directory, as an operator restarting a
    broker in place would.
    """

    def __init__(self, workdir: Path, kafka_bin: Path | None):
        self.workdir = workdir
        self.kafka_bin = kafka_bin
        self.port = free_port()
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.node_id = NODE_ID

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """One-time set-up before the first start (for example formatting storage)."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self) -> None:
        """Starts the process without waiting for it to serve (a cluster's nodes serve only
        once enough of them run to elect a metadata leader)."""
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        if self.starts == 0:
            self.prepare()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, start_new_session=True, env=self.env(),
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise BrokerExited(f"broker exited with {code}; log tail:\n{self.log_tail()}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout

        def accepts() -> bool:
            self._check_alive()
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        def answers_metadata() -> bool:
            self._check_alive()
            md = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=5)
            return self.node_id in md.brokers

        try:
            wait_until(accepts, deadline - time.monotonic(), f"{self.bootstrap} to accept TCP")
            wait_until(answers_metadata, max(deadline - time.monotonic(), 5),
                       f"{self.bootstrap} to answer Metadata", interval=0.5)
        except BrokerExited as e:
            raise AssertionError(str(e)) from None
        except AssertionError as e:
            raise AssertionError(f"{e}\nbroker log tail:\n{self.log_tail()}") from None

    def stop(self, timeout: float = 90) -> None:
        """Graceful stop with SIGTERM; fails the test if the broker does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"broker ignored SIGTERM for {timeout}s; log tail:\n{self.log_tail()}") from None

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def restart(self, kill: bool = False) -> None:
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop(timeout=60)
        finally:
            self.kill()


class FjordBroker(Broker):
    def __init__(self, workdir: Path, kafka_bin: Path | None):
        super().__init__(workdir, kafka_bin)
        default = REPO / "target" / "release" / "fjord-broker"
        self.binary = Path(os.environ.get("FJORD_BROKER", default))

    def prepare(self) -> None:
        if not self.binary.is_file():
            raise AssertionError(
                f"Fjord broker binary not found at {self.binary}: run `cargo build --release` "
                "or set FJORD_BROKER (or E2E_TARGET=kafka to run against Apache Kafka)"
            )

    def command(self) -> list[str]:
        overrides = {
            "node.id": str(NODE_ID),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(self.data_dir),
            "fjord.metrics.listener": "127.0.0.1:0",
            "group.initial.rebalance.delay.ms": "0",
        }
        cmd = [str(self.binary)]
        for k, v in overrides.items():
            cmd += ["--override", f"{k}={v}"]
        return cmd


def kraft_properties(node: Broker, quorum: dict[str, str], replication: int) -> dict[str, str]:
    """`server.properties` of a node in KRaft mode, as Apache Kafka's quickstart writes it:
    combined broker and controller, broker-only when the node has no controller port, or
    controller-only (`node.broker` false, as Kafka's `config/controller.properties`);
    `quorum` names the controllers, `replication` is the internal topics' replication factor."""
    controller = getattr(node, "controller_port", None)
    broker = getattr(node, "broker", True)
    if not broker:
        return {
            "process.roles": "controller",
            "node.id": str(node.node_id),
            **quorum,
            "listeners": f"CONTROLLER://127.0.0.1:{controller}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(node.data_dir),
        }
    listeners = f"PLAINTEXT://127.0.0.1:{node.port}"
    if controller is not None:
        listeners += f",CONTROLLER://127.0.0.1:{controller}"
    return {
        "process.roles": "broker,controller" if controller is not None else "broker",
        "node.id": str(node.node_id),
        **quorum,
        "listeners": listeners,
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(node.data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": str(replication),
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min(replication, 2)),
        "group.initial.rebalance.delay.ms": "0",
    }


def write_properties(path: Path, props: dict[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def new_cluster_id() -> str:
    """A random cluster id as `kafka-storage.sh random-uuid` prints it."""
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's Uuid: a leading '-' reads as a flag
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    return cluster_id


def kafka_storage_format(kafka_bin: Path, config: Path, cluster_id: str, *flags: str) -> None:
    """Apache Kafka's explicit format step (Fjord formats an empty directory by itself)."""
    out = subprocess.run(
        [str(kafka_bin / "kafka-storage.sh"), "format", *flags, "-t", cluster_id,
         "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=180,
    )
    assert out.returncode == 0, f"kafka-storage format failed:\n{out.stdout}"


class ApacheKafkaBroker(Broker):
    """Apache Kafka 4.x, one node in KRaft combined mode (broker + controller)."""

    def __init__(self, workdir: Path, kafka_bin: Path | None):
        super().__init__(workdir, kafka_bin)
        assert kafka_bin is not None
        self.controller_port = free_port()
        self.config_path = workdir / "server.properties"

    def prepare(self) -> None:
        quorum = {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}
        props = {
            **kraft_properties(self, quorum, 1),
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        write_properties(self.config_path, props)
        kafka_storage_format(self.kafka_bin, self.config_path, new_cluster_id(), "--standalone")

    def command(self) -> list[str]:
        return [str(self.kafka_bin / "kafka-server-start.sh"), str(self.config_path)]

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if os.environ.get("E2E_KAFKA_REQUEST_LOG"):
            # Logs every request with its API key, version and client software name:
            # the list of what real clients send, for the Fjord broker to implement.
            config = self.workdir / "log4j2-requests.properties"
            base = (self.kafka_bin.parent / "config" / "log4j2.properties").read_text()
            config.write_text(base.replace("logger.request.level = warn",
                                           "logger.request.level = debug"))
            env["KAFKA_LOG4J_OPTS"] = f"-Dlog4j2.configurationFile={config}"
        return env


class ClusterNode(Broker):
    """One node of a cluster, combined broker and controller (broker-only with
    ``controller=False``, controller-only with ``broker=False``), started from a Kafka-style
    `server.properties` file: the same file starts Apache Kafka (after its `kafka-storage.sh
    format`, which Fjord does not need)."""

    def __init__(self, workdir: Path, kafka_bin: Path | None, node_id: int,
                 controller: bool = True, target: str = TARGET, broker: bool = True):
        super().__init__(workdir, kafka_bin)
        self.node_id = node_id
        self.target = target
        self.broker = broker
        self.controller_port = free_port() if controller else None
        self.config_path = workdir / "server.properties"
        self.binary = Path(os.environ.get("FJORD_BROKER", REPO / "target" / "release" / "fjord-broker"))

    def write_config(self, voters: str, extra: dict[str, str]) -> None:
        props = {**kraft_properties(self, {"controller.quorum.voters": voters}, 3), **extra}
        if self.target == "fjord":
            props["fjord.metrics.listener"] = "127.0.0.1:0"
        write_properties(self.config_path, props)

    def format(self, cluster_id: str) -> None:
        if self.target == "kafka":
            kafka_storage_format(self.kafka_bin, self.config_path, cluster_id)

    def command(self) -> list[str]:
        if self.target == "kafka":
            return [str(self.kafka_bin / "kafka-server-start.sh"), str(self.config_path)]
        return [str(self.binary), str(self.config_path)]

    def wait_ready(self, timeout: float) -> None:
        if self.broker:
            return super().wait_ready(timeout)
        # A controller-only node serves no client: running and accepting on its controller
        # listener is all there is to see.
        def accepts() -> bool:
            self._check_alive()
            with socket.create_connection(("127.0.0.1", self.controller_port), timeout=1):
                return True
        try:
            wait_until(accepts, timeout, f"controller {self.node_id} to accept TCP")
        except BrokerExited as e:
            raise AssertionError(str(e)) from None


class Cluster:
    """``n`` combined nodes on loopback with one metadata quorum (`controller.quorum.voters`),
    of Fjord or Apache Kafka (``target``, by default ``E2E_TARGET``); ``node_class`` may be a
    subclass of ClusterNode. With ``brokers``, the ``n`` voters are controller-only and that
    many broker-only nodes (the next ids) serve clients."""

    def __init__(self, workdir: Path, kafka_bin: Path, n: int = 3, extra: dict | None = None,
                 target: str = TARGET, node_class: type[ClusterNode] = ClusterNode,
                 brokers: int = 0):
        self.workdir, self.kafka_bin, self.extra = workdir, kafka_bin, extra or {}
        self.target, self.node_class = target, node_class
        self.nodes = [node_class(workdir / f"node{i}", kafka_bin, i, target=target,
                                 broker=brokers == 0)
                      for i in range(1, n + 1)]
        self.nodes += [node_class(workdir / f"node{i}", kafka_bin, i, controller=False,
                                  target=target)
                       for i in range(n + 1, n + 1 + brokers)]
        self.voters = ",".join(f"{x.node_id}@127.0.0.1:{x.controller_port}"
                               for x in self.nodes if x.controller_port is not None)
        self.cluster_id = new_cluster_id()
        for x in self.nodes:
            x.write_config(self.voters, self.extra)
            x.format(self.cluster_id)

    def add_broker(self) -> ClusterNode:
        """Starts a broker-only node (`process.roles=broker`) with the next node id, as the
        guides add a broker to a running cluster; returns once it serves."""
        node_id = max(x.node_id for x in self.nodes) + 1
        x = self.node_class(self.workdir / f"node{node_id}", self.kafka_bin, node_id,
                            controller=False, target=self.target)
        x.write_config(self.voters, self.extra)
        x.format(self.cluster_id)
        self.nodes.append(x)
        x.start()
        return x

    @property
    def bootstrap(self) -> str:
        return ",".join(x.bootstrap for x in self.nodes if x.broker)

    @property
    def bootstrap_controllers(self) -> str:
        """The voters' controller listeners, for `--bootstrap-controller`."""
        return ",".join(f"127.0.0.1:{x.controller_port}" for x in self.nodes
                        if x.controller_port is not None)

    def node(self, node_id: int) -> ClusterNode:
        return next(x for x in self.nodes if x.node_id == node_id)

    def start(self) -> None:
        for x in self.nodes:
            x.launch()
        for x in self.nodes:
            x.wait_ready(START_TIMEOUT)

    def close(self) -> None:
        # Brokers first: a controlled shutdown needs the controllers.
        for x in sorted(self.nodes, key=lambda x: not x.broker):
            try:
                x.close()
            except AssertionError:
                pass


def new_broker(workdir: Path, kafka_bin: Path) -> Broker:
    cls = ApacheKafkaBroker if TARGET == "kafka" else FjordBroker
    return cls(workdir, kafka_bin)


def create_topic(bootstrap: str, name: str, partitions: int, config: dict | None = None,
                 timeout: float = 60) -> str:
    """Creates a topic with the admin API and waits until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=timeout, request_timeout=timeout,
    )
    futures[name].result(timeout)

    wait_for_leaders(bootstrap, name, partitions, timeout)
    return name


def wait_for_leaders(bootstrap: str, topic: str, partitions: int, timeout: float = 60) -> None:
    """Waits until Metadata shows ``partitions`` partitions of ``topic``, each led by us."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def has_leaders() -> bool:
        md = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if md is None or md.error is not None or len(md.partitions) != partitions:
            return False
        return all(p.leader == NODE_ID for p in md.partitions.values())

    wait_until(has_leaders, timeout, f"leaders for all {partitions} partitions of {topic}")
