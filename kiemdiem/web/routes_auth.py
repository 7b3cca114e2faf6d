"""Log-in, log-out and the one-time sign-in links sent by invitation."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

import datetime as dt
from urllib.parse import quote

from kiemdiem.errors import InvalidInput, KiemdiemError
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import EventLog, Unit, User
from kiemdiem.web.auth import (
    audit,
    authenticate,
    find_sign_in_token,
    find_user,
    invite_user,
    new_session,
    normalise_email,
    password_fingerprint,
    redeem_sign_in_token,
    revoke_session,
    set_password,
)
from kiemdiem.web.auth import SESSION_COOKIE
from kiemdiem.web.context import (
    STALE_LINK_REQUEST,
    STALE_LOGIN,
    LoginRequired,
    anonymous_session,
    checked_form,
    client_ip,
    get_ctx,
    get_uow,
    get_viewer,
    login_form_data,
    read_session,
    render,
    safe_next,
    set_session_cookie,
)

router = APIRouter()


def home_of(campaign_id: str, role: str = "office", unit_code: str = "") -> str:
    """Where a person lands: a unit's people on their unit's page (what it still owes, the upload button); an
    office and an administrator on the campaign's overview."""
    if role == "unit" and unit_code:
        return f"/c/{quote(campaign_id, safe='')}/u/{quote(unit_code, safe='')}"
    return f"/c/{quote(campaign_id, safe='')}"


def user_home(uow: UnitOfWork, user: User) -> str:
    return home_of(user.campaign_id, user.role, uow.session.scalar(select(Unit.code).where(Unit.id == user.unit_id)) or "")


@router.get("/")
def index(request: Request, uow: UnitOfWork = Depends(get_uow)):
    try:
        viewer = get_viewer(request, uow)
    except LoginRequired:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse(home_of(viewer.campaign_id, viewer.role, viewer.unit_code), status_code=303)


def login_page(request: Request, *, error: str | None = None, email: str = "", status_code: int = 200,
               next_target: str | None = None) -> Response:
    """The log-in form (again, with what was typed and why it was not accepted); ``next_target``: where to go
    after, when not in the address (a form posted back carries it as a field)."""
    ctx = get_ctx(request)
    session, fresh = anonymous_session(request)
    response = render(
        request, "login.html", status_code=status_code, csrf=ctx.codec.csrf_token(session), error=error, email=email,
        next=safe_next(request.query_params.get("next") if next_target is None else next_target, ""), viewer=None,
    )
    if fresh:
        set_session_cookie(ctx, response, session)
    return response


USED_LINK = (
    "Đường dẫn đăng nhập không hợp lệ, đã được dùng hoặc đã hết hạn. Nếu đồng chí đã đặt mật khẩu khi dùng đường dẫn, "
    "hãy đăng nhập bằng email và mật khẩu; nếu chưa, hãy xin đường dẫn mới ở trang đăng nhập "
    "(“Chưa đặt mật khẩu hoặc quên mật khẩu?”) hoặc đề nghị văn phòng gửi lại thư mời."
)


@router.get("/login")
def login_form(request: Request):
    return login_page(request)


@router.post("/login")
def login(request: Request, posted: tuple[FormData, bool] = Depends(login_form_data), uow: UnitOfWork = Depends(get_uow)):
    ctx = get_ctx(request)
    form, fresh = posted
    email = normalise_email(str(form.get("email") or ""))
    if not fresh:
        # A form left open until its session ran out (or signed in or out in another tab): the form again, with
        # the email typed and a fresh token, asking to sign in again; no password is tried with a stale form.
        return login_page(request, error=STALE_LOGIN, email=email, status_code=403, next_target=str(form.get("next") or ""))
    password = str(form.get("password") or "")
    now = ctx.now()
    if ctx.throttle.blocked(email):
        # In the user's campaign's log (when the address is a user's), where its admin sees the lockout.
        known = uow.session.scalar(select(User.campaign_id).where(User.email == email))
        audit(uow, campaign_id=known, actor=email or "?", action="web.login_failed", subject=email, now=now,
              detail={"reason": "throttled", "ip": client_ip(request)})
        uow.commit()
        return login_page(request, error="Đăng nhập sai quá nhiều lần. Hãy thử lại sau 15 phút.", email=email, status_code=429)
    user, why = authenticate(uow, email, password)
    if user is None:
        ctx.throttle.failed(email)
        known = uow.session.scalar(select(User.campaign_id).where(User.email == email))
        audit(uow, campaign_id=known, actor=email or "?", action="web.login_failed", subject=email, now=now,
              detail={"reason": why, "ip": client_ip(request)})
        uow.commit()
        return login_page(request, error="Email hoặc mật khẩu không đúng. Nếu chưa đặt mật khẩu hoặc quên mật khẩu, hãy bấm "
                                         "“Chưa đặt mật khẩu hoặc quên mật khẩu?” bên dưới để nhận đường dẫn đăng nhập mới.",
                          email=email, status_code=401)
    ctx.throttle.succeeded(email)
    audit(uow, campaign_id=user.campaign_id, actor=user.email, action="web.login", subject=user.email, now=now,
          detail={"method": "password", "ip": client_ip(request)})
    uow.commit()
    target = safe_next(str(form.get("next") or ""), user_home(uow, user))
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(ctx, response, new_session(user.id, password_fingerprint(user.password_hash)))
    return response


@router.post("/logout")
def logout(request: Request, form: FormData = Depends(checked_form), uow: UnitOfWork = Depends(get_uow)):
    ctx = get_ctx(request)
    session = read_session(request)
    if session is not None and session.user_id is not None:
        user = uow.session.get(User, session.user_id)
        if user is not None:
            now = ctx.now()
            # A copy of the cookie (another tab, a shared computer) must stop working too.
            revoke_session(uow, session, user.id, now, ctx.codec.max_age)
            audit(uow, campaign_id=user.campaign_id, actor=user.email, action="web.logout", subject=user.email, now=now,
                  detail={"ip": client_ip(request)})
            uow.commit()
        ctx.viewers.forget(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/login", status_code=303)
    set_session_cookie(ctx, response, new_session())
    return response


@router.get("/signin/{token}")
def signin_form(token: str, request: Request, uow: UnitOfWork = Depends(get_uow)):
    """Shows a button: mail scanners that open links must not use up the one-time token."""
    ctx = get_ctx(request)
    found = find_sign_in_token(uow, token, ctx.now())
    if found is None:
        try:  # opened again from the mail after signing in with it: home, with a word about it
            viewer = get_viewer(request, uow)
        except LoginRequired:
            raise HTTPException(404, USED_LINK) from None
        return RedirectResponse(home_of(viewer.campaign_id, viewer.role, viewer.unit_code) + "?notice=link-used", status_code=303)
    row, user = found
    session, fresh = anonymous_session(request)
    response = render(request, "signin.html", csrf=ctx.codec.csrf_token(session), user=user, expires_at=row.expires_at,
                      token=token, error=None, viewer=None)
    if fresh:
        set_session_cookie(ctx, response, session)
    return response


@router.post("/signin/{token}")
def signin(token: str, request: Request, form: FormData = Depends(checked_form), uow: UnitOfWork = Depends(get_uow)):
    ctx = get_ctx(request)
    now = ctx.now()
    found = find_sign_in_token(uow, token, now)
    if found is None:
        audit(uow, campaign_id=None, actor="?", action="web.login_failed", subject="signin-link", now=now,
              detail={"reason": "bad_or_used_link", "ip": client_ip(request)})
        uow.commit()
        raise HTTPException(404, USED_LINK)
    row, user = found
    password = str(form.get("password") or "")
    if password:
        if password != str(form.get("password2") or ""):
            return _signin_error(request, token, row, user, "Hai lần nhập mật khẩu không khớp.")
        try:
            set_password(uow, user, password)
        except InvalidInput as exc:
            return _signin_error(request, token, row, user, str(exc.problems[0].reason).capitalize() + ".")
    user = redeem_sign_in_token(uow, token, now)
    audit(uow, campaign_id=user.campaign_id, actor=user.email, action="web.login", subject=user.email, now=now,
          detail={"method": "signin_link", "password_set": bool(password), "ip": client_ip(request)})
    target = user_home(uow, user)
    uow.commit()
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(ctx, response, new_session(user.id, password_fingerprint(user.password_hash)))
    return response


def _signin_error(request: Request, token: str, row, user: User, error: str) -> Response:
    ctx = get_ctx(request)
    session, _ = anonymous_session(request)
    return render(request, "signin.html", status_code=422, csrf=ctx.codec.csrf_token(session), user=user,
                  expires_at=row.expires_at, token=token, error=error, viewer=None)


# ----------------------------------------------------------------------------- a new sign-in link, asked for


LINK_REQUEST_MINUTES = 10  # at most one such e-mail per person in this time
LINK_REQUESTED = "web.link_requested"


def link_page(request: Request, *, email: str = "", sent: bool = False, error: str | None = None,
              status_code: int = 200) -> Response:
    ctx = get_ctx(request)
    session, fresh = anonymous_session(request)
    response = render(request, "login.html", status_code=status_code, mode="link", csrf=ctx.codec.csrf_token(session), email=email,
                      sent=sent, error=error, viewer=None)
    if fresh:
        set_session_cookie(ctx, response, session)
    return response


@router.get("/login/link")
def link_form(request: Request):
    return link_page(request, sent=request.query_params.get("sent") == "1")


@router.post("/login/link")
def send_link(request: Request, posted: tuple[FormData, bool] = Depends(login_form_data), uow: UnitOfWork = Depends(get_uow)):
    """Someone who never set a password (or forgot it) asks for a new sign-in link: queued as an invitation is
    (``invite_user``: the same e-mail, the same expiry, sent at the next tick) when the address is an active
    person's and none was asked for in the last ten minutes. The answer is the same either way. A stale
    form gets the form again (as the log-in form does)."""
    ctx = get_ctx(request)
    now = ctx.now()
    form, fresh = posted
    email = normalise_email(str(form.get("email") or ""))
    if not fresh:
        return link_page(request, email=email, error=STALE_LINK_REQUEST, status_code=403)
    if "@" not in email or len(email) > 256:
        return link_page(request, email=email, error="Hãy nhập đúng địa chỉ email đồng chí dùng cho cổng này.", status_code=422)
    user = find_user(uow, email)
    outcome = "unknown_email" if user is None else "inactive" if not user.active else ""
    if user is not None and not outcome:
        if _recently_sent(uow, email, now):
            outcome = "too_soon"
        else:
            unit_code = uow.session.scalar(select(Unit.code).where(Unit.id == user.unit_id))
            try:
                invite_user(uow, campaign_id=user.campaign_id, unit_code=unit_code, email=email, full_name=user.full_name,
                            now=now, hours=ctx.settings.invite_hours, base_url=ctx.submit_url, actor=email, role=user.role)
                outcome = "sent"
            except KiemdiemError:
                uow.rollback()
                outcome = "refused"
    audit(uow, campaign_id=user.campaign_id if user is not None else None, actor=email or "?", action=LINK_REQUESTED,
          subject=email, now=now, detail={"sent": outcome == "sent", "reason": outcome, "ip": client_ip(request)})
    uow.commit()
    return RedirectResponse("/login/link?sent=1", status_code=303)


def _recently_sent(uow: UnitOfWork, email: str, now: dt.datetime) -> bool:
    rows = uow.session.scalars(
        select(EventLog.detail).where(EventLog.action == LINK_REQUESTED, EventLog.subject == email,
                                      EventLog.at > now - dt.timedelta(minutes=LINK_REQUEST_MINUTES))
    )
    return any((detail or {}).get("sent") for detail in rows)
