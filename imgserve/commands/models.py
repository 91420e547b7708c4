"""``imgserve models list|show|promote|rollback|copy``: read and steer the registry (TF-free), local or s3://."""

from __future__ import annotations

import argparse
import json
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


def models_canary(args: argparse.Namespace) -> int:
    """Start (NAME V --weight W), promote (--promote) or abort (--abort) a canary rollout."""
    from inference.errors import ConfigError

    registry = registry_from(args)
    if args.promote or args.abort:
        if args.version is not None:
            raise ConfigError("--promote and --abort act on the current canary: give only the model name")
        aliases = registry.end_canary(args.name, promote=args.promote, reason=args.reason or "cli")
        print(f"{args.name}: canary {'promoted' if args.promote else 'aborted'}; production -> v{aliases['production']}")
        return 0
    if args.version is None:
        raise ConfigError("give the version to try: imgserve models canary NAME VERSION --weight 10")
    aliases = registry.set_canary(args.name, args.version, args.weight, reason=args.reason)
    print(f"{args.name}: canary v{aliases['canary']} gets {args.weight:g} % of requests beside production "
          f"v{aliases.get('production')}")
    return 0


def models_shadow(args: argparse.Namespace) -> int:
    """Mirror a share of requests to a version (NAME V --share S), or stop (NAME --stop)."""
    from inference.errors import ConfigError

    registry = registry_from(args)
    if args.stop:
        registry.end_shadow(args.name, reason=args.reason or "cli")
        print(f"{args.name}: shadow stopped")
        return 0
    if args.version is None:
        raise ConfigError("give the version to mirror to: imgserve models shadow NAME VERSION --share 20")
    aliases = registry.set_shadow(args.name, args.version, args.share, reason=args.reason)
    print(f"{args.name}: {args.share:g} % of requests mirrored to v{aliases['shadow']} (answers still from production)")
    return 0


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

    q = msub.add_parser("canary", help="route a share of requests to another version; --promote or --abort it")
    q.add_argument("name", help="model name")
    q.add_argument("version", nargs="?", default=None, help="the version to try (not with --promote/--abort)")
    q.add_argument("--weight", type=float, default=10.0, help="percent of requests (default 10)")
    act = q.add_mutually_exclusive_group()
    act.add_argument("--promote", action="store_true", help="make the canary production")
    act.add_argument("--abort", action="store_true", help="remove the canary; production keeps every request")
    q.add_argument("--reason", default="", help="recorded in the alias history")
    add_registry_args(q)
    q.set_defaults(func=models_canary)

    q = msub.add_parser("shadow", help="mirror a share of requests to another version and compare; --stop")
    q.add_argument("name", help="model name")
    q.add_argument("version", nargs="?", default=None, help="the version to mirror requests to (not with --stop)")
    q.add_argument("--share", type=float, default=20.0, help="percent of requests mirrored (default 20)")
    q.add_argument("--stop", action="store_true", help="stop mirroring")
    q.add_argument("--reason", default="", help="recorded in the alias history")
    add_registry_args(q)
    q.set_defaults(func=models_shadow)

    q = msub.add_parser("copy", help="copy versions and aliases between registries (a folder or s3://bucket/prefix)")
    q.add_argument("src", help="source registry: a folder or s3://bucket/prefix")
    q.add_argument("dst", help="destination registry: a folder or s3://bucket/prefix")
    q.add_argument("--model", default=None, help="only this model (default: all)")
    q.set_defaults(func=models_copy)
