"""Live operations on an s3:// registry, against a real S3 API server (moto_server): the prediction log's finished
files uploaded under the registry's ``_predictions/`` prefix and exported back by the CLI, and a version's
``reference.json`` fetched into the replica's cache beside its model file, so drift is tracked there too."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imgserve.cli import main as cli
from inference.reference import PSI_SIGNIFICANT, REFERENCE_FILE, build_reference
from inference.registry import Registry
from inference.session import OnnxClassifier, SessionOptions
from serving.loading import VersionLoader
from serving.ops import LiveOps
from serving.predlog import PredictionLog, PredictionLogConfig
from serving.predlog_sink import ObjectSink, log_url
from serving.settings import ServeSettings
from tests.fixtures import encode_image, register_tiny, tiny_card, tiny_onnx_bytes
from tests.s3server import S3Server

TINY = tiny_onnx_bytes(28, 28, 1, 10, 0)


def test_log_url_defaults_beside_an_s3_registry() -> None:
    assert log_url("s3://b/registry/", None) == "s3://b/registry/_predictions"
    assert log_url("/srv/models", None) is None
    assert log_url("/srv/models", "s3://b/logs/") == "s3://b/logs"


def test_finished_log_files_are_uploaded_and_exported(s3_registry: Registry, s3_server: S3Server, s3_bucket: str,
                                                      tmp_path: Path) -> None:
    card = register_tiny(s3_registry)
    url = log_url(str(s3_registry.root), None)
    assert url == f"s3://{s3_bucket}/registry/_predictions"
    plog = PredictionLog(PredictionLogConfig(tmp_path / "predictions", sample=1.0, max_bytes=200,
                                             sink=ObjectSink(url, tmp_path / "cache")))
    image = encode_image(Image.fromarray(np.full((28, 28), 90, np.uint8), "L"), "PNG")
    probabilities = np.eye(10, dtype=np.float32)[[3]]
    for _ in range(5):  # 200 bytes: every record after the first rotates the file
        assert plog.maybe_log("tiny", card.version, "int8", card.labels, probabilities, 0.002, [image])
        time.sleep(0.12)  # one record per writer burst, so each lands in its own file
    plog.close()
    assert plog.written == 5 and plog.shipped >= 2
    keys = sorted(o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]
                  if "_predictions" in o["Key"])
    assert len(keys) == plog.shipped and all(k.startswith("registry/_predictions/tiny/") for k in keys)
    assert s3_registry.list_models() == ["tiny"]  # the log's prefix is no model

    out = tmp_path / "export.csv"
    assert cli(["predictions", "export", "--log-dir", url, "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and {r["label"] for r in rows} == {"class_3"} and rows[0]["version"] == str(card.version)


def test_reference_reaches_the_cache_and_drift_is_tracked(s3_registry: Registry, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    held = np.clip(rng.normal(80, 35, (300, 28, 28, 1)), 0, 255).astype(np.uint8)
    local = OnnxClassifier.load(_write_tiny(tmp_path), tiny_card("tiny"), "int8")
    reference = build_reference(local.predict_pixels(held), held, local.card.labels, source="test", variant="int8")
    with s3_registry.stage("tiny") as staged:
        (staged / "model.onnx").write_bytes(TINY)
        (staged / "model.int8.onnx").write_bytes(TINY)
        reference.save(staged / REFERENCE_FILE)
        card = s3_registry.register(staged, tiny_card("tiny"))
    loader = VersionLoader("tiny", s3_registry, SessionOptions(), batch_limit=1, auto_batch=False)
    model = loader.load(card.version, "int8")
    cached = Path(model.path).parent / REFERENCE_FILE
    assert cached.is_file() and str(tmp_path / "s3-cache") in str(cached)

    ops = LiveOps(ServeSettings(models_dir=str(s3_registry.root), drift_window=50, drift_min_samples=50))
    assert ops.drift is not None and ops.predlog is None  # the log is off by default, drift on
    bright = np.clip(rng.normal(200, 35, (60, 28, 28, 1)), 0, 255).astype(np.uint8)
    for i in range(60):
        ops.observe(model, model.predict_pixels(bright[i:i + 1]), bright[i:i + 1], None, 0.0)
    psi = ops.drift.snapshot()[f"tiny:{card.version}"]["psi"]
    assert psi["brightness"] > PSI_SIGNIFICANT  # the reference's images were darker


def _write_tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    path.write_bytes(TINY)
    return path
