"""``imgserve export RUN_DIR --name NAME``: ONNX fp32 + INT8 with gates, registered as a new version."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .registry_args import add_registry_args, registry_from


def command_line(args: argparse.Namespace) -> str:
    words = ["imgserve", "export", str(args.run_dir), "--name", args.name]
    if args.models_dir is not None:
        words += ["--models-dir", str(args.models_dir)]
    words += ["--quantization", args.quantization, "--calibration-size", str(args.calibration_size)]
    if args.max_int8_drop != 1.0:
        words += ["--max-int8-drop", str(args.max_int8_drop)]
    return shlex.join(words + (["--promote"] if args.promote else []))


def export_command(args: argparse.Namespace) -> int:
    from export.pipeline import ExportOptions, export_run
    from export.quantize import preset

    quantization = preset(args.quantization).replace(calibration_size=args.calibration_size)
    options = ExportOptions(
        name=args.name,
        promote=args.promote,
        quantization=quantization,
        max_int8_drop=args.max_int8_drop / 100,
        command=command_line(args),
    )
    registry = registry_from(args)
    card = export_run(args.run_dir, registry, options)
    acc = card.metrics["accuracy"]
    print(
        f"registered {card.name} v{card.version} in {registry.root}: accuracy fp32 {acc['fp32']:.4f}, "
        f"int8 {acc['int8']:.4f}; parity max |diff| {card.export['parity_max_abs_diff']:.1e}; "
        f"production v{registry.aliases(card.name).get('production')}"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a training run to ONNX fp32 + INT8 and register it")
    p.add_argument("run_dir", type=Path, help="a finished `imgserve train --out` directory")
    p.add_argument("--name", required=True, help="model name in the registry")
    add_registry_args(p)
    p.add_argument("--promote", action="store_true", help="make the new version production")
    p.add_argument("--calibration-size", type=int, default=500, help="training images to calibrate INT8 on")
    p.add_argument(
        "--quantization", default="default", help="INT8 preset (default, qdq, qdq-per-channel, ...)"
    )
    p.add_argument("--max-int8-drop", type=float, default=1.0, help="allowed INT8 accuracy loss in points")
    p.set_defaults(func=export_command)
