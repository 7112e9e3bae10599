"""Fixtures for the Kubernetes end-to-end tests (run by e2e/k8s-test against `e2e/k8s up`).

- ``cluster``: checks once that the cluster is up (the session stops otherwise).
- ``namespace``: a fresh namespace per test module, deleted afterwards.
"""

from __future__ import annotations

import signal
from typing import Iterator

import pytest

from kube import K8S, kubectl, run, unique


def pytest_configure(config):
    # A SIGTERM (a CI time limit) becomes KeyboardInterrupt, so fixtures still clean up.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session", autouse=True)
def cluster() -> None:
    status = run([str(K8S), "status"], timeout=60, check=False)
    if status.returncode != 0:
        pytest.exit(f"the cluster is not up (run e2e/k8s up first):\n{status.stdout}{status.stderr}", returncode=1)


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    name = unique("e2e")
    kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)
