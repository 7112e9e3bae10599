"""The broker image in the cluster: a StatefulSet with a volume claim, found through the headless
Service's DNS names from inside the cluster, and used by Kafka clients on the host through its
pod IP (advertised via the downward API) and through a ClusterIP Service (kube-proxy)."""

from __future__ import annotations

from typing import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer

from kube import MANIFESTS, kubectl, kubectl_json, unique, wait_until


def pod_ip(namespace: str, pod: str) -> str:
    return kubectl("-n", namespace, "get", "pod", pod, "-o", "jsonpath={.status.podIP}").stdout.strip()


@pytest.fixture(scope="module")
def broker(namespace) -> Iterator[str]:
    """Deploys manifests/broker.yaml and yields the namespace once the broker and the probe
    pod are Ready."""
    kubectl("-n", namespace, "apply", "-f", str(MANIFESTS / "broker.yaml"))
    rollout = kubectl("-n", namespace, "rollout", "status", "statefulset/fjord", "--timeout=180s", timeout=200, check=False)
    if rollout.returncode != 0:
        describe = kubectl("-n", namespace, "describe", "pods", check=False).stdout
        raise AssertionError(f"the broker did not become ready:\n{rollout.stderr}\n{describe}")
    kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/probe", "--timeout=120s", timeout=130)
    yield namespace


def probe(namespace: str, *args: str, timeout: float = 60, check: bool = True):
    return kubectl("-n", namespace, "exec", "probe", "--", "/probe", *args, timeout=timeout, check=check)


def produce_and_consume(bootstrap: str, topic: str, count: int = 20) -> list[bytes]:
    values = [f"message {i} to {topic}".encode() for i in range(count)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=15000,
                             max_block_ms=30000, retries=5)
    try:
        for v in values:
            producer.send(topic, v)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return consume(bootstrap, topic, count)


def consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=30000)
    try:
        got = []
        for record in consumer:
            got.append(record.value)
            if len(got) == count:
                break
        return got
    finally:
        consumer.close()


def test_the_statefulset_runs_the_imported_broker_image_with_a_bound_claim(broker):
    pod = kubectl_json("-n", broker, "get", "pod", "fjord-0")
    assert pod["spec"]["containers"][0]["image"] == "docker.io/fjord/broker:dev"
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    claim = kubectl_json("-n", broker, "get", "pvc", "data-fjord-0")
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == "standard"


def test_headless_service_names_resolve_inside_the_cluster(broker):
    ip = pod_ip(broker, "fjord-0")
    assert ip
    assert probe(broker, "lookup", f"fjord-0.fjord.{broker}.svc.cluster.local", "30s").stdout.split() == [ip]
    # The search path of the pod's resolv.conf (kubelet's clusterDNS and clusterDomain).
    assert probe(broker, "lookup", "fjord-0.fjord", "30s").stdout.split() == [ip]
    assert probe(broker, "lookup", "fjord", "30s").stdout.split() == [ip]
    assert probe(broker, "lookup", "kubernetes.default", "30s").stdout.split() == ["10.96.0.1"]
    # A name that does not exist does not resolve: the checks above are not vacuous.
    missing = probe(broker, "lookup", "no-such-service", "2s", check=False)
    assert missing.returncode != 0


def test_the_broker_port_is_reachable_inside_the_cluster(broker):
    out = probe(broker, "tcp", f"fjord-0.fjord.{broker}.svc.cluster.local:9092", "30s").stdout
    assert out.startswith("connected to ")
    service_ip = kubectl("-n", broker, "get", "svc", "fjord-bootstrap", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    assert probe(broker, "tcp", f"{service_ip}:9092", "30s").stdout.startswith("connected to ")


def test_a_client_on_the_host_produces_and_consumes_through_the_pod_ip(broker):
    topic = unique("k8s-pod-ip")
    bootstrap = f"{pod_ip(broker, 'fjord-0')}:9092"
    got = produce_and_consume(bootstrap, topic)
    assert got == [f"message {i} to {topic}".encode() for i in range(20)]


def test_a_client_on_the_host_bootstraps_through_the_cluster_ip_service(broker):
    service_ip = kubectl("-n", broker, "get", "svc", "fjord-bootstrap", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    assert service_ip.startswith("10.96.")
    topic = unique("k8s-service")
    got = produce_and_consume(f"{service_ip}:9092", topic, count=5)
    assert got == [f"message {i} to {topic}".encode() for i in range(5)]


def test_records_survive_a_pod_restart_on_the_claimed_volume(broker):
    topic = unique("k8s-restart")
    before = produce_and_consume(f"{pod_ip(broker, 'fjord-0')}:9092", topic, count=5)
    assert len(before) == 5
    old_uid = kubectl_json("-n", broker, "get", "pod", "fjord-0")["metadata"]["uid"]
    kubectl("-n", broker, "delete", "pod", "fjord-0", "--wait=true", "--timeout=60s", timeout=70)

    def ready_again():
        # The new pod's address comes from the same object that says it is ready: a separate
        # read once returned an empty podIP right after the restart (CI, session 3).
        pod = kubectl_json("-n", broker, "get", "pod", "fjord-0")
        statuses = pod["status"].get("containerStatuses") or []
        ip = pod["status"].get("podIP")
        ready = pod["metadata"]["uid"] != old_uid and statuses and statuses[0]["ready"]
        return ip if ready and ip else None

    ip = wait_until("fjord-0 to come back", ready_again, timeout=120)
    after = consume(f"{ip}:9092", topic, 5)
    assert after == before
