"""The dashboard and submission portal: a FastAPI app rendering Jinja2 templates from templates/web/.

``create_app()`` builds it from settings read at call time (``WebSettings``, the store from
``KIEMDIEM_HOME`` / ``KIEMDIEM_DATABASE_URL``); ``kiemdiem web`` serves it with uvicorn
(``--factory kiemdiem.web.app:create_app`` for several workers). Tests pass a store, settings
and a clock, so a whole campaign can be walked through at simulated times.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kiemdiem.calendar import parse_instant
from kiemdiem.errors import KiemdiemError
from kiemdiem.settings import WebSettings, reminder_settings, templates_dir, web_settings
from kiemdiem.store.db import Store, open_store
from kiemdiem.web import routes_auth, routes_decisions, routes_files, routes_pages
from kiemdiem.web.auth import LoginThrottle, SessionCodec, load_secret_key
from kiemdiem.web.context import (
    STALE_FORM, VIEWER_TTL_SECONDS, CsrfRefused, LoginRequired, ViewerCache, WebContext, render, safe_next, shared_templates,
)
from kiemdiem.web.queries import STATUS_CHECK_SECONDS, STATUS_TTL_SECONDS, RenderCache, StatusCache

log = logging.getLogger(__name__)

REFRESH_SECONDS = 15

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}

# Office documents (XLSX, DOCX) and dossiers are zip files already.
GZIP_EXCLUDED = (
    *DEFAULT_EXCLUDED_CONTENT_TYPES,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/pdf",
    "application/zip",
)

ERROR_MESSAGES = {
    404: "Không tìm thấy trang này, hoặc đồng chí không có quyền xem nội dung này.",
    405: "Không tìm thấy trang này.",
    500: "Đã có lỗi xảy ra khi xử lý yêu cầu. Lỗi đã được ghi lại; hãy thử lại sau ít phút, "
         "nếu vẫn lỗi xin báo bộ phận kỹ thuật kèm thời điểm xảy ra.",
}


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class SecurityHeadersMiddleware:
    """Adds the security headers to every response (plain ASGI: no per-request task overhead)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def replay_clock(start: str | None) -> Callable[[], dt.datetime] | None:
    """A clock that reads ``start`` now and runs on in real time (``KIEMDIEM_WEB_CLOCK_START``): a
    replayed campaign's pages, uploads and decisions then carry the campaign's dates, as its ticks'
    ``--at`` do. None when unset."""
    if not start:
        return None
    try:
        offset = parse_instant(start) - utc_now()
    except ValueError as exc:
        raise KiemdiemError(f"KIEMDIEM_WEB_CLOCK_START không đọc được: {exc}") from None
    return lambda: utc_now() + offset


def create_app(
    store: Store | None = None,
    settings: WebSettings | None = None,
    *,
    clock: Callable[[], dt.datetime] | None = None,
    refresh_seconds: int = REFRESH_SECONDS,
    status_ttl: float = STATUS_TTL_SECONDS,
    status_check_seconds: float = STATUS_CHECK_SECONDS,
    viewer_ttl: float = VIEWER_TTL_SECONDS,
) -> FastAPI:
    settings = settings or web_settings()
    owns_store = store is None
    store = store or open_store()
    reminders = reminder_settings()
    ctx = WebContext(
        store=store,
        settings=settings,
        codec=SessionCodec(load_secret_key(settings.secret_key, store.settings.home)),
        templates=shared_templates(str(templates_dir() / "web")),
        clock=clock or replay_clock(settings.clock_start) or utc_now,
        status=StatusCache(ttl=status_ttl, due_soon_working_days=reminders.due_soon_working_days, uow_factory=store.uow,
                           check_seconds=status_check_seconds),
        renders=RenderCache(),
        throttle=LoginThrottle(),
        refresh_seconds=refresh_seconds,
        submit_url=reminders.submit_url,
        viewers=ViewerCache(ttl=viewer_ttl),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if owns_store:
            store.dispose()

    app = FastAPI(title="kiemdiem", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.web = ctx
    # The tree page of a province is ~1 MB of HTML; offices often sit behind slow district links.
    app.add_middleware(GZipMiddleware, minimum_size=4096, compresslevel=5, exclude_content_types=GZIP_EXCLUDED)
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=templates_dir() / "web" / "static"), name="static")
    app.include_router(routes_auth.router)
    app.include_router(routes_pages.router)
    app.include_router(routes_files.router)
    app.include_router(routes_decisions.router)
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, not_found)
    app.add_exception_handler(Exception, server_error)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return Response("ok", media_type="text/plain")

    return app


def wants_json(request: Request) -> bool:
    path = request.url.path
    return "application/json" in request.headers.get("accept", "") or path.endswith(".json") or "/live" in path


async def login_required(request: Request, _exc: Exception) -> Response:
    if request.method != "GET" or wants_json(request):
        # A tab left open after signing out (or a session that ran out): say what to do; the page's script adds
        # the "Đăng nhập lại" link, back to the page the request came from.
        back = safe_next(urlsplit(request.headers.get("referer") or "").path, "")
        return JSONResponse({"error": "Phiên đăng nhập đã hết hoặc đồng chí đã đăng xuất, nên chưa có gì được lưu. "
                                      "Hãy đăng nhập lại rồi chọn tệp và nộp lại.",
                             "login": "/login" + (f"?next={quote(back, safe='/')}" if back else "")}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


async def csrf_refused(request: Request, _exc: Exception) -> Response:
    message = STALE_FORM
    if wants_json(request):
        return JSONResponse({"ok": False, "message": message}, status_code=403)
    return render(request, "error.html", status_code=403, title="Yêu cầu bị từ chối", message=message, viewer=None)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    status = exc.status_code
    default = ERROR_MESSAGES.get(status, "Đã có lỗi xảy ra.")
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail not in ("Not Found", "Method Not Allowed") else default
    if status in (404, 405):
        status = 404
    if wants_json(request):
        return JSONResponse({"error": detail}, status_code=status)
    return render(request, "error.html", status_code=status, title="Không tìm thấy" if status == 404 else "Lỗi", message=detail, viewer=None)


async def not_found(request: Request, _exc: Exception) -> Response:
    return await http_error(request, StarletteHTTPException(404))


async def server_error(request: Request, exc: Exception) -> Response:
    """Any unhandled error: logged with its traceback, answered with a Vietnamese page (no internals shown)."""
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    message = ERROR_MESSAGES[500]
    if wants_json(request):
        response: Response = JSONResponse({"error": message}, status_code=500)
    else:
        try:
            response = render(request, "error.html", status_code=500, title="Lỗi hệ thống", message=message, viewer=None)
        except Exception:  # the templates themselves may be what failed
            response = HTMLResponse(f'<!doctype html><html lang="vi"><meta charset="utf-8"><p>{message}</p></html>', status_code=500)
    # This handler runs outside the middleware stack, so the security headers are added here.
    response.headers.update({**SECURITY_HEADERS, "cache-control": "no-store"})
    return response
