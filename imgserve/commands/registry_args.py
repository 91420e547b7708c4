"""The registry option every command that reads or writes models takes (``--models-dir``), and the Registry
it names (env IMGSERVE_MODELS_DIR, IMGSERVE_CACHE_DIR)."""

from __future__ import annotations

import argparse
import os

from inference.registry import Registry


def default_models_dir() -> str:
    return os.environ.get("IMGSERVE_MODELS_DIR", "models")


def add_registry_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models-dir", default=None, help="registry root: a folder or s3://bucket/prefix (env IMGSERVE_MODELS_DIR, default models/)"
    )


def registry_from(args: argparse.Namespace) -> Registry:
    return Registry(args.models_dir or default_models_dir(), cache_dir=os.environ.get("IMGSERVE_CACHE_DIR"))
