"""``imgserve serve``: run the BentoML service (``bentoml serve .`` in the directory holding service.py).

Flags become ``IMGSERVE_*`` environment variables (what ``serving.settings.ServeSettings`` reads), so the
CLI, ``bentoml serve .`` and a container configured by env all run the same code path.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from inference.errors import ConfigError
from inference.storage import normalize_root

from .argtypes import port

if TYPE_CHECKING:
    from serving.settings import ServeSettings

# flag dest -> environment variable (only set when the flag is given)
ENV_FLAGS = {
    "models_dir": "IMGSERVE_MODELS_DIR",
    "model": "IMGSERVE_MODEL",
    "models": "IMGSERVE_MODELS",
    "providers": "IMGSERVE_PROVIDERS",
    "version": "IMGSERVE_VERSION",
    "variant": "IMGSERVE_VARIANT",
    "workers": "IMGSERVE_WORKERS",
    "lanes": "IMGSERVE_LANES",
    "max_batch_size": "IMGSERVE_MAX_BATCH_SIZE",
    "max_wait_ms": "IMGSERVE_MAX_WAIT_MS",
    "max_queue": "IMGSERVE_MAX_QUEUE",
    "timeout": "IMGSERVE_TIMEOUT_S",
    "poll_interval": "IMGSERVE_POLL_INTERVAL_S",
    "keep_alive": "IMGSERVE_KEEP_ALIVE_S",
}


def service_dir() -> Path:
    """The directory with service.py and bentofile.yaml: this checkout's root, else the current directory."""
    for candidate in (Path(__file__).resolve().parents[2], Path.cwd()):
        if (candidate / "service.py").is_file() and (candidate / "bentofile.yaml").is_file():
            return candidate
    raise ConfigError("cannot find service.py and bentofile.yaml: run from the imgserve checkout (pip install -e .)")


def serve_command(args: argparse.Namespace, environ: dict[str, str] | None = None) -> tuple[list[str], dict[str, str], Path]:
    """The bentoml command line, its environment and working directory for these flags."""
    root = service_dir()
    env = dict(os.environ if environ is None else environ)
    for dest, var in ENV_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            env[var] = normalize_root(value) if dest == "models_dir" else str(value)
    # bentoml runs in the service dir: a relative registry path means relative to where the user typed the
    # command; none at all means this checkout's models/.
    models_dir = env.get("IMGSERVE_MODELS_DIR")
    env["IMGSERVE_MODELS_DIR"] = normalize_root(models_dir) if models_dir else str((root / "models").resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    argv = [sys.executable, "-m", "bentoml", "serve", ".", "--port", str(args.port), "--host", args.host]
    if args.development:
        argv.append("--development")
    return argv, env, root


def check_settings(env: dict[str, str], flags: dict[str, str] | None = None) -> ServeSettings:
    """What bentoml's workers will read from ``env``, read here first: a bad value (``--workers 0``, a registry
    path that is a file) is one error line instead of a traceback from every worker. ``flags`` (variable ->
    the flag that set it) makes the line name the flag the user typed, e.g. ``--workers (IMGSERVE_WORKERS)``."""
    from unittest import mock

    from inference.storage import is_remote, open_storage
    from serving.settings import ServeSettings

    try:
        with mock.patch.dict(os.environ, env, clear=True):
            settings = ServeSettings.from_env()
    except ConfigError as exc:
        message = exc.message
        for var, flag in (flags or {}).items():
            message = message.replace(f"{var}:", f"{flag} ({var}):")
        raise ConfigError(message) from None
    if not is_remote(env["IMGSERVE_MODELS_DIR"]):  # an s3:// registry is checked by the workers' first read
        open_storage(env["IMGSERVE_MODELS_DIR"])
    return settings


def check_ports(host: str, port: int, settings: ServeSettings) -> None:
    """The HTTP and OIP gRPC ports are free: one error line instead of BentoML's traceback (HTTP) or the
    workers' repeated start-up failures (gRPC; serving/ports.py)."""
    from serving.ports import port_taken

    grpc_host = settings.grpc_host or host
    for what, on, number, setting in (("HTTP", host, port, "--port"),
                                      ("OIP gRPC", grpc_host, settings.grpc_port, "IMGSERVE_GRPC_PORT; 0 turns gRPC off")):
        if number and port_taken(on, number):
            raise ConfigError(f"the {what} port {on}:{number} is in use by another process: stop it, or choose "
                              f"another port ({setting})")


def serve(args: argparse.Namespace) -> int:
    argv, env, root = serve_command(args)
    if env.get("IMGSERVE_PROVIDERS"):  # one error line here rather than a traceback from bentoml's import
        from inference.session import check_providers

        check_providers(env["IMGSERVE_PROVIDERS"].split(","))
    settings = check_settings(env, {var: "--" + dest.replace("_", "-") for dest, var in ENV_FLAGS.items()
                                    if getattr(args, dest, None) is not None})
    if args.dry_run:  # ports are not checked: they may be free or taken by the time the command runs
        print(" ".join(argv))
        return 0
    check_ports(args.host, args.port, settings)
    os.chdir(root)
    os.execvpe(argv[0], argv, env)  # replaces this process: signals reach bentoml directly
    return 0  # pragma: no cover


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the production model over HTTP (BentoML + ONNX Runtime)")
    p.add_argument("--port", type=port, default=3000, help="HTTP port (default 3000)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 in containers)")
    p.add_argument("--models-dir", default=None, help="registry root: a folder or s3://bucket/prefix (env IMGSERVE_MODELS_DIR, default models/)")
    p.add_argument("--model", default=None, help="model name (env IMGSERVE_MODEL, default fashion-mnist)")
    p.add_argument("--models", default=None, help="several models: NAME[:VARIANT],... or '*' (env IMGSERVE_MODELS)")
    p.add_argument("--providers", default=None, help="ONNX Runtime execution providers, e.g. CUDA,CPU (env IMGSERVE_PROVIDERS)")
    p.add_argument("--version", default=None, help="alias or version number (default production)")
    p.add_argument("--variant", choices=("int8", "fp32"), default=None, help="ONNX variant (default int8)")
    p.add_argument("--workers", type=int, default=None, help="worker processes, each with its own model copy (default: one per core)")
    p.add_argument("--lanes", type=int, default=None, help="batches run in parallel per worker (default: cores / workers)")
    p.add_argument("--max-batch-size", type=int, default=None, help="rows per ONNX Runtime run (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=None, help="hold a lone request this long for company (default 0)")
    p.add_argument("--max-queue", type=int, default=None, help="rows waiting before 503 (default 256)")
    p.add_argument("--timeout", type=float, default=None, help="per-request deadline in seconds (default 10)")
    p.add_argument("--poll-interval", type=float, default=None, help="seconds between production alias checks (0 = off)")
    p.add_argument(
        "--keep-alive", type=int, default=None,
        help="seconds an idle HTTP keep-alive connection stays open (default 120); keep it above your clients' "
        "and load balancer's idle timeout",
    )
    p.add_argument("--development", action="store_true", help="BentoML development mode (debug logs)")
    p.add_argument("--dry-run", action="store_true", help="print the bentoml command instead of running it")
    p.set_defaults(func=serve)
