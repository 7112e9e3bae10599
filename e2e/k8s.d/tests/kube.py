"""Helpers for the Kubernetes end-to-end tests: kubectl, the e2e/k8s entry point, deadlines.

Every call has a timeout; every wait polls observable state until a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, TypeVar

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "e2e" / "k8s"
HERE = Path(__file__).resolve().parent
MANIFESTS = HERE / "manifests"
FIXTURES = HERE / "fixtures"

T = TypeVar("T")


def run(args: list[str], timeout: float = 60, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def kubectl(*args: str, timeout: float = 60, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run(["kubectl", *args], timeout=timeout, input=input, check=check)


def kubectl_json(*args: str, timeout: float = 60) -> Any:
    return json.loads(kubectl(*args, "-o", "json", timeout=timeout).stdout)


def k8s(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs e2e/k8s; its progress goes to the test's output."""
    return run([str(K8S), *args], timeout=timeout)


def wait_until(what: str, attempt: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Calls attempt until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            result = attempt()
            if result is not None and result is not False:
                return result
        except (AssertionError, subprocess.SubprocessError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last}" if last else ""))
        time.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def state_dir() -> Path:
    return Path(os.environ.get("FJORD_K8S_STATE", "/tmp/fjord-k8s"))
