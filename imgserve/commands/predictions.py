"""``imgserve predictions export|reference``: the prediction log out to CSV/Parquet, and a drift reference for a
version registered before exports wrote one."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from imgserve.commands.registry_args import add_registry_args, registry_from


def default_log_dir() -> Path:
    return Path(os.environ.get("IMGSERVE_DATA_DIR", "data")) / "predictions"


def predictions_export(args: argparse.Namespace) -> int:
    from serving.predlog import export_records, read_records

    root = args.log_dir or default_log_dir()
    with tempfile.TemporaryDirectory(prefix="imgserve-predictions-") as tmp:
        local = root
        if str(root).startswith("s3://"):  # the uploaded files of an s3:// registry (serving/predlog_sink.py)
            from serving.predlog_sink import ObjectSink

            local = ObjectSink(str(root), os.environ.get("IMGSERVE_CACHE_DIR")).download(Path(tmp), args.model)
        records = read_records(local, model=args.model, since=args.since, until=args.until)
    out = export_records(records, args.out)
    print(f"{len(records)} predictions from {root} -> {out}")
    return 0


def predictions_reference(args: argparse.Namespace) -> int:
    from export.reference import write_reference

    path = write_reference(registry_from(args), args.name, args.version, variant=args.variant, data=args.data,
                           limit=args.limit)
    print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predictions", help="export the prediction log; write a version's drift reference")
    psub = p.add_subparsers(dest="predictions_command", metavar="ACTION", required=True)

    q = psub.add_parser("export", help="the sampled prediction log as CSV or Parquet (by the file's ending)")
    q.add_argument("--out", type=Path, required=True, help="predictions.csv or predictions.parquet")
    q.add_argument("--log-dir", default=None,
                   help="the log's directory (default: $IMGSERVE_DATA_DIR/predictions, i.e. data/predictions), or "
                   "the s3:// prefix its files were uploaded to (e.g. s3://bucket/registry/_predictions)")
    q.add_argument("--model", default=None, help="only this model")
    q.add_argument("--since", default=None, help="ISO time, UTC (e.g. 2026-12-01T10:00)")
    q.add_argument("--until", default=None, help="ISO time, UTC, exclusive")
    q.set_defaults(func=predictions_export)

    q = psub.add_parser("reference", help="compute reference.json (drift baseline) for an existing version")
    q.add_argument("name", help="model name")
    q.add_argument("version", nargs="?", default="production", help="number or alias (default production)")
    q.add_argument("--data", default=None,
                   help="held-out data: fashion-mnist, digits, or the folder/zip the version was trained on "
                   "(default: the data set its metadata records)")
    q.add_argument("--variant", choices=("int8", "fp32"), default="int8", help="the variant that is served")
    q.add_argument("--limit", type=int, default=None, help="use only the first N held-out images")
    add_registry_args(q)
    q.set_defaults(func=predictions_reference)
