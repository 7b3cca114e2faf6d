"""prefect.yaml deploys to a real Prefect server (on PostgreSQL), and workers on a process pool run the tick."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from kiemdiem.notify.sink import MailSink
from kiemdiem.store.models import Outbox
from scripts.deploy_check import check
from tests.conftest import PG_ADMIN_URL, require_postgres
from tests.flows.support import one_phase_campaign
from tests.support import ict

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prefect-server")]


@pytest.fixture
def prefect_db():
    require_postgres()
    import psycopg

    name = "kiemdiem_prefect_check"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_worker_runs_the_deployed_tick(store, prefect_db, tmp_path, monkeypatch):
    plan = one_phase_campaign(store, tmp_path)
    with MailSink(tmp_path / "mail") as sink:
        monkeypatch.setenv("KIEMDIEM_SMTP_PORT", str(sink.port))
        result = check("test", ict(2023, 11, 30, 8).isoformat(), workers=2, prefect_db=prefect_db, logs=tmp_path / "logs")
        assert result["state"] == "COMPLETED", (tmp_path / "logs").glob("*.log")
        assert len(sink.received) == 4
    with store.uow() as uow:
        assert set(uow.session.scalars(select(Outbox.status))) == {"sent"}
