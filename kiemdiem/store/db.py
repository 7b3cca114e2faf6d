"""Engines, the unit of work, and migrations.

The engine is never built at import time: ``open_store`` builds it from settings
(``KIEMDIEM_HOME`` / ``KIEMDIEM_DATABASE_URL``) and brings the schema to head.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kiemdiem.errors import InvalidInput, Problem, Unavailable
from kiemdiem.settings import StoreSettings, normalise_database_url, store_settings
from kiemdiem.store.blobs import BlobStore

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

SETTING = "KIEMDIEM_DATABASE_URL"
# What to write, said once for every message about a wrong address.
URL_FORMS = (
    "viết postgresql://NGƯỜI_DÙNG:MẬT_KHẨU@MÁY:5432/TÊN_CƠ_SỞ_DỮ_LIỆU (PostgreSQL, trình điều khiển psycopg; "
    "postgresql+psycopg://… cũng được) hoặc sqlite:////đường/dẫn/tuyệt/đối/kiemdiem.sqlite3 (SQLite, bốn dấu /), "
    f"hoặc bỏ trống {SETTING} để dùng tệp SQLite trong KIEMDIEM_HOME"
)
# Seconds a PostgreSQL server has to answer a new connection, unless the URL says (?connect_timeout=N):
# a firewall that drops packets would otherwise hold a command for minutes before any message.
CONNECT_TIMEOUT = 10


def mask_password(url: str) -> str:
    """The address as it can be shown: the password (if any) as ***, also in a URL SQLAlchemy cannot read."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"^((?:[^:/@]+://)?[^:/@]*:)[^@]*@", r"\1***@", url)  # user:password@ with or without a scheme


def _bad_url(reason: str) -> InvalidInput:
    return InvalidInput(Problem(f"biến môi trường {SETTING}", reason))


def check_database_url(url: str) -> URL:
    """The URL parsed, or an ``InvalidInput`` naming the setting, what is wrong and what to write:
    a URL that is not one, a scheme kiemdiem has no driver for (a typo, another database, Prefect's
    async drivers), an SQLite file in a folder that does not exist. Nothing is connected to."""
    url = normalise_database_url(url)  # postgres:// and postgresql:// become postgresql+psycopg://
    shown = mask_password(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise _bad_url(f"'{shown}' không phải một địa chỉ cơ sở dữ liệu (thiếu 'loại://' ở đầu?); {URL_FORMS}") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in ("postgresql", "sqlite"):
        guess = difflib.get_close_matches(backend, ["postgresql", "sqlite"], n=1, cutoff=0.6)
        hint = f"có phải là {guess[0]}://? " if guess else ""
        raise _bad_url(
            f"kiểu cơ sở dữ liệu '{backend}' trong '{shown}' không được hỗ trợ (kiemdiem chạy trên PostgreSQL hoặc SQLite); "
            f"{hint}{URL_FORMS}"
        )
    if backend == "postgresql" and driver != "psycopg":
        prefect = " (postgresql+asyncpg:// là dạng của PREFECT_DATABASE_URL, cho Prefect)" if driver == "asyncpg" else ""
        raise _bad_url(
            f"trình điều khiển '{driver}' trong '{shown}' không dùng được{prefect}: kiemdiem dùng psycopg; "
            f"viết postgresql://… hoặc postgresql+psycopg://… với phần còn lại như cũ"
        )
    if backend == "sqlite" and driver not in ("", "pysqlite"):
        prefect = " (sqlite+aiosqlite:// là dạng của PREFECT_DATABASE_URL, cho Prefect)" if driver == "aiosqlite" else ""
        raise _bad_url(f"trình điều khiển '{driver}' trong '{shown}' không dùng được{prefect}: viết sqlite:///… với phần còn lại như cũ")
    if backend == "sqlite" and parsed.database not in (None, "", ":memory:") and not parsed.query.get("uri"):
        file = Path(parsed.database)
        folder = file.parent if file.is_absolute() else (Path.cwd() / file).parent
        if not folder.is_dir():
            relative = "" if file.is_absolute() else f" (đường dẫn tương đối, tính từ thư mục hiện tại {Path.cwd()})"
            raise _bad_url(
                f"thư mục {folder} của tệp SQLite '{parsed.database}' không tồn tại{relative}: tạo thư mục đó "
                f"(mkdir -p {folder}) hoặc sửa đường dẫn; đường dẫn tuyệt đối viết với bốn dấu /, ví dụ "
                "sqlite:////var/lib/kiemdiem/kiemdiem.sqlite3"
            )
    return parsed


def _connection_problem(exc: OperationalError, url: URL) -> str:
    """Why a connection failed, in the user's words, with what to do; the driver's own line when
    the cause is not one of those known."""
    raw = str(exc.orig).strip() if exc.orig is not None else str(exc)
    if url.password and len(url.password) >= 3:  # never in libpq's messages; in case a driver quotes it
        raw = raw.replace(url.password, "***")
    first = raw.splitlines()[0] if raw else type(exc).__name__
    at = f"{url.host or url.query.get('host') or 'socket cục bộ'}:{url.port or 5432}"
    check = f"kiểm tra {SETTING}"
    if url.get_backend_name() == "sqlite":
        return f"{first} (tệp {url.database}: kiểm tra quyền đọc/ghi của người dùng chạy kiemdiem trên tệp và thư mục; {check})"
    if "Connection refused" in raw:
        return (
            f"máy chủ PostgreSQL không trả lời tại {at} (không có gì nghe ở cổng đó); {check}, máy chủ và tên cơ sở dữ liệu: "
            "PostgreSQL đã chạy chưa (systemctl status postgresql), máy và cổng trong địa chỉ có đúng không"
        )
    if "timeout expired" in raw or "No route to host" in raw or "Network is unreachable" in raw:
        return (
            f"máy chủ PostgreSQL tại {at} không trả lời (hết {url.query.get('connect_timeout', CONNECT_TIMEOUT)} giây chờ "
            f"hoặc không có đường tới máy đó); {check}: máy và cổng trong địa chỉ, tường lửa giữa hai máy"
        )
    if "resolve host" in raw or "translate host name" in raw or "not known" in raw:
        return f"không tìm thấy máy '{url.host}'; {check}: tên máy sau dấu @ trong địa chỉ (hoặc dùng địa chỉ IP)"
    if (m := re.search(r'database "([^"]*)" does not exist', raw)) is not None:
        return (
            f"máy chủ {at} chưa có cơ sở dữ liệu '{m[1]}'; {check}: sửa tên ở cuối địa chỉ, hoặc tạo cơ sở dữ liệu "
            f"(createdb -h {url.host or 'localhost'} -p {url.port or 5432} {m[1]}, hoặc 'scripts/production.sh setup')"
        )
    if (m := re.search(r'role "([^"]*)" does not exist', raw)) is not None:
        return (
            f"máy chủ {at} không có người dùng (role) '{m[1]}'; {check}: sửa tên người dùng trước dấu @ trong địa chỉ, "
            f"hoặc tạo người dùng đó (createuser --createdb --pwprompt {m[1]})"
        )
    if any(s in raw for s in ("password authentication failed", "no password supplied", "authentication failed", "pg_hba.conf")):
        return (
            f"máy chủ {at} từ chối đăng nhập của người dùng '{url.username}' (sai hoặc thiếu mật khẩu, hoặc pg_hba.conf "
            f"không cho phép máy này); {check}: mật khẩu viết trong địa chỉ postgresql://NGƯỜI_DÙNG:MẬT_KHẨU@…, "
            "ký tự đặc biệt mã hóa theo URL (@ thành %40), và pg_hba.conf của máy chủ"
        )
    return f"{first} ({check}, máy chủ và tên cơ sở dữ liệu)"


def make_engine(url: str) -> Engine:
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets the dashboard read while a tick writes; foreign keys are off by default in SQLite.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    connect_args = {} if "connect_timeout" in make_url(url).query else {"connect_timeout": CONNECT_TIMEOUT}
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _require_newest_schema(engine: Engine) -> None:
    """Without automatic migrations (production): refuse a schema the code does not expect,
    rather than run on it or migrate it behind the operator's back."""
    current = current_revision(engine)
    head = ScriptDirectory.from_config(alembic_config(engine.url.render_as_string(hide_password=False))).get_current_head()
    if current != head:
        engine.dispose()
        raise Unavailable(
            f"lược đồ cơ sở dữ liệu đang ở phiên bản {current or 'trống'}, bản cài đặt này cần {head}: nâng cấp bằng "
            "'scripts/production.sh upgrade' (sao lưu rồi 'kiemdiem db upgrade')"
        )


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class UnitOfWork:
    """A session scope. Leaving it without ``commit()`` rolls back."""

    def __init__(self, session_factory: sessionmaker[Session]):
        self._factory = session_factory
        self.session: Session | None = None

    def __enter__(self) -> "UnitOfWork":
        self.session = self._factory()
        return self

    def __exit__(self, *exc) -> None:
        assert self.session is not None
        try:
            self.session.rollback()
        finally:
            self.session.close()
            self.session = None

    def commit(self) -> None:
        assert self.session is not None
        self.session.commit()

    def rollback(self) -> None:
        assert self.session is not None
        self.session.rollback()


@dataclass
class Store:
    engine: Engine
    blobs: BlobStore
    settings: StoreSettings

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self._sessions)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(settings: StoreSettings | None = None, *, run_migrations: bool = True) -> Store:
    """The store, its schema checked (or migrated). A wrong KIEMDIEM_DATABASE_URL is an
    ``InvalidInput`` (exit 2), a database that cannot be reached an ``Unavailable`` (exit 5): each
    says what is wrong and what to write, the password hidden, and the CLI prints it without a traceback."""
    settings = settings or store_settings()
    settings.home.mkdir(parents=True, exist_ok=True)  # before the check: the default SQLite file lives there
    check_database_url(settings.url)
    engine = make_engine(settings.url)
    try:
        if run_migrations and settings.auto_migrate:
            migrate(engine)
        elif run_migrations:
            _require_newest_schema(engine)
        else:
            engine.connect().close()
    except OperationalError as exc:
        # A server down, a database not created, a role refused: one line, not a driver traceback.
        engine.dispose()
        raise Unavailable(
            f"không kết nối được cơ sở dữ liệu {engine.url.render_as_string(hide_password=True)}: "
            f"{_connection_problem(exc, engine.url)}"
        ) from None
    return Store(engine=engine, blobs=BlobStore(settings.blob_dir), settings=settings)
