"""The Alembic migrations build exactly the models' schema, and an upgrade keeps the data."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from kiemdiem.member_key import member_key
from kiemdiem.store.db import alembic_config, current_revision, make_engine, migrate
from kiemdiem.store.models import Base, Submission
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
        assert current_revision(engine) == ScriptDirectory.from_config(alembic_config(empty_url)).get_current_head()
    finally:
        engine.dispose()


def _campaign_with_one_branch(connection) -> None:
    """Campaign 'c' and its branch CB1 (unit id 1), written as rows, as an older release stored them."""
    connection.execute(text(
        "INSERT INTO campaigns (id, plan_id, plan_number, plan_text, plan_hash, title, created_at)"
        " VALUES ('c', 'p', '187-KH/ĐU', 'id: p', 'h', 'Kế hoạch', '2023-11-20 01:00:00+00:00')"
    ))
    connection.execute(text(
        "INSERT INTO units (id, campaign_id, code, name, kind, parent_id, path, depth, emails)"
        " VALUES (1, 'c', 'CB1', 'Chi bộ 1', 'chi_bo_truc_thuoc', NULL, '/CB1/', 0, '[]')"
    ))


MEMBER_CODES = ["0001", "A-17", "Đỗ\tThị", "x" * 64] + [f"M{n:05d}" for n in range(120)]


def test_the_upgrade_to_0003_keys_every_stored_member(empty_url, monkeypatch):
    """Members stored before 0003 get ``code_key = member_key(member_code)`` (in batches), the column
    ends NOT NULL, and rows that point at members (results) survive the change, ids included."""
    migration = ScriptDirectory.from_config(alembic_config(empty_url)).get_revision("0003").module
    monkeypatch.setattr(migration, "BATCH", 7)  # several batches, the last one short
    engine = make_engine(empty_url)
    try:
        upgrade_to(engine, "0002")
        with engine.begin() as connection:
            _campaign_with_one_branch(connection)
            connection.execute(
                text(
                    "INSERT INTO members (id, campaign_id, member_code, full_name, unit_id, email, joined_on, status,"
                    " temporary_unit_id, positions) VALUES (:id, 'c', :code, 'Tên', 1, NULL, NULL, 'active', NULL, '[]')"
                ),
                [{"id": 10 + 3 * n, "code": code} for n, code in enumerate(MEMBER_CODES)],
            )
            connection.execute(text(
                "INSERT INTO member_results (campaign_id, member_id, unit_id, final_level, disciplined, sick_leave_months,"
                " absent, note, has_self_review, received_at, current)"
                " VALUES ('c', 13, 1, 'HTT', false, 0, false, '', true, '2023-11-20 01:00:00+00:00', true)"
            ))
        migrate(engine)
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT id, member_code, code_key FROM members ORDER BY id")).all()
            assert [(i, code) for i, code, _ in stored] == [(10 + 3 * n, code) for n, code in enumerate(MEMBER_CODES)]
            assert all(key == member_key(code) for _, code, key in stored)
            assert connection.execute(text("SELECT member_id FROM member_results")).scalar_one() == 13
            if engine.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            columns = {c["name"]: c for c in sa_inspect(connection).get_columns("members")}
            assert columns["code_key"]["nullable"] is False
            indexes = {i["name"]: i["column_names"] for i in sa_inspect(connection).get_indexes("members")}
            assert indexes["ix_members_lines"] == ["campaign_id", "unit_id", "status", "joined_on", "code_key"]
            assert indexes["ix_members_unit"] == ["unit_id", "id"]  # 0008
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        with engine.begin() as connection:  # the foreign keys still hold on the rebuilt table
            with pytest.raises(Exception):
                with connection.begin_nested():
                    connection.execute(text("DELETE FROM members WHERE id = 13"))
    finally:
        engine.dispose()


def test_the_upgrade_to_0005_repairs_current_flags_after_a_cancellation(empty_url):
    """Before 0004 a result received before a member's newest, cancelled row became current;
    0005 leaves the flag only on a member's newest row, when it is not cancelled (other members'
    flags are left as they are), and adds ``snapshots.results_upto``."""
    engine = make_engine(empty_url)
    try:
        upgrade_to(engine, "0004")
        with engine.begin() as connection:
            _campaign_with_one_branch(connection)
            connection.execute(text(
                "INSERT INTO members (id, campaign_id, member_code, full_name, unit_id, email, joined_on, status,"
                " temporary_unit_id, positions, code_key) VALUES (:id, 'c', :code, 'Tên', 1, NULL, NULL, 'active', NULL, '[]', 1)"
            ), [{"id": 1, "code": "A"}, {"id": 2, "code": "B"}, {"id": 3, "code": "C"}])
            rows = [
                # A: received 10:00, cancelled at 11:00; a list received 09:00 came in after, flagged current (wrong).
                (1, 1, "HTTNV", "2023-12-01 03:00:00+00:00", False, "2023-12-01 04:00:00+00:00"),
                (2, 1, "HTXSNV", "2023-12-01 02:00:00+00:00", True, None),
                # B: cancelled, then a newer result: the newer one stays current.
                (3, 2, "HTNV", "2023-12-01 02:00:00+00:00", False, "2023-12-01 03:00:00+00:00"),
                (4, 2, "HTTNV", "2023-12-01 05:00:00+00:00", True, None),
                # C: never cancelled: untouched.
                (5, 3, "HTTNV", "2023-12-01 02:00:00+00:00", True, None),
            ]
            for row_id, member, level, received, current, cancelled in rows:
                connection.execute(text(
                    "INSERT INTO member_results (id, campaign_id, member_id, unit_id, final_level, disciplined, sick_leave_months,"
                    " absent, note, has_self_review, received_at, current, cancelled_at)"
                    " VALUES (:id, 'c', :member, 1, :level, false, 0, false, '', true, :received, :current, :cancelled)"
                ), {"id": row_id, "member": member, "level": level, "received": received, "current": current, "cancelled": cancelled})
        migrate(engine)
        with engine.connect() as connection:
            flags = dict(connection.execute(text("SELECT id, current FROM member_results ORDER BY id")).all())
            columns = {c["name"] for c in sa_inspect(connection).get_columns("snapshots")}
        assert {k: bool(v) for k, v in flags.items()} == {1: False, 2: False, 3: False, 4: True, 5: True}
        assert "results_upto" in columns
    finally:
        engine.dispose()


def test_the_upgrade_to_0009_marks_the_lists_the_ingest_refused(empty_url):
    """A list refused by the ingest before 0009 was only logged (``results.refused``); 0009 marks
    its submission ``refused_at`` (the log's time), so that it stops counting as delivered."""
    engine = make_engine(empty_url)
    try:
        upgrade_to(engine, "0008")
        with engine.begin() as connection:
            _campaign_with_one_branch(connection)
            for sid in (7, 8, 17):
                connection.execute(text(
                    "INSERT INTO submissions (id, campaign_id, unit_id, phase_id, doc_type, item_key, content_key, received_at,"
                    " on_time, source) VALUES (:id, 'c', 1, 'p', 'tong_hop_xep_loai_dang_vien', :key, 'k',"
                    " '2023-12-01 02:00:00+00:00', true, 'web')"
                ), {"id": sid, "key": f"CB1:p:tong_hop_xep_loai_dang_vien:{sid}"})
            for action, subject, at in [
                ("results.refused", "submission:8", "2023-12-01 03:00:00+00:00"),
                ("results.ingested", "submission:7", "2023-12-01 03:00:00+00:00"),
                ("results.refused", "submission:1", "2023-12-01 03:00:00+00:00"),  # no such submission; not '...:17' either
            ]:
                connection.execute(text(
                    "INSERT INTO event_log (campaign_id, at, actor, action, subject, detail) VALUES ('c', :at, 'tick', :action, :subject, '{}')"
                ), {"at": at, "action": action, "subject": subject})
        migrate(engine)
        with engine.connect() as connection:
            refused = connection.execute(
                select(Submission.id, Submission.refused_at).order_by(Submission.id)
            ).all()
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert refused == [(7, None), (8, dt.datetime(2023, 12, 1, 3, tzinfo=dt.timezone.utc)), (17, None)]
        assert differences == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgres"])  # SQLite does not compress values
def test_large_values_are_compressed_with_lz4_on_postgresql(empty_url):
    """pglz took most of the time of queueing a consolidation's diff emails (0007)."""
    engine = make_engine(empty_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            if not connection.execute(text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
            )).scalar():
                pytest.skip("this PostgreSQL was built without lz4")
            methods = dict(connection.execute(text(
                "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute"
                " WHERE attrelid IN ('outbox'::regclass, 'snapshots'::regclass) AND attnum > 0 AND NOT attisdropped"
            )).all())
            for column in ("outbox.mime", "outbox.body_text", "outbox.body_html", "snapshots.payload", "snapshots.diff"):
                assert methods[column] == "l", column
            assert methods["outbox.recipient"] == ""  # the others keep the default
            # and what is stored reads back the same
            connection.execute(text(
                "INSERT INTO campaigns (id, plan_id, plan_number, plan_text, plan_hash, title, created_at)"
                " VALUES ('c', 'p', '187-KH/ĐU', 'id: p', 'h', 'Kế hoạch', '2023-11-20 01:00:00+00:00')"
            ))
            body = "Kính gửi Văn phòng Đảng ủy. " * 2000
            connection.execute(text(
                "INSERT INTO outbox (campaign_id, idempotency_key, key_material, kind, recipient, recipient_name, subject,"
                " body_text, body_html, attachments, mime, message_id, reason, status, attempts, not_before,"
                " next_attempt_at, gave_up, created_at) VALUES ('c', 'k', 'k', 'consolidation_diff', 'a@b.vn', 'A', 'S',"
                " :body, :body, '[]', :mime, 'm', 'r', 'queued', 0, now(), now(), false, now())"
            ), {"body": body, "mime": body.encode()})
            stored = connection.execute(text("SELECT body_text, mime, pg_column_compression(mime) FROM outbox")).one()
            assert stored[0] == body and bytes(stored[1]) == body.encode() and stored[2] == "lz4"
    finally:
        engine.dispose()
