"""What every request handler shares: the store, settings, templates, the clock, caches, and
the request plumbing (who is asking, the CSRF check, the session cookie, rendering).

Access rule: a person is bound to one unit of one campaign and sees and acts only within
that unit's subtree (``Unit.path`` prefix). Anything else, including a page their role may
not open, answers 404 so nothing outside is even confirmed to exist.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.responses import HTMLResponse, Response

from kiemdiem.calendar import format_date, format_instant
from kiemdiem.catalogue import DOCUMENTS, LEVELS, MEMBER_STATUSES, PHASE_KINDS, UNIT_KINDS
from kiemdiem.consolidation import QUOTA_SCOPE_LABELS, show_value
from kiemdiem.rules.base import finding_title
from kiemdiem.settings import WebSettings
from kiemdiem.status import STATE_NAMES
from kiemdiem.store.db import Store, UnitOfWork
from kiemdiem.store.models import RevokedSession, Unit, User
from kiemdiem.tabular import format_decimal
from kiemdiem.web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    ROLE_NAMES,
    SESSION_COOKIE,
    LoginThrottle,
    Session,
    SessionCodec,
    new_session,
    password_fingerprint,
)
from kiemdiem.web.queries import NO_STATE, RenderCache, StatusCache, StatusView
from kiemdiem.web.uploads import format_size

STATE_LABELS = {**STATE_NAMES, NO_STATE: "Không có hạn"}
# The tree's state filter over all phases: the units with at least one phase in the state (``StatusView.states``).
ANY_PHASE_STATE_LABELS = {
    "done": "Có giai đoạn hoàn thành đúng hạn",
    "done_late": "Có giai đoạn hoàn thành trễ hạn",
    "pending": "Có giai đoạn chưa đến hạn",
    "due_soon": "Có giai đoạn sắp đến hạn",
    "overdue": "Có giai đoạn quá hạn",
    NO_STATE: "Không phải thực hiện giai đoạn nào",
}
AUDIT_ACTIONS = {
    "web.login": "Đăng nhập",
    "web.login_failed": "Đăng nhập không thành công",
    "web.logout": "Đăng xuất",
    "web.user_created": "Tạo người dùng",
    "web.invite": "Mời người phụ trách (gửi đường dẫn đăng nhập)",
    "web.upload": "Nộp hồ sơ qua cổng web",
    "web.download": "Tải tệp hồ sơ",
    "web.export": "Xuất dữ liệu (XLSX, CSV)",
    "web.dossier": "Tải hồ sơ của đơn vị (ZIP)",
    "web.result_cancel": "Hủy kết quả xếp loại qua cổng web",
    "web.finding_override": "Chấp thuận vi phạm qua cổng web",
    "submission.received": "Nhận hồ sơ",
    "results.ingested": "Đọc danh sách kết quả xếp loại",
    "results.recorded": "Ghi kết quả xếp loại",
    "results.refused": "Từ chối danh sách kết quả xếp loại",
    "result.cancelled": "Hủy kết quả xếp loại",
    "finding.overridden": "Chấp thuận vi phạm, lưu ý",
    "consolidation.completed": "Tổng hợp kết quả",
    "org.imported": "Nhập danh sách tổ chức, đảng viên",
    "plan.updated": "Cập nhật kế hoạch",
    "campaign.created": "Tạo đợt kiểm điểm",
    "tick.done": "Lượt xử lý tự động (nhận hồ sơ, nhắc việc, chuyển cấp)",
    "mail.failed": "Gửi thư không thành công",
    "mail.retry": "Gửi lại thư",
}
VIEWER_TTL_SECONDS = 5.0


class LoginRequired(Exception):
    """No valid session: pages redirect to the log-in form, scripts get 401."""


class CsrfRefused(Exception):
    """A POST without the session's CSRF token."""


# A form whose CSRF token no longer matches the session (signed in again, or out, in another tab): in plain words.
STALE_FORM = "Trang này đã cũ (có thể do bạn đã đăng nhập lại). Hãy tải lại trang rồi làm lại."
# ... the log-in form's (left open until its session ran out, or signed in or out in another tab): it is shown
# again, with this, ready to sign in.
STALE_LOGIN = "Trang này đã cũ (phiên làm việc đã hết hạn hoặc đã đăng nhập, đăng xuất ở cửa sổ khác). Hãy đăng nhập lại."
STALE_LINK_REQUEST = ("Trang này đã cũ (phiên làm việc đã hết hạn hoặc đã đăng nhập, đăng xuất ở cửa sổ khác). "
                      "Hãy bấm “Gửi đường dẫn đăng nhập” lại.")


@dataclass
class WebContext:
    store: Store
    settings: WebSettings
    codec: SessionCodec
    templates: Environment
    clock: Callable[[], dt.datetime]
    status: StatusCache
    renders: RenderCache
    throttle: LoginThrottle
    refresh_seconds: int
    submit_url: str
    viewers: ViewerCache

    @property
    def max_upload_bytes(self) -> int:
        return self.settings.max_upload_mb * 1024 * 1024

    def now(self) -> dt.datetime:
        return self.clock()

    def view(self, uow: UnitOfWork, campaign_id: str) -> StatusView:
        return self.status.get(uow, campaign_id, self.now())


@dataclass(frozen=True)
class Viewer:
    """The person asking, with the subtree they may see."""

    id: int
    email: str
    full_name: str
    role: str
    campaign_id: str
    unit_id: int
    unit_code: str
    unit_name: str
    unit_path: str
    at_root: bool
    session: Session
    csrf: str

    @property
    def role_name(self) -> str:
        return ROLE_NAMES.get(self.role, self.role)

    @property
    def is_staff(self) -> bool:
        return self.role in ("admin", "office")

    def sees(self, path: str) -> bool:
        return path.startswith(self.unit_path)

    def decides_for(self, path: str) -> bool:
        """Whether this person's office may record its committee's decisions about the unit at ``path``
        (cancel a result, approve a finding): staff, for the units below their own; at the campaign's
        root, for every unit (a committee does not decide on its own organization's result)."""
        return self.is_staff and path.startswith(self.unit_path) and (self.at_root or path != self.unit_path)


@lru_cache(maxsize=4)
def shared_templates(directory: str) -> Environment:
    """One compiled template environment per directory and process (environments are thread-safe)."""
    return make_templates(Path(directory))


def make_templates(directory: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(directory)),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["d"] = lambda value: format_date(value) if value else "—"
    env.filters["dt"] = lambda value: format_instant(value) if value else "—"
    env.filters["pct"] = format_percent
    env.filters["state"] = lambda s: STATE_LABELS.get(s, s)
    env.filters["any_phase_state"] = lambda s: ANY_PHASE_STATE_LABELS.get(s, s)
    env.filters["doc"] = lambda code: DOCUMENTS[code].name if code in DOCUMENTS else code
    env.filters["kind"] = lambda code: UNIT_KINDS.get(code, code)
    env.filters["phase_kind"] = lambda code: PHASE_KINDS.get(code, code)
    env.filters["level"] = lambda code: LEVELS.get(code, code) if code else "—"
    env.filters["member_status"] = lambda code: MEMBER_STATUSES.get(code, code)
    env.filters["role"] = lambda code: ROLE_NAMES.get(code, code)
    env.filters["source"] = lambda code: SOURCE_NAMES.get(code, code)
    env.filters["urlq"] = lambda value: quote(str(value), safe="")
    env.filters["num"] = format_number
    env.filters["size"] = format_size
    env.filters["quota_scope"] = lambda code: QUOTA_SCOPE_LABELS.get(code, code)
    env.filters["change"] = format_change
    env.filters["finding"] = finding_title  # a finding key in words
    env.filters["action"] = lambda code: AUDIT_ACTIONS.get(code, code)
    env.filters["mail_error_text"] = mail_error_text  # an outbox ``last_error`` as one Vietnamese sentence
    env.filters["mail_error_detail"] = mail_error_detail  # ... and the server's own words, for a <details>
    env.globals["audit_detail"] = audit_detail
    return env


# ----------------------------------------------------------------------------- mail errors

_MAIL_TO_IT = "báo bộ phận CNTT kiểm tra cấu hình gửi thư"
_MAIL_CONNECT = f"Không kết nối được máy chủ thư (SMTP): máy chủ không trả lời hoặc sai địa chỉ, cổng — {_MAIL_TO_IT}"
_MAIL_TIMEOUT = f"Máy chủ thư (SMTP) không trả lời kịp (quá thời gian chờ) — hệ thống sẽ tự gửi lại; nếu lỗi kéo dài, {_MAIL_TO_IT}"
_MAIL_DISCONNECTED = f"Máy chủ thư (SMTP) ngắt kết nối giữa chừng — hệ thống sẽ tự gửi lại; nếu lỗi kéo dài, {_MAIL_TO_IT}"
_MAIL_LOGIN = f"Máy chủ thư (SMTP) không cho hệ thống đăng nhập (tài khoản, mật khẩu gửi thư sai hoặc chưa đặt) — {_MAIL_TO_IT}"
_MAIL_RECIPIENT = "Máy chủ thư không nhận địa chỉ người nhận (địa chỉ có thể bị gõ sai hoặc không còn dùng) — hãy kiểm tra lại địa chỉ email"
_MAIL_ADDRESS = "Địa chỉ email không hợp lệ hoặc có chữ có dấu mà máy chủ thư không nhận — hãy kiểm tra lại địa chỉ email"
_MAIL_SENDER = f"Máy chủ thư không nhận địa chỉ người gửi của hệ thống — {_MAIL_TO_IT}"
_MAIL_CONTENT = f"Máy chủ thư từ chối nội dung thư (thư quá lớn hoặc bị coi là thư rác) — {_MAIL_TO_IT}"
_MAIL_LATER = "Máy chủ thư tạm thời chưa nhận thư — hệ thống sẽ tự gửi lại; nếu lỗi kéo dài, " + _MAIL_TO_IT
_MAIL_REFUSED = f"Máy chủ thư từ chối thư — {_MAIL_TO_IT}"
_MAIL_OTHER = f"Gửi thư không thành công — {_MAIL_TO_IT}"
# By the exception's name (``SendOutcome.error_type``), then by words of its message (older rows keep text only).
_MAIL_BY_TYPE = {
    "SMTPConnectError": _MAIL_CONNECT, "SMTPConnectResponseError": _MAIL_CONNECT, "ConnectionRefusedError": _MAIL_CONNECT,
    "gaierror": _MAIL_CONNECT, "SMTPConnectTimeoutError": _MAIL_TIMEOUT, "SMTPReadTimeoutError": _MAIL_TIMEOUT,
    "SMTPTimeoutError": _MAIL_TIMEOUT, "TimeoutError": _MAIL_TIMEOUT, "SMTPServerDisconnected": _MAIL_DISCONNECTED,
    "SMTPAuthenticationError": _MAIL_LOGIN, "PasswordLookupError": _MAIL_LOGIN, "SMTPAuthUnavailable": _MAIL_LOGIN,
    "SMTPRecipientsRefused": _MAIL_RECIPIENT, "SMTPRecipientRefused": _MAIL_RECIPIENT, "SMTPNotSupported": _MAIL_ADDRESS,
    "ValueError": _MAIL_ADDRESS, "SMTPSenderRefused": _MAIL_SENDER, "SMTPDataError": _MAIL_CONTENT,
}
_MAIL_BY_WORDS = (
    (("error connecting", "connection refused", "errno 111", "connect call failed", "name or service not known",
      "nodename nor servname", "no route to host", "network is unreachable"), _MAIL_CONNECT),
    (("timed out", "timeout"), _MAIL_TIMEOUT),
    (("authentication", "password lookup", "auth extension", "5.7.8"), _MAIL_LOGIN),
    (("disconnected", "connection lost", "connection reset"), _MAIL_DISCONNECTED),
    (("recipient", "mailbox", "user unknown", "5.1.1", "5.1.2"), _MAIL_RECIPIENT),
)


def _mail_error_parts(error) -> tuple[str, int | None, str, bool]:
    """(error type, SMTP code, the server's words, whether a recipient was refused) of a ``last_error``."""
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or "")
        refused = [r for r in error.get("refused") or () if isinstance(r, dict)]
        if refused and not message:
            message = str(refused[0].get("message") or "")
        return str(error.get("error_type") or error.get("type") or ""), code if isinstance(code, int) else None, message, bool(refused)
    return "", None, str(error or ""), False


def mail_error_text(error) -> str:
    """An outbox row's ``last_error`` (``SendOutcome.as_dict()``: status, code, message, error_type,
    refused; or plain text, as older rows and event details keep it) as one Vietnamese sentence an
    office can act on: what went wrong and who should do something. Empty when there is no error.
    The server's own words are ``mail_error_detail`` (for a ``<details>`` or a title)."""
    if not error:
        return ""
    error_type, code, message, refused = _mail_error_parts(error)
    if refused:
        return _MAIL_RECIPIENT
    if error_type in _MAIL_BY_TYPE:
        return _MAIL_BY_TYPE[error_type]
    if code in (535, 534, 530):
        return _MAIL_LOGIN
    if code in (550, 551, 553):
        return _MAIL_RECIPIENT
    if code in (552, 554):
        return _MAIL_CONTENT
    text = message.lower()
    for words, sentence in _MAIL_BY_WORDS:
        if any(w in text for w in words):
            return sentence
    if code is not None:
        return _MAIL_LATER if 400 <= code < 500 else _MAIL_REFUSED
    return _MAIL_OTHER


def mail_error_detail(error, limit: int = 300) -> str:
    """The technical text of a ``last_error``: error type, SMTP code and the server's words, as they came."""
    if not error:
        return ""
    error_type, code, message, _refused = _mail_error_parts(error)
    return " ".join(part for part in (error_type, str(code) if code else "", message) if part)[:limit]


def format_percent(value: float | None) -> str:
    if value is None:
        return "—"
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return text.replace(".", ",") + "%"


def format_change(value) -> str:
    """A value of a changed totals field, translated as the diff email translates it (numbers as on the page)."""
    return format_number(value) if isinstance(value, int) else show_value(value)


def audit_detail(detail: dict | None) -> tuple[list[str], list[str]]:
    """An event's detail as "key: value" lines, and the problems of a refused list (their text, one a line)."""
    fields = dict(detail or {})
    problems = fields.pop("problems_text", None) or []
    if problems:
        fields.pop("problems", None)  # the same problems, as data
    return [f"{DETAIL_LABELS.get(key, key)}: {_detail_value(key, value)}" for key, value in fields.items()], [str(p) for p in problems]


# Where a submission came from, as the unit page and the audit log name it.
SOURCE_NAMES = {"web": "cổng web", "cli": "dòng lệnh", "drop": "thư mục nhận"}
# The detail keys the log writes, as an office reads them (a key not listed shows as it is).
DETAIL_LABELS = {
    "ip": "địa chỉ IP", "unit": "đơn vị", "unit_code": "đơn vị", "reason": "lý do", "submission_id": "lần nộp số",
    "role": "vai trò", "outbox_id": "thư số", "on_time": "đúng hạn", "method": "cách đăng nhập", "with_password": "có mật khẩu",
    "password_set": "đặt mật khẩu", "source": "nguồn", "files": "tệp", "file_id": "tệp số", "expires_at": "hết hạn lúc",
    "effective_at": "hiệu lực từ", "created_user": "tạo người dùng", "changed_units": "đơn vị thay đổi", "attempts": "số lần thử",
    "gave_up": "ngừng gửi", "error": "lỗi", "doc_type": "loại văn bản", "item_key": "mục", "message": "nội dung",
    "covers": "áp dụng cho số liệu", "kept_decisions": "giữ quyết định của cấp trên", "units_added": "đơn vị thêm",
    "units_updated": "đơn vị cập nhật", "members_added": "đảng viên thêm", "members_updated": "đảng viên cập nhật",
    "by": "cấp ủy quyết định", "row_id": "kết quả số", "level": "mức xếp loại", "phase": "giai đoạn", "rebuilt": "lập lại",
}
_DETAIL_CODES = {
    "method": {"password": "mật khẩu", "signin_link": "đường dẫn đăng nhập"},
    "reason": {"throttled": "sai quá nhiều lần, tạm khóa", "wrong_password": "sai mật khẩu", "unknown_email": "không có người dùng này",
               "no_password": "chưa đặt mật khẩu", "inactive": "tài khoản đã bị khóa",
               "bad_or_used_link": "đường dẫn không hợp lệ, đã dùng hoặc hết hạn"},
    "source": SOURCE_NAMES,
}


def _detail_value(key: str, value) -> str:
    if key in _DETAIL_CODES and isinstance(value, str):
        return _DETAIL_CODES[key].get(value, value)
    if key == "role" and isinstance(value, str):
        return ROLE_NAMES.get(value, value)
    if key == "doc_type" and isinstance(value, str):
        return DOCUMENTS[value].name if value in DOCUMENTS else value
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        try:  # an instant written as ISO 8601: shown on the local clock, as everywhere else
            instant = dt.datetime.fromisoformat(value)
            if instant.tzinfo is not None:
                return format_instant(instant)
        except ValueError:
            pass
    return detail_value(value)


def detail_value(value) -> str:
    if isinstance(value, bool):
        return "có" if value else "không"
    if value is None or value == [] or value == {}:
        return "—"
    if isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_number(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format_decimal(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", ".")
    return str(value)


# ----------------------------------------------------------------------------- dependencies


def get_ctx(request: Request) -> WebContext:
    return request.app.state.web


def get_uow(request: Request) -> Iterator[UnitOfWork]:
    with get_ctx(request).store.uow() as uow:
        yield uow


def read_session(request: Request) -> Session | None:
    return get_ctx(request).codec.loads(request.cookies.get(SESSION_COOKIE))


class ViewerCache:
    """Who a session cookie belongs to, for a few seconds (a locked account stops working within that time)."""

    def __init__(self, ttl: float = VIEWER_TTL_SECONDS, size: int = 4096):
        self.ttl = ttl
        self.size = size
        self._items: dict[str, tuple[float, Viewer]] = {}
        self._lock = threading.Lock()

    def get(self, cookie: str) -> Viewer | None:
        item = self._items.get(cookie)
        if item is None or item[0] < time.monotonic():
            return None
        return item[1]

    def put(self, cookie: str, viewer: Viewer) -> None:
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[cookie] = (time.monotonic() + self.ttl, viewer)

    def forget(self, cookie: str | None) -> None:
        if cookie:
            with self._lock:
                self._items.pop(cookie, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def get_viewer(request: Request, uow: UnitOfWork = Depends(get_uow)) -> Viewer:
    ctx = get_ctx(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    cached = ctx.viewers.get(cookie) if cookie else None
    if cached is not None:
        return cached
    session = read_session(request)
    if session is None or session.user_id is None:
        raise LoginRequired()
    row = uow.session.execute(
        select(User, Unit.code, Unit.name, Unit.path, Unit.parent_id, RevokedSession.sid)
        .join(Unit, Unit.id == User.unit_id)
        .outerjoin(RevokedSession, RevokedSession.sid == session.sid)
        .where(User.id == session.user_id)
    ).first()
    if row is None:
        raise LoginRequired()
    user, code, name, path, parent_id, revoked = row
    if revoked is not None or not user.active or password_fingerprint(user.password_hash) != session.fingerprint:
        raise LoginRequired()
    viewer = Viewer(
        user.id, user.email, user.full_name, user.role, user.campaign_id, user.unit_id, code, name, path,
        parent_id is None, session, ctx.codec.csrf_token(session),
    )
    ctx.viewers.put(cookie, viewer)
    return viewer


def as_viewer(request: Request, work: Callable[[UnitOfWork, Viewer], Response]) -> Response:
    """Open a unit of work, find who is asking, and do ``work``: one thread-pool hop for a busy page."""
    with get_ctx(request).store.uow() as uow:
        return work(uow, get_viewer(request, uow))


def campaign_of(viewer: Viewer, campaign_id: str) -> str:
    """The campaign in the URL must be the viewer's; any other answers 404."""
    if campaign_id != viewer.campaign_id:
        raise HTTPException(404)
    return campaign_id


def require_role(viewer: Viewer, *roles: str) -> None:
    if viewer.role not in roles:
        raise HTTPException(404)


async def checked_form(request: Request) -> FormData:
    """The request's form, after the CSRF check (field ``csrf_token`` or header ``X-CSRF-Token``)."""
    form = await request.form(max_files=0, max_fields=50)
    check_csrf(request, form)
    return form


async def login_form_data(request: Request) -> tuple[FormData, bool]:
    """The log-in forms' data and whether it passed the CSRF check (``check_csrf``): a stale form is answered
    with the form again (``STALE_LOGIN``), not with the error page."""
    form = await request.form(max_files=0, max_fields=50)
    try:
        check_csrf(request, form)
    except CsrfRefused:
        return form, False
    return form, True


def check_csrf(request: Request, form: FormData | None) -> None:
    token = request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) if form is not None else None)
    if not isinstance(token, str) or not get_ctx(request).codec.check_csrf(read_session(request), token):
        raise CsrfRefused()


# ----------------------------------------------------------------------------- responses


def set_session_cookie(ctx: WebContext, response: Response, session: Session) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        ctx.codec.dumps(session),
        max_age=ctx.codec.max_age,
        httponly=True,
        samesite="lax",
        secure=ctx.settings.secure_cookies,
        path="/",
    )


def anonymous_session(request: Request) -> tuple[Session, bool]:
    """The visitor's session, or a new anonymous one (True: the cookie must be set)."""
    session = read_session(request)
    if session is not None:
        return session, False
    return new_session(), True


def render(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    ctx = get_ctx(request)
    html = render_text(ctx, template, **context)
    return HTMLResponse(html, status_code=status_code)


def render_text(ctx: WebContext, template: str, **context) -> str:
    context.setdefault("now", ctx.now())
    context.setdefault("refresh", ctx.refresh_seconds)
    return ctx.templates.get_template(template).render(**context)


def safe_next(target: str | None, default: str) -> str:
    """Only local paths are followed after log-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def markup(html: str) -> Markup:
    return Markup(html)
