"""``imgserve models list|show|promote|rollback|copy``: read and steer the registry (TF-free), local or s3://.

``canary`` and ``shadow`` rollouts: imgserve/commands/models_rollouts.py."""

from __future__ import annotations

import argparse
import json
import os

from inference.registry import Registry

from .models_rollouts import register_rollouts
from .registry_args import add_registry_args, registry_from


def models_list(args: argparse.Namespace) -> int:
    registry = registry_from(args)
    names = [args.name] if args.name else registry.list_models()
    if not names:
        print(f"no models in {registry.root}")
    for name in names:
        aliases = registry.aliases(name)
        print(f"{name}")
        for v in registry.list_versions(name):
            card = registry.card(name, v)
            tags = [a for a, val in aliases.items() if a != "history" and val == v]
            acc = card.metrics.get("accuracy", {})
            fp32, int8 = acc.get("fp32"), acc.get("int8")
            accs = " ".join(f"{k}={val:.4f}" for k, val in (("fp32", fp32), ("int8", int8)) if isinstance(val, float | int))
            print(f"  v{v:<4} {card.created_at:<21} {card.architecture:<16} {accs:<28} {' '.join(tags)}")
    return 0


def models_show(args: argparse.Namespace) -> int:
    registry = registry_from(args)
    version = registry.resolve(args.name, args.version)
    data = registry.card(args.name, version).to_dict()
    data["aliases"] = {k: v for k, v in registry.aliases(args.name).items() if k != "history" and v == version}
    print(json.dumps(data, indent=2))
    return 0


def models_promote(args: argparse.Namespace) -> int:
    registry = registry_from(args)
    aliases = registry.promote(args.name, int(args.version), reason=args.reason or "cli promote")
    print(f"{args.name}: production -> v{aliases['production']} (previous v{aliases.get('previous')})")
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    registry = registry_from(args)
    aliases = registry.rollback(args.name, args.to, reason=args.reason or "cli rollback")
    print(f"{args.name}: production -> v{aliases['production']} (previous v{aliases.get('previous')})")
    return 0


def models_copy(args: argparse.Namespace) -> int:
    from inference.registry_copy import copy_registry

    source = Registry(args.src, cache_dir=os.environ.get("IMGSERVE_CACHE_DIR"))
    dest = Registry(args.dst, cache_dir=os.environ.get("IMGSERVE_CACHE_DIR"))
    report = copy_registry(source, dest, args.model)
    for name, aliases in report.aliases.items():
        copied = [v for m, v in report.copied if m == name]
        skipped = [v for m, v in report.skipped if m == name]
        print(f"{name}: copied {_versions(copied)}, already there {_versions(skipped)}; aliases {json.dumps(aliases)}")
    if not report.aliases:
        print(f"no models in {source.root}")
    return 0


def _versions(numbers: list[int]) -> str:
    return ", ".join(f"v{v}" for v in numbers) if numbers else "none"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list, show, promote and roll back registered model versions")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    q = msub.add_parser("list", help="versions with metrics and aliases")
    q.add_argument("name", nargs="?", help="one model (default: all)")
    add_registry_args(q)
    q.set_defaults(func=models_list)

    q = msub.add_parser("show", help="one version's metadata as JSON (labels and their class-folder names too)")
    q.add_argument("name", help="model name")
    q.add_argument("version", nargs="?", default="production", help="number or alias (default production)")
    add_registry_args(q)
    q.set_defaults(func=models_show)

    q = msub.add_parser("promote", help="point production at a version (no policy check; see `retrain`)")
    q.add_argument("name", help="model name")
    q.add_argument("version", type=int, help="version number to serve")
    q.add_argument("--reason", default="", help="recorded in the alias history")
    add_registry_args(q)
    q.set_defaults(func=models_promote)

    q = msub.add_parser("rollback", help="point production back at the previous version (or --to N)")
    q.add_argument("name", help="model name")
    q.add_argument("--to", type=int, default=None, help="this version instead of the previous one")
    q.add_argument("--reason", default="", help="recorded in the alias history")
    add_registry_args(q)
    q.set_defaults(func=models_rollback)

    register_rollouts(msub)

    q = msub.add_parser("copy", help="copy versions and aliases between registries (a folder or s3://bucket/prefix)")
    q.add_argument("src", help="source registry: a folder or s3://bucket/prefix")
    q.add_argument("dst", help="destination registry: a folder or s3://bucket/prefix")
    q.add_argument("--model", default=None, help="only this model (default: all)")
    q.set_defaults(func=models_copy)
