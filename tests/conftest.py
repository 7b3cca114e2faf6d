"""Shared fixtures: a real SQLite file and a real PostgreSQL database per test.

PostgreSQL comes from KIEMDIEM_TEST_PG_URL (default: the local server with trust auth).
When no server answers, PostgreSQL tests are skipped with a notice, unless
KIEMDIEM_REQUIRE_POSTGRES=1 (as .ci/run sets), which makes them fail instead.
"""

from __future__ import annotations

import os
import socket

import psycopg
import pytest
from sqlalchemy import text

from kiemdiem.plan import load_plan
from kiemdiem.settings import StoreSettings
from kiemdiem.store.db import Store, open_store
from kiemdiem.store.models import Base
from tests.support import PLANS

PG_ADMIN_URL = os.environ.get("KIEMDIEM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("KIEMDIEM_REQUIRE_POSTGRES") == "1"

_pg_state: dict[str, object] = {}


def pg_available() -> str | None:
    """None when reachable, else the reason."""
    if "reason" not in _pg_state:
        try:
            with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
                _pg_state["reason"] = None
        except Exception as exc:  # any failure means "not reachable" here
            _pg_state["reason"] = f"PostgreSQL không kết nối được ({PG_ADMIN_URL}): {exc}".splitlines()[0]
    return _pg_state["reason"]  # type: ignore[return-value]


def pytest_report_header(config):
    reason = pg_available()
    return f"postgresql: {'available' if reason is None else 'SKIPPED - ' + reason}"


def require_postgres() -> None:
    reason = pg_available()
    if reason is None:
        return
    if REQUIRE_PG:
        pytest.fail(f"{reason} — KIEMDIEM_REQUIRE_POSTGRES=1 requires it")
    pytest.skip(reason)


def _worker_db_name() -> str:
    # Per process: concurrent pytest runs on one machine must not drop each other's database.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"kiemdiem_test_{worker}_{os.getpid()}"


@pytest.fixture(scope="session")
def pg_database_url() -> str:
    require_postgres()
    name = _worker_db_name()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_postgres(store: Store) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> str:
    if request.param == "postgres":
        require_postgres()
    return request.param


@pytest.fixture
def store_env(backend, tmp_path, monkeypatch, request) -> dict[str, str]:
    """Environment for a store on the chosen backend; CLI commands run in-process read it."""
    home = tmp_path / "home"
    env = {"KIEMDIEM_HOME": str(home)}
    monkeypatch.setenv("KIEMDIEM_HOME", str(home))
    if backend == "postgres":
        url = request.getfixturevalue("pg_database_url")
        env["KIEMDIEM_DATABASE_URL"] = url
        monkeypatch.setenv("KIEMDIEM_DATABASE_URL", url)
    else:
        monkeypatch.delenv("KIEMDIEM_DATABASE_URL", raising=False)
    return env


@pytest.fixture
def store(store_env, backend) -> Store:
    settings = StoreSettings()
    store = open_store(settings)
    if backend == "postgres":
        _reset_postgres(store)
    yield store
    store.dispose()


@pytest.fixture
def plan_187():
    return load_plan(PLANS / "187-KH-DU-2023.yaml")


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on: an SMTP server that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def default_working_hours(monkeypatch):
    """The reminders' working hours as the code sets them (a developer's shell may set others)."""
    monkeypatch.delenv("KIEMDIEM_REMINDERS_WORK_START", raising=False)
    monkeypatch.delenv("KIEMDIEM_REMINDERS_WORK_END", raising=False)
