"""Benchmark (not a test): in-process throughput of fp32 vs INT8 ONNX models, and the INT8 format choice.

    python -m benchmarks.quantization                 # default CNN + MobileNetV2, fp32 vs INT8, batch 1 and 32
    python -m benchmarks.quantization --variants      # also: QOperator vs QDQ, per-channel, U8/S8, pre-processing
    python -m benchmarks.quantization --write-docs    # put the tables into docs/training.md
    python -m benchmarks.quantization --register-only # just build the MobileNetV2 registry for the load benchmark

The MobileNetV2 (alpha 1.0, 224x224x3, 1000 classes) has random weights and is exported with the project's
own export functions into a registry under ``benchmarks/.cache/models`` (git-ignored; built once, reused):
serve it with ``IMGSERVE_MODELS_DIR=benchmarks/.cache/models IMGSERVE_MODEL=mobilenetv2``.
Timings: ``--threads`` intra-op threads (default 2), best of ``--repeats`` timed windows, fp32 and INT8
interleaved so that other load on the machine hits both alike; the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.cpuinfo import cpu_summary
from inference.metadata import ModelCard
from inference.preprocess import normalize
from inference.registry import Registry
from inference.session import OnnxClassifier, SessionOptions

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
DOCS = ROOT / "docs" / "training.md"
MARK = "quantization-benchmark"


@dataclass(frozen=True)
class Cell:
    model: str
    variant: str
    batch: int
    images_per_s: float


def throughput(model: OnnxClassifier, batch: int, seconds: float) -> float:
    """Images per second for back-to-back ``predict`` calls on a fixed random batch, over ``seconds``."""
    h, w, c = model.card.preprocessing.shape
    x = np.random.default_rng(0).random((batch, h, w, c), dtype=np.float32)
    model.predict(x)
    runs, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or runs < 3:
        model.predict(x)
        runs += 1
    return runs * batch / elapsed


def compare(
    paths: dict[str, Path],
    card: ModelCard,
    batches: tuple[int, ...],
    *,
    threads: int,
    seconds: float,
    repeats: int,
) -> dict[tuple[str, int], float]:
    """Best-of-``repeats`` img/s per (variant, batch), variants interleaved within each repeat."""
    options = SessionOptions(intra_op_threads=threads)
    models = {v: OnnxClassifier.load(p, card, v, options) for v, p in paths.items()}
    best: dict[tuple[str, int], float] = {}
    for _ in range(repeats):
        for batch in batches:
            for variant, model in models.items():
                key = (variant, batch)
                best[key] = max(best.get(key, 0.0), throughput(model, batch, seconds))
    return best


def mobilenet_registry(cache: Path) -> Registry:
    """The random MobileNetV2 registry used by the load benchmark; exported once, then reused."""
    registry = Registry(cache / "models")
    if not registry.list_versions("mobilenetv2"):
        from export.synthetic import register_random_model

        print("exporting a random-weight MobileNetV2 (alpha 1.0, 224x224x3) into", registry.root, flush=True)
        register_random_model(
            registry, "mobilenetv2", img_size=224, alpha=1.0, classes=1000, calibration_size=64
        )
    return registry


def speed_table(rows: list[tuple[str, dict[tuple[str, int], float]]], batches: tuple[int, ...]) -> str:
    lines = ["| model | batch | fp32 img/s | INT8 img/s | INT8 / fp32 |", "|---|---:|---:|---:|---:|"]
    for name, best in rows:
        for b in batches:
            fp32, int8 = best[("fp32", b)], best[("int8", b)]
            lines.append(f"| {name} | {b} | {fp32:,.0f} | {int8:,.0f} | {int8 / fp32:.2f}x |")
    return "\n".join(lines)


def variants_table(
    name: str,
    fp32: Path,
    card: ModelCard,
    x_calib: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray | None,
    *,
    threads: int,
    seconds: float,
    repeats: int,
    batches: tuple[int, ...],
) -> str:
    """Quantize ``fp32`` with each candidate config; accuracy (or top-1 agreement with fp32) and speed."""
    from export.convert import onnx_predict
    from export.quantize import QuantizationConfig, quantize

    candidates = [
        QuantizationConfig(),
        QuantizationConfig(per_channel=True),
        QuantizationConfig(preprocess=False),
        QuantizationConfig(format="qdq"),
        QuantizationConfig(format="qdq", per_channel=True),
        QuantizationConfig(format="qdq", activation_type="int8"),
        QuantizationConfig(format="qdq", activation_type="int8", per_channel=True),
    ]
    spec = card.preprocessing
    xt = normalize(x_test, spec)
    ref = onnx_predict(fp32, xt).argmax(1)
    head = "accuracy" if y_test is not None else "top-1 agreement with fp32"
    lines = [
        f"| {name}: INT8 config | {head} | " + " | ".join(f"b{b} img/s" for b in batches) + " |",
        "|---|---:|" + "---:|" * len(batches),
    ]
    base = "fp32"
    fp32_acc = (ref == y_test).mean() if y_test is not None else 1.0
    best = compare({"fp32": fp32}, card, batches, threads=threads, seconds=seconds, repeats=repeats)
    lines.append(
        f"| {base} | {fp32_acc:.2%} | " + " | ".join(f"{best[('fp32', b)]:,.0f}" for b in batches) + " |"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for config in candidates:
            path = quantize(
                fp32,
                normalize(x_calib, spec),
                config.replace(calibration_size=len(x_calib)),
                Path(tmp) / f"{config.label}.onnx",
            )
            pred = onnx_predict(path, xt).argmax(1)
            acc = (pred == (y_test if y_test is not None else ref)).mean()
            best = compare({"int8": path}, card, batches, threads=threads, seconds=seconds, repeats=repeats)
            lines.append(
                f"| {config.label} | {acc:.2%} | "
                + " | ".join(f"{best[('int8', b)]:,.0f}" for b in batches)
                + " |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


def machine() -> str:
    import onnxruntime

    return (
        f"{cpu_summary()}, {os.cpu_count()} logical CPUs, onnxruntime {onnxruntime.__version__}, "
        f"load average at start {os.getloadavg()[0]:.1f}"
    )


def write_docs(section: str) -> None:
    text = DOCS.read_text() if DOCS.exists() else ""
    start, end = f"<!-- {MARK}:start -->", f"<!-- {MARK}:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += ("\n" if text else "") + block + "\n"
    DOCS.write_text(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models-dir", type=Path, default=ROOT / "models", help="registry with the default model"
    )
    parser.add_argument("--model", default="fashion-mnist")
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one timed window")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", action="store_true", help="also compare INT8 configurations")
    parser.add_argument("--no-mobilenet", action="store_true")
    parser.add_argument("--register-only", action="store_true", help="only build the MobileNetV2 registry")
    parser.add_argument(
        "--write-docs", action="store_true", help=f"write the tables into {DOCS.relative_to(ROOT)}"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    if args.register_only:
        print(mobilenet_registry(args.cache).root)
        return 0
    batches = (1, 32)
    kw = {"threads": args.threads, "seconds": args.seconds, "repeats": args.repeats}
    header = (
        f"Measured {datetime.date.today().isoformat()} on {machine()}; {args.threads} intra-op threads, "
        f"best of {args.repeats} x {args.seconds:g} s windows (`python -m benchmarks.quantization"
        f"{' --variants' if args.variants else ''}`)."
    )
    print(header, flush=True)
    rows, extra = [], []
    cnn = Registry(args.models_dir)
    version = cnn.resolve(args.model)
    card = cnn.card(args.model, version)
    paths = {v: cnn.model_file(args.model, version, v) for v in ("fp32", "int8")}
    rows.append((f"{args.model} v{version} ({card.architecture})", compare(paths, card, batches, **kw)))
    print(speed_table(rows, batches), flush=True)
    if args.variants:
        from training.datasets import load_dataset

        data = (
            load_dataset("fashion-mnist", card.preprocessing)
            if card.dataset.get("name") == "fashion-mnist"
            else None
        )
        if data is not None:
            extra.append(
                variants_table(
                    card.architecture,
                    paths["fp32"],
                    card,
                    data.train.sample(500, 1).x,
                    data.test.x,
                    data.test.y,
                    batches=batches,
                    **kw,
                )
            )
    if not args.no_mobilenet:
        mreg = mobilenet_registry(args.cache)
        mv = mreg.resolve("mobilenetv2")
        mcard = mreg.card("mobilenetv2", mv)
        mpaths = {v: mreg.model_file("mobilenetv2", mv, v) for v in ("fp32", "int8")}
        rows.append(("MobileNetV2 1.0 224x224x3 (random weights)", compare(mpaths, mcard, batches, **kw)))
        print(speed_table(rows[-1:], batches), flush=True)
        if args.variants:
            from export.synthetic import generated_images

            images = generated_images(164, mcard.preprocessing.shape, seed=7)
            extra.append(
                variants_table(
                    "MobileNetV2",
                    mpaths["fp32"],
                    mcard,
                    images[:64],
                    images[64:],
                    None,
                    batches=batches,
                    **kw,
                )
            )
    section = "\n\n".join([header, speed_table(rows, batches), *extra])
    print("\n" + section)
    if args.write_docs:
        write_docs(section)
        print(f"\nwritten to {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
