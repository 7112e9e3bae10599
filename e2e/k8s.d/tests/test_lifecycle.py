"""`e2e/k8s up` and `down` themselves: up is idempotent, down leaves no process, mount, bridge or
iptables rule behind, and a second up after down works. Runs last (it restarts the cluster)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from kube import K8S, k8s, kubectl_json, state_dir

pytestmark = pytest.mark.skipif(os.environ.get("E2E_K8S_LIFECYCLE") == "0", reason="E2E_K8S_LIFECYCLE=0")

PROGRAMS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
            "containerd", "containerd-shim-runc-v2", "coredns", "fjord-broker", "pause", "probe"}


def leftover_processes() -> list[str]:
    """Processes of the cluster: its programs, and anything running from its state directory
    (a container's root file system lives there)."""
    state = str(state_dir())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        name = exe.removesuffix(" (deleted)").rsplit("/", 1)[-1]
        if exe.startswith(state) or (name in PROGRAMS and (state in cmdline or name.startswith(("kube", "etcd", "containerd")))):
            found.append(f"{entry.name} {exe} {cmdline[:120]}")
    return found


def leftover_mounts() -> list[str]:
    state = str(state_dir())
    with open("/proc/self/mountinfo") as f:
        return [line.strip() for line in f if state in line]


def iptables_leftovers() -> list[str]:
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        rules = subprocess.run([tool], capture_output=True, text=True, timeout=30).stdout
        out += [line for line in rules.splitlines() if any(m in line for m in ("KUBE-", "CNI-", "FJORD-"))]
    return out


def node_ready() -> bool:
    node = kubectl_json("get", "node", "fjord")
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])


def test_up_on_a_running_cluster_changes_nothing():
    started = time.monotonic()
    proc = k8s("up", timeout=120)
    assert "already up" in proc.stderr
    assert time.monotonic() - started < 60


def test_down_leaves_nothing_behind_and_a_second_up_works():
    k8s("down", timeout=300)
    assert leftover_processes() == []
    assert leftover_mounts() == []
    assert subprocess.run(["ip", "link", "show", "fjord0"], capture_output=True, timeout=10).returncode != 0
    assert iptables_leftovers() == []
    assert subprocess.run([str(K8S), "status"], capture_output=True, timeout=60).returncode != 0

    # A second down is harmless.
    k8s("down", timeout=300)

    started = time.monotonic()
    k8s("up", timeout=900)
    print(f"warm up took {time.monotonic() - started:.0f}s")
    assert node_ready()
    assert subprocess.run([str(K8S), "status"], capture_output=True, timeout=60).returncode == 0
