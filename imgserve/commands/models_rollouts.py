"""``imgserve models canary|shadow``: start, promote or abort a canary rollout; mirror requests to a shadow
version."""

from __future__ import annotations

import argparse

from .registry_args import add_registry_args, registry_from


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


def register_rollouts(msub: argparse._SubParsersAction) -> None:
    """Add the ``canary`` and ``shadow`` actions to ``imgserve models``."""
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
