"""The dashboard's pages and their static files, served by the admin runner without auth.

Pages are static shells (Jinja2 layout, no data in them); their scripts call the admin JSON API with the
bearer token that the login page keeps in ``sessionStorage``. So the pages themselves need no auth, every
read and write goes through the same token check as the API, and no cookie exists that a forged cross-site
request could ride on. A strict Content-Security-Policy (scripts and styles from this origin only, no inline
script) keeps injected markup from running code that could read the token.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from inference.errors import NotFound

from .requests import ARCHITECTURES
from .settings import AdminSettings

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png",
                ".ico": "image/x-icon", ".txt": "text/plain"}
PAGES = {"models": "Models", "training": "Training", "serving": "Serving", "rollouts": "Rollouts", "try": "Try it"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _static_version() -> str:
    digest = hashlib.sha256()
    for p in sorted(STATIC_DIR.rglob("*")):
        if p.is_file():
            digest.update(p.name.encode() + p.read_bytes())
    return digest.hexdigest()[:10]


def add_page_routes(router: APIRouter, settings: AdminSettings) -> None:
    """``/``, ``/ui/login``, ``/ui/{page}`` and ``/ui/static/...`` on ``router``, outside the schema."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    static_version = _static_version()

    def page(request: Request, name: str) -> Response:
        context = {
            "page": name,
            "pages": PAGES,
            "title": PAGES.get(name, "Sign in"),
            "default_model": settings.model,
            "architectures": ARCHITECTURES,
            "v": static_version,
        }
        response = templates.TemplateResponse(request, f"{name}.html", context)
        response.headers.update(SECURITY_HEADERS)
        return response

    @router.get("/", include_in_schema=False)
    @router.get("/ui", include_in_schema=False)
    @router.get("/ui/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/models", status_code=307)

    @router.get("/ui/login", include_in_schema=False)
    async def login_page(request: Request) -> Response:
        return page(request, "login")

    @router.get("/ui/{name}", include_in_schema=False)
    async def any_page(request: Request, name: str) -> Response:
        if name not in PAGES:
            raise NotFound(f"no dashboard page {name!r}")
        return page(request, name)

    @router.get("/ui/static/{path:path}", include_in_schema=False)
    async def static(path: str) -> FileResponse:
        target = (STATIC_DIR / path).resolve()
        if STATIC_DIR.resolve() not in target.parents or not target.is_file() or target.suffix not in STATIC_TYPES:
            raise NotFound("no such file")
        return FileResponse(target, media_type=STATIC_TYPES[target.suffix],
                            headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})
