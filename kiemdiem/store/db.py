"""Engines, the unit of work, and migrations.

The engine is never built at import time: ``open_store`` builds it from settings
(``KIEMDIEM_HOME`` / ``KIEMDIEM_DATABASE_URL``) and brings the schema to head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kiemdiem.errors import Unavailable
from kiemdiem.settings import StoreSettings, normalise_database_url, store_settings
from kiemdiem.store.blobs import BlobStore

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


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
    settings = settings or store_settings()
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.url)
    try:
        if run_migrations and settings.auto_migrate:
            migrate(engine)
        elif run_migrations:
            _require_newest_schema(engine)
        else:
            engine.connect().close()
    except OperationalError as exc:
        # A wrong URL, a database not created, a server down: one line, not a driver traceback.
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        raise Unavailable(
            f"không kết nối được cơ sở dữ liệu {engine.url.render_as_string(hide_password=True)}: {reason} "
            "(kiểm tra KIEMDIEM_DATABASE_URL, máy chủ và tên cơ sở dữ liệu)"
        ) from None
    return Store(engine=engine, blobs=BlobStore(settings.blob_dir), settings=settings)
