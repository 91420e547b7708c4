"""The sampled prediction log (``IMGSERVE_PREDICTION_LOG_SAMPLE``, off by default): one JSON line per image of a
sampled request, with what is needed to audit and re-evaluate a model later, never the image unless asked
(``IMGSERVE_PREDICTION_LOG_IMAGES``).

Where: ``<data dir>/predictions/<model>/<UTC start>-<pid>.jsonl``, one file per worker at a time, rotated at
``max_bytes`` or ``rotate_s``; the ``keep_files`` newest files per model are kept. With a ``sink`` (an s3://
registry: serving/predlog_sink.py) each finished file is also uploaded. Images, when asked for, are
stored once per content hash under ``<data dir>/predictions/images/``.

The request path only draws a random number and, when sampled, puts a tuple on a queue (~2 us); hashing,
JSON and file I/O happen in one writer thread, so a slow disk never delays an answer. If the writer falls more
than ``QUEUE_LIMIT`` records behind, records are dropped and counted (``dropped``), never queued without bound.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
FLUSH_PAUSE_S = 0.05  # the writer's pause between bursts: records reach the file within ~50 ms
FIELDS = ("time", "model", "version", "variant", "label", "score", "latency_ms", "bytes", "width", "height",
          "sha256", "endpoint", "image_file")


@dataclass(frozen=True)
class PredictionRecord:
    """One logged prediction (the JSON line, and a row of the CSV/Parquet export)."""

    time: str
    model: str
    version: int
    variant: str
    label: str
    score: float
    latency_ms: float
    bytes: int | None
    width: int | None
    height: int | None
    sha256: str | None
    endpoint: str = ""
    image_file: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictionRecord:
        return cls(**{k: data.get(k) for k in FIELDS})  # type: ignore[arg-type]


@dataclass(frozen=True)
class PredictionLogConfig:
    directory: Path
    sample: float = 0.0  # share of requests logged, 0..1
    images: bool = False
    max_bytes: int = 64 * 1024 * 1024
    rotate_s: float = 3600.0
    keep_files: int = 200
    sink: Callable[[Path, str], None] | None = None  # finished files (path, model): serving/predlog_sink.py


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dimensions(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from the header: PNG and GIF read directly (a PIL open costs ~50x more), others by PIL."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])  # type: ignore[return-value]
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])  # type: ignore[return-value]
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:  # the header only
            return image.size
    except Exception:
        return None, None


class PredictionLog:
    """``maybe_log`` on the request path; a daemon thread writes. ``close`` flushes (worker shutdown)."""

    def __init__(self, config: PredictionLogConfig, *, rng: random.Random | None = None):
        self.config = config
        self._rng = rng or random.Random()
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue(QUEUE_LIMIT)
        self._files: dict[str, tuple[IO[str], float, Path]] = {}
        self.dropped = 0
        self.written = 0
        self.shipped = 0  # files handed to the sink
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    @property
    def root(self) -> Path:
        return self.config.directory

    def maybe_log(self, model: str, version: int, variant: str, labels: tuple[str, ...], probabilities: Any,
                  latency_s: float, images: list[bytes] | None, endpoint: str = "") -> bool:
        """Sample this request; if chosen, queue it (one record per row of ``probabilities`` [N, C], written by
        the thread). Returns whether it was logged."""
        if self.config.sample <= 0 or self._rng.random() >= self.config.sample:
            return False
        try:
            self._queue.put_nowait(
                (time.time(), model, version, variant, labels, probabilities, latency_s, images, endpoint)
            )
        except queue.Full:
            self.dropped += len(probabilities)
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout_s)

    # ---- the writer thread -------------------------------------------------------------------------
    def _run(self) -> None:
        """Wake up, write everything queued, flush once, sleep a moment: records are handled in bursts, so the
        request threads meet this thread on the GIL rarely instead of once per record."""
        running = True
        while running:
            batch = [self._queue.get()]
            while len(batch) < 1024:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is None:
                    running = False
                    break
                try:
                    self._write(*item)
                except Exception:  # a full disk must not kill the thread: log, count, go on
                    log.exception("prediction log: could not write a record")
                    self.dropped += 1
            for fh, _, _ in self._files.values():
                fh.flush()
            if running:
                time.sleep(FLUSH_PAUSE_S)
        for model, (fh, _, path) in self._files.items():
            fh.close()
            self._ship(path, model)
        self._files.clear()

    def _ship(self, path: Path, model: str) -> None:
        """A finished file to the sink (object storage), if any; a failure is logged and the local file kept."""
        if self.config.sink is None:
            return
        try:
            self.config.sink(path, model)
            self.shipped += 1
        except Exception:
            log.exception("prediction log: could not upload %s (kept locally)", path)

    def _write(self, ts: float, model: str, version: int, variant: str, labels: tuple[str, ...],
               probabilities: Any, latency_s: float, images: list[bytes] | None, endpoint: str) -> None:
        fh = self._file(model, ts)
        top = probabilities.argmax(axis=1).tolist()
        for i, k in enumerate(top):
            label, score = labels[k], probabilities[i, k]
            data = images[i] if images is not None and i < len(images) else None
            digest = hashlib.sha256(data).hexdigest() if data is not None else None
            width, height = _dimensions(data) if data is not None else (None, None)
            image_file = self._save_image(digest, data) if (self.config.images and data is not None) else None
            record = PredictionRecord(
                _iso(ts), model, int(version), variant, label, round(float(score), 6), round(1e3 * latency_s, 3),
                len(data) if data is not None else None, width, height, digest, endpoint, image_file,
            )
            fh.write(json.dumps(vars(record), separators=(",", ":")) + "\n")  # flat: vars, not asdict (10x)
            self.written += 1

    def _save_image(self, digest: str | None, data: bytes) -> str | None:
        assert digest is not None
        rel = f"images/{digest[:2]}/{digest}"
        path = self.root / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return rel

    def _file(self, model: str, ts: float) -> IO[str]:
        current = self._files.get(model)
        if current is not None:
            fh, opened, _ = current
            if ts - opened < self.config.rotate_s and fh.tell() < self.config.max_bytes:
                return fh
            fh.close()
            self._ship(current[2], model)
        folder = self.root / model
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H%M%S.%f")
        path = folder / f"{stamp}-{os.getpid()}.jsonl"
        fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across records, closed on rotation
        self._files[model] = (fh, ts, path)
        self._prune(folder)
        return fh

    def _prune(self, folder: Path) -> None:
        files = sorted(folder.glob("*.jsonl"))
        for old in files[: max(0, len(files) - self.config.keep_files)]:
            old.unlink(missing_ok=True)


# ---- reading it back: `imgserve predictions export` ---------------------------------------------------------
def read_records(root: str | os.PathLike[str], *, model: str | None = None, since: str | None = None,
                 until: str | None = None) -> list[PredictionRecord]:
    """Every record under ``root`` (a ``predictions/`` directory), oldest first; ``since``/``until`` are ISO
    times compared as text (UTC, the log's own format). A torn last line (a worker killed mid-write) is skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    folders = [root / model] if model else [p for p in sorted(root.iterdir()) if p.is_dir() and p.name != "images"]
    records: list[PredictionRecord] = []
    for folder in folders:
        for path in sorted(folder.glob("*.jsonl")):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        record = PredictionRecord.from_dict(json.loads(line))
                    except (ValueError, TypeError):
                        continue
                    if (since and record.time < since) or (until and record.time >= until):
                        continue
                    records.append(record)
    records.sort(key=lambda r: r.time)
    return records


def export_records(records: list[PredictionRecord], out: str | os.PathLike[str]) -> Path:
    """Write ``records`` as CSV (``.csv``) or Parquet (``.parquet``, needs pyarrow) to ``out``."""
    from inference.errors import ConfigError

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError("Parquet export needs pyarrow (pip install pyarrow); CSV works without it") from None
        table = pa.Table.from_pylist([asdict(r) for r in records]) if records else pa.table({f: [] for f in FIELDS})
        pq.write_table(table, out)
        return out
    if out.suffix != ".csv":
        raise ConfigError(f"unknown export format {out.suffix or out.name!r}: name the file .csv or .parquet")
    import csv

    with open(out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for r in records:
            writer.writerow(asdict(r))
    return out
