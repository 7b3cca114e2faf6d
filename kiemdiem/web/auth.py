"""Who is asking: passwords, signed session cookies, CSRF tokens, sign-in links, the audit log.

- Passwords are hashed with scrypt (hashlib) and a per-user salt; the cost is stored with
  the hash, so it can be raised later without invalidating old hashes.
- The session is a cookie signed with itsdangerous (HttpOnly, SameSite=Lax, Secure when
  ``WebSettings.secure_cookies``), holding a random session id and the user id. Every
  visitor gets one (anonymous until log-in); the id is renewed at log-in and log-out.
- The CSRF token is an HMAC of the session id: every form carries it as ``csrf_token`` and
  every script POST as the ``X-CSRF-Token`` header; a POST without the right one is refused.
- A sign-in link holds a random token; only its sha256 is stored, with an expiry
  (``WebSettings.invite_hours``), and it works once. The invitation is an outbox row
  (kind ``invite``) composed by ``compose_invite``; the pipeline's sender delivers it.
- Every web action is an ``EventLog`` row (``web.login``, ``web.logout``,
  ``web.login_failed``, ``web.upload``, ``web.download``, ``web.export``, ``web.invite``...).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select

from kiemdiem.errors import InvalidInput, NotFound, Problem, Refused
from kiemdiem.notify.messages import compose_invite
from kiemdiem.store.db import UnitOfWork
from kiemdiem.store.models import EventLog, RevokedSession, SignInToken, Unit, User
from kiemdiem.store.organization import campaign_plan, get_campaign
from kiemdiem.store.outbox import enqueue

ROLES = ("admin", "office", "unit")
ROLE_NAMES = {"admin": "Quản trị", "office": "Văn phòng", "unit": "Đơn vị"}

SESSION_COOKIE = "kiemdiem_session"
SESSION_MAX_AGE = 12 * 3600  # seconds a session cookie is accepted after it was issued
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MIN_PASSWORD_LENGTH = 10
SECRET_FILE = "web-secret.key"

# scrypt cost; stored in each hash (tests lower it for speed)
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_DKLEN = 32

# In-process brake on password guessing: this many failures per e-mail within the window.
LOGIN_FAILURES_ALLOWED = 8
LOGIN_FAILURE_WINDOW = 15 * 60


# ----------------------------------------------------------------------------- passwords


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` with a fresh 16-byte salt."""
    n = n or SCRYPT_N
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=_maxmem(n, SCRYPT_R), dklen=SCRYPT_DKLEN)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _maxmem(n: int, r: int) -> int:
    return 256 * n * r + (1 << 20)


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; False for a missing or malformed hash."""
    if not stored:
        _dummy_verify(password)
        return False
    try:
        scheme, n_text, r_text, p_text, salt_text, digest_text = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt, expected = base64.b64decode(salt_text), base64.b64decode(digest_text)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r), dklen=len(expected))
    return hmac.compare_digest(digest, expected)


@lru_cache(maxsize=4)
def _dummy_hash(n: int) -> str:
    return hash_password("không có tài khoản này", n=n)


def _dummy_verify(password: str) -> None:
    """Spend the same time as a real check, so a missing account is not told apart by timing."""
    stored = _dummy_hash(SCRYPT_N)
    _, n_text, r_text, p_text, salt_text, _ = stored.split("$")
    hashlib.scrypt(password.encode("utf-8"), salt=base64.b64decode(salt_text), n=int(n_text), r=int(r_text), p=int(p_text),
                   maxmem=_maxmem(int(n_text), int(r_text)), dklen=SCRYPT_DKLEN)


def check_password_strength(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"mật khẩu phải có ít nhất {MIN_PASSWORD_LENGTH} ký tự"
    return None


def password_fingerprint(password_hash: str | None) -> str:
    """Part of the session: changing the password ends every other session of that user."""
    return hashlib.sha256((password_hash or "-").encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- secret key


def load_secret_key(configured: str | None, home: Path) -> str:
    """The configured key, else one generated once into ``<home>/web-secret.key`` (0600)."""
    if configured:
        return configured
    path = Path(home) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = secrets.token_urlsafe(48)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker wrote it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(key)
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)  # the other worker is still writing
    raise RuntimeError(f"empty secret key file {path}")


# ----------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Session:
    sid: str
    user_id: int | None = None
    fingerprint: str = ""

    @property
    def anonymous(self) -> bool:
        return self.user_id is None


def new_session(user_id: int | None = None, fingerprint: str = "") -> Session:
    return Session(secrets.token_urlsafe(24), user_id, fingerprint)


def revoke_session(uow: UnitOfWork, session: Session, user_id: int, now: dt.datetime, max_age: int) -> None:
    """Refuse this session's cookie from now on, and forget revocations whose cookies have expired anyway."""
    uow.session.execute(delete(RevokedSession).where(RevokedSession.expires_at < now))
    if uow.session.get(RevokedSession, session.sid) is None:
        uow.session.add(RevokedSession(sid=session.sid, user_id=user_id, revoked_at=now,
                                       expires_at=now + dt.timedelta(seconds=max_age)))


class SessionCodec:
    """Signs and reads the session cookie, and derives the CSRF token of a session."""

    def __init__(self, secret: str, max_age: int = SESSION_MAX_AGE):
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="kiemdiem.session")
        self._ics = URLSafeTimedSerializer(secret, salt="kiemdiem.ics")
        self.max_age = max_age

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps({"s": session.sid, "u": session.user_id, "f": session.fingerprint})

    def loads(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("s"), str):
            return None
        user_id = data.get("u")
        return Session(data["s"], user_id if isinstance(user_id, int) else None, str(data.get("f") or ""))

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._secret, b"csrf:" + session.sid.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session), token)

    def ics_token(self, campaign_id: str, unit_code: str) -> str:
        """A calendar client cannot log in: the feed URL carries a signed (campaign, unit) pair."""
        return self._ics.dumps([campaign_id, unit_code])

    def read_ics_token(self, token: str) -> tuple[str, str] | None:
        try:
            data = self._ics.loads(token)
        except BadSignature:
            return None
        if isinstance(data, list) and len(data) == 2 and all(isinstance(x, str) for x in data):
            return data[0], data[1]
        return None


# ----------------------------------------------------------------------------- login brake


class LoginThrottle:
    """Counts failed log-ins per e-mail in this process; refuses after too many in the window."""

    def __init__(self, allowed: int = LOGIN_FAILURES_ALLOWED, window: float = LOGIN_FAILURE_WINDOW):
        self.allowed = allowed
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def blocked(self, email: str) -> bool:
        with self._lock:
            recent = self._trim(email)
            return len(recent) >= self.allowed

    def failed(self, email: str) -> None:
        with self._lock:
            self._trim(email).append(time.monotonic())

    def succeeded(self, email: str) -> None:
        with self._lock:
            self._failures.pop(email, None)

    def _trim(self, email: str) -> deque[float]:
        recent = self._failures[email]
        cutoff = time.monotonic() - self.window
        while recent and recent[0] < cutoff:
            recent.popleft()
        return recent


# ----------------------------------------------------------------------------- users


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def _problem(field: str, reason: str) -> Problem:
    return Problem("người dùng", reason, field=field)


def find_user(uow: UnitOfWork, email: str) -> User | None:
    return uow.session.scalar(select(User).where(User.email == normalise_email(email)))


def create_user(
    uow: UnitOfWork,
    *,
    campaign_id: str,
    unit_code: str,
    email: str,
    full_name: str,
    role: str,
    now: dt.datetime,
    password: str | None = None,
    actor: str = "cli",
) -> User:
    """Add a person bound to a unit of a campaign (the caller commits). Refuses bad input with reasons."""
    get_campaign(uow, campaign_id)
    email = normalise_email(email)
    problems = []
    if "@" not in email or len(email) > 256 or any(ch.isspace() for ch in email):
        problems.append(_problem("email", f"địa chỉ email không hợp lệ: '{email}'"))
    if not (full_name or "").strip():
        problems.append(_problem("name", "thiếu họ tên"))
    if role not in ROLES:
        problems.append(_problem("role", f"vai trò không hợp lệ '{role}' (chỉ nhận {', '.join(ROLES)})"))
    if password is not None:
        weak = check_password_strength(password)
        if weak:
            problems.append(_problem("password", weak))
    unit = uow.session.scalar(select(Unit).where(Unit.campaign_id == campaign_id, Unit.code == unit_code))
    if unit is None:
        problems.append(_problem("unit", f"đơn vị không tồn tại: '{unit_code}'"))
    if problems:
        raise InvalidInput(problems)
    if find_user(uow, email) is not None:
        raise Refused(f"đã có người dùng với email '{email}'")
    user = User(
        email=email,
        full_name=full_name.strip(),
        role=role,
        campaign_id=campaign_id,
        unit_id=unit.id,
        password_hash=hash_password(password) if password is not None else None,
        active=True,
        created_at=now,
    )
    uow.session.add(user)
    uow.session.flush()
    audit(uow, campaign_id=campaign_id, actor=actor, action="web.user_created", subject=email, now=now,
          detail={"role": role, "unit": unit.code, "with_password": password is not None})
    return user


def set_password(uow: UnitOfWork, user: User, password: str) -> None:
    weak = check_password_strength(password)
    if weak:
        raise InvalidInput(_problem("password", weak))
    user.password_hash = hash_password(password)


def authenticate(uow: UnitOfWork, email: str, password: str) -> tuple[User | None, str]:
    """(user, "") on success, else (None or the user, why) for the audit log."""
    user = find_user(uow, email)
    if user is None:
        _dummy_verify(password)
        return None, "unknown_email"
    if not verify_password(password, user.password_hash):
        return None, "wrong_password" if user.password_hash else "no_password"
    if not user.active:
        return None, "inactive"
    return user, ""


# ----------------------------------------------------------------------------- sign-in links


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Invitation:
    user_id: int
    email: str
    link: str
    expires_at: dt.datetime
    outbox_id: int | None
    created_user: bool


def issue_sign_in_link(uow: UnitOfWork, user: User, *, now: dt.datetime, hours: int, base_url: str) -> tuple[str, dt.datetime]:
    """A new one-time link for ``user``; only the token's sha256 is stored."""
    token = secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(hours=hours)
    uow.session.add(SignInToken(user_id=user.id, token_hash=token_hash(token), expires_at=expires_at))
    return f"{base_url.rstrip('/')}/signin/{token}", expires_at


def invite_user(
    uow: UnitOfWork,
    *,
    campaign_id: str,
    unit_code: str,
    email: str,
    full_name: str,
    now: dt.datetime,
    hours: int,
    base_url: str,
    actor: str,
    role: str = "unit",
) -> Invitation:
    """Create the person if new, issue a sign-in link and queue the invitation e-mail (caller commits)."""
    email = normalise_email(email)
    user = find_user(uow, email)
    created = False
    if user is None:
        user = create_user(uow, campaign_id=campaign_id, unit_code=unit_code, email=email, full_name=full_name,
                           role=role, now=now, actor=actor)
        created = True
    else:
        unit = uow.session.get(Unit, user.unit_id)
        if user.campaign_id != campaign_id or unit is None or unit.code != unit_code:
            raise Refused(f"email '{email}' đã thuộc về một người dùng của đơn vị khác")
        if not user.active:
            raise Refused(f"tài khoản '{email}' đã bị khóa")
    unit = uow.session.get(Unit, user.unit_id)
    # Mail goes out in office hours only: the link's hours count from when it can be sent (an
    # invitation made on a Friday evening before a holiday must not arrive already lapsed).
    sendable = campaign_plan(uow, campaign_id).calendar.next_working_instant(now)
    link, expires_at = issue_sign_in_link(uow, user, now=sendable, hours=hours, base_url=base_url)
    uow.session.flush()
    message = compose_invite(user.full_name, unit.name, link, expires_at)
    key = token_hash(link.rsplit("/", 1)[-1])
    outbox_id = enqueue(
        uow,
        campaign_id=campaign_id,
        kind="invite",
        recipient=email,
        recipient_name=user.full_name,
        message=message,
        key_material=f"invite:{campaign_id}:{email}:{key}",
        reason=f"Mời đăng nhập cổng nộp hồ sơ với tư cách người phụ trách {unit.name} ({unit.code})",
        now=now,
    )
    audit(uow, campaign_id=campaign_id, actor=actor, action="web.invite", subject=email, now=now,
          detail={"unit": unit.code, "role": user.role, "expires_at": expires_at.isoformat(), "outbox_id": outbox_id, "created_user": created})
    return Invitation(user.id, email, link, expires_at, outbox_id, created)


def find_sign_in_token(uow: UnitOfWork, token: str, now: dt.datetime) -> tuple[SignInToken, User] | None:
    """The unused, unexpired token and its active user, or None."""
    if not token or len(token) > 200:
        return None
    row = uow.session.scalar(select(SignInToken).where(SignInToken.token_hash == token_hash(token)))
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    user = uow.session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return row, user


def redeem_sign_in_token(uow: UnitOfWork, token: str, now: dt.datetime) -> User:
    found = find_sign_in_token(uow, token, now)
    if found is None:
        raise NotFound("đường dẫn đăng nhập không hợp lệ, đã dùng hoặc đã hết hạn")
    row, user = found
    row.used_at = now
    return user


# ----------------------------------------------------------------------------- audit


def audit(
    uow: UnitOfWork,
    *,
    campaign_id: str | None,
    actor: str,
    action: str,
    now: dt.datetime,
    subject: str = "",
    detail: dict | None = None,
) -> None:
    uow.session.add(EventLog(campaign_id=campaign_id, at=now, actor=actor[:256], action=action, subject=subject[:512], detail=detail or {}))


def may_invite(inviter_role: str, role: str) -> bool:
    """Office staff invite unit secretaries; administrators may invite any role."""
    if inviter_role == "admin":
        return role in ROLES
    return inviter_role == "office" and role == "unit"
