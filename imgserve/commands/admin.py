"""``imgserve admin``: run the admin runner (uploads, retraining jobs, promote/rollback) on its own port."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from inference.errors import ConfigError

from .argtypes import port


def run_admin(args: argparse.Namespace) -> int:
    import uvicorn

    from admin.app import create_app
    from admin.settings import AdminSettings
    from serving.connection import ConnectionLimits, protocol_class
    from serving.edge import is_loopback
    from training.runfiles import make_dir

    overrides = {k: v for k, v in {"models_dir": args.models_dir, "data_dir": args.data_dir, "service_url": args.service_url}.items() if v is not None}
    settings = AdminSettings(**overrides)
    for folder in (settings.datasets_dir, settings.jobs_dir):  # one line, not a traceback from the app's start
        make_dir(folder, "the admin data directory")
    if not settings.admin_token and not is_loopback(args.host):
        raise ConfigError(
            f"refusing to listen on {args.host} without a token: set IMGSERVE_ADMIN_TOKEN, or use --host 127.0.0.1"
        )
    if not settings.admin_token:
        print("imgserve admin: no IMGSERVE_ADMIN_TOKEN set; serving loopback clients only", flush=True)
    # the service's connection edge (header limits, timeouts, lingering close after a refused upload)
    limits = ConnectionLimits()
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="info",
        http=protocol_class(limits), h11_max_incomplete_event_size=limits.max_header_bytes,
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin", help="run the admin runner (token: env IMGSERVE_ADMIN_TOKEN)")
    p.add_argument("--host", default=os.environ.get("IMGSERVE_ADMIN_HOST", "127.0.0.1"),
                   help="interface to listen on (env IMGSERVE_ADMIN_HOST; beyond loopback needs a token)")
    p.add_argument("--port", type=port, default=os.environ.get("IMGSERVE_ADMIN_PORT", "3001"),
                   help="port (env IMGSERVE_ADMIN_PORT, default 3001)")
    p.add_argument("--models-dir", default=None, help="registry root: a folder or s3://bucket/prefix (env IMGSERVE_MODELS_DIR)")
    p.add_argument("--data-dir", type=Path, default=None, help="datasets and jobs (env IMGSERVE_DATA_DIR, default data/)")
    p.add_argument("--service-url", default=None, help="inference service to notify on changes (env IMGSERVE_SERVICE_URL)")
    p.set_defaults(func=run_admin)
