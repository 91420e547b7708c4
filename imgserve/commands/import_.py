"""``imgserve import MODEL.onnx --name NAME --labels LABELS.txt``: register an external ONNX classifier."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .registry_args import add_registry_args, registry_from


def import_command(args: argparse.Namespace) -> int:
    from export.importer import ImportOptions, import_model, read_labels
    from export.quantize import preset

    quantization = preset(args.quantization).replace(calibration_size=args.calibration_size)
    fields = ("layout", "channels", "mean", "std", "scale", "resize", "outputs", "calibration", "min_agreement", "promote")
    options = ImportOptions(
        name=args.name, labels=read_labels(args.labels), size=tuple(args.size) if args.size else None,
        quantization=quantization, command=shlex.join(["imgserve", *args.argv]),
        **{f: tuple(v) if isinstance(v, list) else v for f in fields if (v := getattr(args, f)) is not None},
    )
    card = import_model(args.model, registry := registry_from(args), options)
    int8 = card.export["int8"]
    quality = f"int8 agrees with fp32 on {int8['top1_agreement']:.1%}" if int8["available"] else "no int8 (fp32 only)"
    print(f"registered {card.name} v{card.version} in {registry.root}: {card.preprocessing.layout} "
          f"{card.preprocessing.height}x{card.preprocessing.width}x{card.preprocessing.channels}, "
          f"{card.num_classes} classes, {card.export['output_kind']}; {quality}; "
          f"production v{registry.aliases(card.name).get('production')}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="register an external ONNX image classifier as a new version")
    p.add_argument("model", type=Path, help="the .onnx file (one float32 image input, [N, classes] output)")
    p.add_argument("--name", required=True, help="model name in the registry")
    p.add_argument("--labels", type=Path, required=True, help="text file, one label per line in output order")
    p.add_argument("--layout", choices=("NCHW", "NHWC"), help="input layout (default: read from the graph)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: from the graph)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="1 = grayscale, 3 = RGB (default: from the graph)")
    p.add_argument("--mean", type=float, nargs="+", help="per-channel mean after scaling (ImageNet: 0.485 0.456 0.406)")
    p.add_argument("--std", type=float, nargs="+", help="per-channel std after scaling (ImageNet: 0.229 0.224 0.225)")
    p.add_argument("--scale", type=float, help="pixel multiplier before mean/std (default 1/255)")
    p.add_argument("--resize", choices=("nearest", "bilinear", "bicubic", "lanczos"), help="resampling (bilinear)")
    p.add_argument("--outputs", choices=("auto", "logits", "probabilities"), help="auto: a final Softmax = probabilities")
    p.add_argument("--calibration", type=Path, help="directory of images to quantize INT8 on (none: fp32 only)")
    p.add_argument("--calibration-size", type=int, default=500, help="at most this many calibration images")
    p.add_argument("--quantization", default="default", help="INT8 preset (default, qdq, qdq-per-channel, ...)")
    p.add_argument("--min-agreement", type=float, help="INT8 gate: top-1 agreement with fp32 (default 0.95)")
    p.add_argument("--promote", action="store_true", default=None, help="make the new version production")
    add_registry_args(p)
    p.set_defaults(func=import_command)
