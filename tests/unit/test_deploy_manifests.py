"""The Kubernetes manifests (deploy/k8s) pass the Kubernetes and KEDA JSON schemas
(kubernetes-models from npm, run with Node) and agree with the code: the probes the
worker and gateway serve, the consumer group and topics KEDA watches, and a replica
cap equal to the partition count."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas import topics
from streams.gateway.settings import GatewaySettings
from streams.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VALIDATE = K8S / "validate"


def validator() -> list[str]:
    node = shutil.which("node")
    if node is None or not (VALIDATE / "node_modules").is_dir():
        message = "Node.js and `make k8s-deps` are needed to check the manifests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return [node, str(VALIDATE / "validate.mjs")]


def manifests() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def test_every_manifest_passes_the_kubernetes_and_keda_schemas() -> None:
    done = subprocess.run(
        [*validator(), *map(str, manifests())], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "0 problems" in done.stdout
    kinds = {d["kind"] for p in manifests() for d in docs(p.name)}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ScaledObject"} <= kinds
    assert {"ConfigMap", "Secret", "TriggerAuthentication", "Kustomization"} <= kinds


def test_the_schema_check_fails_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (K8S / "worker-scaledobject.yaml")
        .read_text()
        .replace("maxReplicaCount: 6", "maxReplicaCount: six")
    )
    done = subprocess.run([*validator(), str(broken)], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "maxReplicaCount must be integer" in done.stderr


def test_the_manifests_agree_with_the_code() -> None:
    (scaled, auth) = docs("worker-scaledobject.yaml")
    spec = scaled["spec"]
    partitions = int(docs("configmap.yaml")[0]["data"]["GUARDIAN_WORKER_PARTITIONS"])
    assert partitions == WorkerSettings().partitions
    assert spec["maxReplicaCount"] == partitions, "a worker past the partitions holds none"
    assert spec["minReplicaCount"] >= 1
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    names = {t.name for t in topics.ALL}
    for trigger in spec["triggers"]:
        assert trigger["metadata"]["consumerGroup"] == WorkerSettings().app_id
        assert trigger["metadata"]["topic"] in names
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]

    (worker,) = docs("worker-deployment.yaml")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == WorkerSettings().metrics_port
    (gateway,) = docs("gateway-deployment.yaml")
    (served,) = gateway["spec"]["template"]["spec"]["containers"]
    assert served["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert served["ports"][0]["containerPort"] == GatewaySettings().port
    (pdb,) = docs("worker-pdb.yaml")
    assert pdb["spec"]["selector"] == worker["spec"]["selector"]
    resources = docs("kustomization.yaml")[0]["resources"]
    assert sorted(resources) == sorted(
        p.name for p in manifests() if p.name != "kustomization.yaml"
    )


def test_the_compose_file_names_files_that_exist_and_the_probes_the_worker_serves() -> None:
    deploy = ROOT / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    services = compose["services"]
    assert {"broker", "worker", "gateway", "prometheus", "grafana"} <= set(services)
    for service in services.values():
        for volume in service.get("volumes", []):
            host = volume.split(":", 1)[0]
            if not host.startswith("./.gateway"):  # the user's own key file
                assert (deploy / host).exists(), host
    assert services["worker"]["build"]["dockerfile"] == "deploy/Dockerfile"
    (worker,) = docs("worker-deployment.yaml")
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert services["worker"]["image"] == container["image"]
    assert "/healthz" in " ".join(services["worker"]["healthcheck"]["test"])


def test_an_installed_copy_holds_every_package_and_the_dashboard() -> None:
    # What `pip install .` (the image) packages: every subpackage of the four layers.
    from setuptools import find_packages  # type: ignore[import-untyped]

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set(find_packages(str(ROOT), include=config["packages"]["find"]["include"]))
    assert {"streams.gateway", "streams.bench", "streams.eval", "streams.chaos"} <= found
    assert "tests" not in found
    assert "gateway/static/*" in config["package-data"]["streams"]
