"""TEST STAND-IN for ``imgserve retrain`` — used by the dashboard e2e test only while the real command
(``imgserve/commands/retrain.py``) is not in this checkout.

It accepts the admin runner's arguments, writes one progress line per "epoch" in the shape training's
``Progress`` callback uses (``{"event": "epoch", "epoch", "epochs", "metrics": {...}}``), logs like a job,
registers a tiny real ONNX version with metrics, applies the promotion policy and writes ``result.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv[:3] == ["-m", "imgserve", "retrain"]:
        argv = argv[3:]
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--arch", default="small-cnn")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--work-dir", type=Path)
    p.add_argument("--progress-file", type=Path, required=True)
    p.add_argument("--result-file", type=Path, required=True)
    p.add_argument("--promote", default="if-better")
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument("--data", action="append", default=[])
    p.add_argument("--from-scratch", action="store_true")
    p.add_argument("--base-version")
    p.add_argument("--img-size")
    args = p.parse_args(argv)
    epoch_s = float(os.environ.get("STAND_IN_EPOCH_S", "0.5"))

    def progress(event: dict) -> None:
        with open(args.progress_file, "a") as fh:
            fh.write(json.dumps(event) + "\n")

    print(f"stand-in retrain: {args.name} arch={args.arch} epochs={args.epochs} data={args.data}", flush=True)
    progress({"event": "stage", "stage": "loading data"})
    t0 = time.perf_counter()
    for e in range(1, args.epochs + 1):
        time.sleep(epoch_s)
        loss = 2.3 * math.exp(-0.45 * e)
        acc = 1 - 0.85 * math.exp(-0.5 * e)
        metrics = {"loss": round(loss, 4), "accuracy": round(acc, 4),
                   "val_loss": round(loss * 1.1 + 0.03, 4), "val_accuracy": round(acc - 0.02, 4)}
        progress({"event": "epoch", "epoch": e, "epochs": args.epochs, "metrics": metrics,
                  "elapsed_seconds": round(time.perf_counter() - t0, 2)})
        print(f"epoch {e}/{args.epochs} " + " ".join(f"{k}={v}" for k, v in metrics.items()), flush=True)
    progress({"event": "stage", "stage": "exporting to ONNX"})
    print("exporting and registering", flush=True)

    from inference.registry import Registry
    from tests.e2e.harness import metrics_for, register_version

    registry = Registry(args.models_dir)
    production = registry.aliases(args.name).get("production")
    final_acc = round(0.9 + 0.001 * args.epochs, 4)
    card = register_version(registry, args.name, seed=args.epochs + 10, metrics=metrics_for(final_acc, final_acc - 0.003, seed=7),
                            architecture=args.arch, parent=int(production) if production is not None else None)
    prod_acc = None
    if production is not None:
        prod_acc = registry.card(args.name, int(production)).metrics.get("accuracy", {}).get("int8")
    if args.promote == "force":
        promote, reason = True, "forced"
    elif args.promote == "never":
        promote, reason = False, "policy 'never': registered as a candidate only"
    else:
        promote = prod_acc is None or final_acc - 0.003 > prod_acc + args.margin
        reason = f"candidate {final_acc - 0.003:.4f} vs production {prod_acc}"
    if promote:
        registry.promote(args.name, card.version, reason=f"retrain job: {reason}")
    result = {"version": card.version, "model": args.name,
              "decision": {"promote": promote, "reason": reason, "candidate": card.version,
                           "production": int(production) if production is not None else None}}
    args.result_file.write_text(json.dumps(result))
    progress({"event": "done", "stage": "done", "version": card.version})
    print(f"registered v{card.version}; promoted={promote}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
