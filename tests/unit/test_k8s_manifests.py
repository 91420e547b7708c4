"""deploy/k8s and deploy/training.Dockerfile, checked offline: every manifest against the Kubernetes OpenAPI
schemas (kubernetes-validate ships them, no cluster or network needed), and every probe path, port, env name,
command line and image against the code that has to answer them. No Docker engine here: the Dockerfile is
checked for what can be checked without building it."""

from __future__ import annotations

import copy
import re
import shlex
import tomllib
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import kubernetes_validate
import pytest
import yaml

from admin.settings import AdminSettings
from deploy import manifests as mf
from serving.settings import ServeSettings

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"  # the oldest Kubernetes these manifests target (native preStop/gRPC probes, HPA v2)
DOCKERFILE = ROOT / "deploy" / "training.Dockerfile"
ALL = mf.load_all()
RESOURCES = [m for m in ALL if m.file != mf.KUSTOMIZATION]
# The AWS SDKs' standard variables; nothing imgserve-specific configures S3.
AWS_ENV = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"}


def serving() -> dict:
    return mf.container(mf.find(ALL, "Deployment", mf.SERVING))


def admin() -> dict:
    return mf.container(mf.find(ALL, "Deployment", mf.ADMIN))


def retrain() -> dict:
    return mf.container(mf.find(ALL, "CronJob", mf.RETRAIN))


@pytest.mark.parametrize("manifest", RESOURCES, ids=lambda m: f"{m.file}:{m.kind}/{m.name}")
def test_manifest_matches_the_kubernetes_schema(manifest: mf.Manifest) -> None:
    problem = None
    try:
        kubernetes_validate.validate(manifest.doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:  # its str() dumps the whole schema: name the spot
        problem = f"{manifest.file}: {exc.message} at {'/'.join(map(str, exc.path))}"
    assert problem is None, problem


def test_kustomization_lists_every_manifest_but_the_secret_examples() -> None:
    kustomization = yaml.safe_load((mf.K8S_DIR / mf.KUSTOMIZATION).read_text())
    files = {m.file for m in RESOURCES} - {"secrets.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert all(m.kind != "Secret" for m in RESOURCES if m.file in files), "real keys must not be in the base"
    images = {i["name"] for i in kustomization["images"]}
    assert {serving()["image"], admin()["image"], retrain()["image"]} == images


def bentoml_system_routes() -> dict[str, str]:
    """BentoML's own route table (name -> path): what /livez and /readyz are, from the installed BentoML."""
    from bentoml._internal.server.base_app import BaseAppFactory

    def endpoint(_: object) -> None: ...

    fake_app = SimpleNamespace(livez=endpoint, readyz=endpoint, metrics=endpoint)
    return {r.name: r.path for r in BaseAppFactory.get_system_routes(fake_app)}  # type: ignore[arg-type]


def test_serving_probes_ports_and_image_match_the_service() -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.container.generate import BENTO_UID_GID

    ctr, routes = serving(), bentoml_system_routes()
    assert mf.probe_path(ctr, "readinessProbe") == routes["readyz"]
    assert mf.probe_path(ctr, "livenessProbe") == routes["livez"]
    assert mf.probe_path(ctr, "startupProbe") == routes["livez"]  # alive without a model; ready comes later
    assert mf.port(ctr, "http") == BentoMLContainer.http.port.get()  # the bento image's `bentoml serve`
    assert mf.port(ctr, "grpc") == int(mf.env_value(ctr, "IMGSERVE_GRPC_PORT") or 0)
    assert mf.port(ctr, "grpc") == ServeSettings.model_fields["grpc_port"].default
    from serving.grpc_health import SERVICES  # a kubelet `grpc: {port: 8001}` probe asks for service ""

    assert "" in SERVICES
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert ctr["image"] == bentofile["name"]
    assert not [p for p in bentofile["python"]["packages"] if re.match(r"(tensorflow|keras|tf2onnx)\b", p)]
    pod = mf.pod_spec(mf.find(ALL, "Deployment", mf.SERVING))
    assert pod["securityContext"]["runAsUser"] == BENTO_UID_GID  # the image names its user; runAsNonRoot needs a uid


def drain_seconds(ctr: dict) -> float:
    """The service's bound on its SIGTERM drain: the container's setting, else the settings default."""
    return float(mf.env_value(ctr, "IMGSERVE_DRAIN_S") or ServeSettings.model_fields["drain_s"].default)


def test_grace_period_covers_prestop_and_drain() -> None:
    ctr = serving()
    pod = mf.pod_spec(mf.find(ALL, "Deployment", mf.SERVING))
    assert pod["terminationGracePeriodSeconds"] >= mf.prestop_sleep_s(ctr) + drain_seconds(ctr) + 5
    readiness = ctr["readinessProbe"]
    # a draining pod (/readyz 503) leaves the endpoints within the preStop sleep
    assert readiness["periodSeconds"] * readiness.get("failureThreshold", 3) <= mf.prestop_sleep_s(ctr)


def test_services_hpa_and_pdb_select_the_pods_they_mean() -> None:
    for name in (mf.SERVING, mf.ADMIN):
        deployment = mf.find(ALL, "Deployment", name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        service = mf.find(ALL, "Service", name)
        assert service["spec"]["selector"].items() <= labels.items()
        named = {p["name"] for p in mf.container(deployment)["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= named
    svc_ports = {p["name"]: p["port"] for p in mf.find(ALL, "Service", mf.SERVING)["spec"]["ports"]}
    assert svc_ports == {"http": 3000, "grpc": 8001}
    labels = mf.find(ALL, "Deployment", mf.SERVING)["spec"]["template"]["metadata"]["labels"]
    assert mf.find(ALL, "PodDisruptionBudget", mf.SERVING)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = mf.find(ALL, "HorizontalPodAutoscaler", mf.SERVING)["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": mf.SERVING}
    assert hpa["minReplicas"] >= 2  # with the PDB's maxUnavailable 1, a drain never empties the service


def env_names(ctr: dict) -> set[str]:
    """Names a container gets: its env, plus every key of the ConfigMaps/Secrets it loads whole."""
    names = {e["name"] for e in ctr.get("env", [])}
    for src in ctr.get("envFrom", []):
        kind, ref = ("ConfigMap", src["configMapRef"]) if "configMapRef" in src else ("Secret", src["secretRef"])
        doc = mf.find(ALL, kind, ref["name"])
        names |= set(doc.get("data", {})) | set(doc.get("stringData", {}))
    return names


def cli_env_names() -> set[str]:
    """IMGSERVE_* variables the imgserve CLI reads itself (beside the settings objects)."""
    text = "".join(p.read_text() for p in (ROOT / "imgserve" / "commands").glob("*.py"))
    return set(re.findall(r"IMGSERVE_[A-Z_]+", text))


def settings_env(*classes: type) -> set[str]:
    return {f"IMGSERVE_{field.upper()}" for cls in classes for field in cls.model_fields}


def test_every_env_name_is_read_by_the_code() -> None:
    serve_reads = settings_env(ServeSettings) | AWS_ENV | {"BENTOML_DO_NOT_TRACK"}
    train_reads = settings_env(AdminSettings) | cli_env_names() | AWS_ENV
    workloads = {"serving": (serving(), serve_reads), "admin": (admin(), train_reads), "retrain": (retrain(), train_reads)}
    for what, (ctr, reads) in workloads.items():
        own = {e["name"] for e in ctr.get("env", [])}
        assert own <= reads, f"{what}: not read by the code: {own - reads}"
    config = mf.find(ALL, "ConfigMap", "imgserve-config")["data"]
    everyone = serve_reads | train_reads
    assert set(config) <= everyone, f"ConfigMap keys nobody reads: {set(config) - everyone}"
    assert config["IMGSERVE_MODELS_DIR"].startswith("s3://")
    for ctr, _ in workloads.values():
        assert {"IMGSERVE_MODELS_DIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"} <= env_names(ctr)
    secrets = {m.name: m.doc["stringData"] for m in ALL if m.kind == "Secret"}
    for ctr in (serving(), admin()):
        for e in ctr["env"]:
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets[ref["name"]], e


def test_admin_runner_and_retrain_command_lines_are_real(tmp_path: Path) -> None:
    from admin.app import create_app
    from imgserve.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(admin()["args"])
    assert args.func.__name__ == "run_admin" and args.host == "0.0.0.0"
    assert args.port == mf.port(admin(), "http")
    assert {"IMGSERVE_ADMIN_TOKEN"} <= {e["name"] for e in admin()["env"]}  # it refuses 0.0.0.0 without one
    paths = {getattr(r, "path", None) for r in create_app(AdminSettings(data_dir=tmp_path)).routes}
    assert mf.probe_path(admin(), "readinessProbe") in paths
    assert mf.probe_path(admin(), "livenessProbe") in paths
    job = parser.parse_args(retrain()["args"])
    assert job.func.__name__ == "retrain_command" and job.via is None  # runs here, against the S3 registry
    mounts = {v["mountPath"] for v in retrain()["volumeMounts"]}
    assert any(str(job.data[0]).startswith(m) for m in mounts)
    url = urlparse(next(e["value"] for e in admin()["env"] if e["name"] == "IMGSERVE_SERVICE_URL"))
    assert (url.hostname, url.port) == (mf.SERVING, 3000)


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def test_training_dockerfile_copies_what_exists_and_runs_the_real_cli() -> None:
    from imgserve.cli import build_parser

    steps = dockerfile_instructions()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = [src for op, arg in steps if op == "COPY" for src in shlex.split(arg)[:-1]]
    assert copied, "nothing copied"
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
    ignore = (DOCKERFILE.parent / (DOCKERFILE.name + ".dockerignore")).read_text().splitlines()
    assert {f"!{src}" for src in copied} <= set(ignore), "the .dockerignore hides a COPY source"
    # every package the project installs, but the benchmarks: a new one must be copied (or excluded here)
    packages = set(pyproject["tool"]["setuptools"]["packages"]["find"]["include"]) - {"benchmarks*"}
    assert {f"{p.rstrip('*')}/" for p in packages} == set(copied) - {"pyproject.toml", "README.md"}
    installs = [arg for op, arg in steps if op == "RUN" and "pip install" in arg]
    extras = set(re.findall(r"\.\[([a-z0-9,-]+)\]", installs[0])[0].split(","))
    assert extras <= set(pyproject["project"]["optional-dependencies"]) and "train" in extras
    entrypoint = yaml.safe_load(next(arg for op, arg in steps if op == "ENTRYPOINT"))
    assert entrypoint == ["imgserve"] and "imgserve" in pyproject["project"]["scripts"]
    cmd = build_parser().parse_args(yaml.safe_load(next(arg for op, arg in steps if op == "CMD")))
    assert cmd.func.__name__ == "run_admin"
    assert next(arg for op, arg in steps if op == "EXPOSE") == str(mf.port(admin(), "http"))
    uid = int(next(arg for op, arg in steps if op == "USER"))
    for workload in (mf.find(ALL, "Deployment", mf.ADMIN), mf.find(ALL, "CronJob", mf.RETRAIN)):
        assert mf.pod_spec(workload)["securityContext"]["runAsUser"] == uid
    assert all(c["image"] == "imgserve-train" for c in (admin(), retrain()))


def apply_json6902(doc: dict, ops: list[dict]) -> dict:
    """The 'replace' and 'add' operations of RFC 6902 on a copy of ``doc`` (all this base's patches use)."""
    out = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] in ("replace", "add"), op
        *parents, last = [int(p) if p.isdigit() else p for p in op["path"].strip("/").split("/")]
        target = out
        for key in parents:
            target = target[key]
        target[last] = op["value"]
    return out


def test_grpc_readiness_component_patches_the_serving_deployment_validly() -> None:
    root = mf.K8S_DIR / "components" / "grpc-readiness"
    component = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    (patch,) = component["patches"]
    deployment = mf.find(ALL, patch["target"]["kind"], patch["target"]["name"])
    patched = apply_json6902(deployment, yaml.safe_load((root / patch["path"]).read_text()))
    kubernetes_validate.validate(patched, K8S_VERSION, strict=True)
    probe = mf.container(patched)["readinessProbe"]
    assert probe["grpc"]["port"] == mf.port(serving(), "grpc") and "service" not in probe  # service "" (the server)
    assert {k: v for k, v in probe.items() if k != "grpc"} == {
        k: v for k, v in serving()["readinessProbe"].items() if k != "httpGet"}  # same timing as the HTTP one
