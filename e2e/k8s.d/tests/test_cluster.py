"""The cluster itself: a Ready node, cluster DNS, a default StorageClass, CRDs installed by the
helper with their schemas enforced."""

from __future__ import annotations

import subprocess

from kube import FIXTURES, K8S, kubectl, kubectl_json, run, wait_until


def test_the_node_is_ready_and_coredns_runs():
    nodes = kubectl_json("get", "nodes")["items"]
    assert len(nodes) == 1
    conditions = {c["type"]: c["status"] for c in nodes[0]["status"]["conditions"]}
    assert conditions["Ready"] == "True", conditions
    assert nodes[0]["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")

    pods = kubectl_json("-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns")["items"]
    assert pods, "no CoreDNS pod"
    for pod in pods:
        assert pod["status"]["phase"] == "Running", pod["status"]
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["status"]


def test_the_kubernetes_service_and_dns_service_have_endpoints():
    for ns, svc in (("default", "kubernetes"), ("kube-system", "kube-dns")):
        slices = kubectl_json("-n", ns, "get", "endpointslices", "-l", f"kubernetes.io/service-name={svc}")["items"]
        addresses = [a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]]
        assert addresses, f"{ns}/{svc} has no endpoints"


def test_there_is_a_default_storage_class():
    classes = kubectl_json("get", "storageclass")["items"]
    defaults = [c["metadata"]["name"] for c in classes
                if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert defaults == ["standard"]


WIDGET = """
apiVersion: e2e.fjord.dev/v1alpha1
kind: Widget
metadata:
  name: {name}
  namespace: {namespace}
spec:
{spec}
"""


def test_install_crds_waits_for_established_and_the_schema_is_enforced(namespace):
    out = run([str(K8S), "install-crds", str(FIXTURES / "crds")], timeout=120).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.e2e.fjord.dev" in out
    try:
        crd = kubectl_json("get", "crd", "widgets.e2e.fjord.dev")
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established["Established"] == "True"

        # Right after the helper returns, objects of the new kind are accepted...
        good = WIDGET.format(name="good", namespace=namespace, spec="  size: 3\n  color: green")
        kubectl("apply", "-f", "-", input=good)
        assert kubectl_json("-n", namespace, "get", "widget", "good")["spec"]["size"] == 3

        # ...and the schema rejects what it does not allow, naming the field.
        for spec, field in (("  size: 11", "spec.size"), ("  size: many", "spec.size"),
                            ("  size: 2\n  color: purple", "spec.color"), ("  color: red", "spec.size")):
            bad = WIDGET.format(name="bad", namespace=namespace, spec=spec)
            proc = kubectl("apply", "-f", "-", input=bad, check=False)
            assert proc.returncode != 0, f"accepted an invalid widget: {spec!r}"
            assert "Invalid value" in proc.stderr or "Required value" in proc.stderr or "Unsupported value" in proc.stderr, proc.stderr
            assert field in proc.stderr, proc.stderr
        assert kubectl("-n", namespace, "get", "widget", "bad", check=False).returncode != 0

        # Installing the same folder again is a no-op that still succeeds.
        run([str(K8S), "install-crds", str(FIXTURES / "crds")], timeout=120)
    finally:
        kubectl("delete", "crd", "widgets.e2e.fjord.dev", "--wait=false", check=False)


def test_install_crds_fails_on_a_missing_folder():
    proc = subprocess.run([str(K8S), "install-crds", str(FIXTURES / "no-such-folder")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "no such folder" in proc.stderr


def test_an_image_that_was_not_imported_is_not_pulled(namespace):
    # Pulls go to a closed port on loopback: the pod fails fast with an image error instead of
    # reaching a registry.
    kubectl("-n", namespace, "run", "nopull", "--image=docker.io/fjord/does-not-exist:1", "--restart=Never")

    def waiting_reason():
        pod = kubectl_json("-n", namespace, "get", "pod", "nopull")
        for s in pod["status"].get("containerStatuses") or []:
            reason = (s.get("state", {}).get("waiting") or {}).get("reason")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                return reason
        return None

    wait_until("the pull to fail", waiting_reason, timeout=60)
    kubectl("-n", namespace, "delete", "pod", "nopull", "--wait=false")


def test_helm_installs_and_uninstalls_a_chart(namespace):
    chart = FIXTURES / "charts" / "smoke"
    run(["helm", "install", "smoke", str(chart), "-n", namespace, "--set", "message=hej", "--wait", "--timeout", "60s"],
        timeout=90)
    data = kubectl_json("-n", namespace, "get", "configmap", "smoke-smoke")["data"]
    assert data["message"] == "hej"
    # The chart saw the server's version (kubeVersion constraints in charts depend on it).
    assert data["kubeVersion"].startswith("v1.")
    assert "deployed" in run(["helm", "status", "smoke", "-n", namespace], timeout=30).stdout
    run(["helm", "uninstall", "smoke", "-n", namespace, "--wait", "--timeout", "60s"], timeout=90)
    assert kubectl("-n", namespace, "get", "configmap", "smoke-smoke", check=False).returncode != 0
