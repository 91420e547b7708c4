"""The one console script: ``imgserve <command> …``.

Each command lives in ``imgserve/commands/<name>.py`` with ``register(subparsers)`` that sets
``func=`` on its parser; the function does the work and is what tests call. Heavy imports (TensorFlow,
BentoML) happen inside those functions, so ``imgserve --help`` is instant. Beside them: part of a
command (``models_rollouts.py``: ``imgserve models canary|shadow``) and the shared ``--models-dir``
(``registry_args.py``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from inference.errors import ImgServeError
from inference.version import __version__

# Order here is the order in --help.
COMMAND_MODULES = ("train", "export", "import_", "models", "predictions", "serve", "admin", "retrain", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgserve", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"imgserve {__version__}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"imgserve.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"imgserve.commands.{name}":
                continue  # command not built yet in this checkout
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given, for commands that record it (import)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # httpx logs every request at INFO: `retrain --via` would print one line per poll
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        result = args.func(args)
    except ImgServeError as exc:
        print(f"imgserve {args.command}: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imgserve {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
