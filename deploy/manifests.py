"""Read the Kubernetes manifests in ``deploy/k8s`` as plain dicts, so that tests and the replica rehearsal
take probe paths, ports and settings from the same files a cluster applies (one fact in one place)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

K8S_DIR = Path(__file__).resolve().parent / "k8s"
KUSTOMIZATION = "kustomization.yaml"
SERVING = "imgserve"  # the serving Deployment and Service (the bento's name, bentofile.yaml)
ADMIN = "imgserve-admin"
RETRAIN = "imgserve-retrain"


@dataclass(frozen=True)
class Manifest:
    file: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc["kind"])

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


def load_all(root: Path = K8S_DIR) -> list[Manifest]:
    """Every YAML document under ``root`` (the kustomization included), in file order."""
    out = []
    for path in sorted(root.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append(Manifest(path.name, doc))
    return out


def find(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    matches = [m.doc for m in manifests if m.kind == kind and m.name == name]
    if len(matches) != 1:
        raise LookupError(f"expected one {kind} {name!r} in {K8S_DIR}, found {len(matches)}")
    return matches[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, Job or CronJob."""
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(workload)["containers"]
    return only


def port(ctr: dict[str, Any], name: str) -> int:
    return next(int(p["containerPort"]) for p in ctr["ports"] if p["name"] == name)


def probe_path(ctr: dict[str, Any], probe: str) -> str:
    """``readinessProbe`` / ``livenessProbe`` / ``startupProbe`` HTTP path."""
    return str(ctr[probe]["httpGet"]["path"])


def prestop_sleep_s(ctr: dict[str, Any]) -> float:
    pre = ctr["lifecycle"]["preStop"]
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = pre["exec"]["command"]
    if command[0] != "sleep":
        raise ValueError(f"preStop is not a sleep: {command}")
    return float(command[1])


def env_value(ctr: dict[str, Any], name: str) -> str | None:
    for item in ctr.get("env", []):
        if item["name"] == name:
            return item.get("value")
    return None
