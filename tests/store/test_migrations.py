"""The Alembic migrations build exactly the models' schema, and an upgrade keeps the data."""

from __future__ import annotations

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from kiemdiem.store.db import alembic_config, current_revision, make_engine, migrate
from kiemdiem.store.models import Base
from tests.conftest import PG_ADMIN_URL, _worker_db_name, require_postgres


@pytest.fixture
def empty_url(backend, tmp_path):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    require_postgres()
    name = _worker_db_name() + "_migrations"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def upgrade_to(engine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def test_the_migrated_schema_is_the_models_schema(empty_url):
    engine = make_engine(empty_url)
    try:
        migrate(engine)
        head = ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
        assert current_revision(engine) == head
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_an_upgrade_from_the_first_release_keeps_every_row(empty_url):
    engine = make_engine(empty_url)
    try:
        upgrade_to(engine, "0001")
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO campaigns (id, plan_id, plan_number, plan_text, plan_hash, title, created_at)"
                " VALUES ('c', 'p', '187-KH/ĐU', 'id: p', 'h', 'Kế hoạch', '2023-11-20 01:00:00+00:00')"
            ))
        migrate(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT plan_number FROM campaigns")).scalar_one() == "187-KH/ĐU"
            assert connection.execute(text("SELECT count(*) FROM revoked_sessions")).scalar_one() == 0
        migrate(engine)  # again: nothing to do
        assert current_revision(engine) == "0002"
    finally:
        engine.dispose()
