"""lz4 for large values: the outbox's messages and the snapshots' payloads (PostgreSQL)

PostgreSQL compresses values over ~2 kB with pglz by default, about 20 MB/s here: queueing six
30 kB diff emails took 5 ms of compression, a reminder morning's 4,000 digests several seconds.
lz4 (PostgreSQL 14 and later, when built with it) is about five times faster at the same size.
Rows already stored keep their compression; new ones use lz4. SQLite stores values as they are.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 13:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

COLUMNS = {
    "outbox": ("mime", "body_text", "body_html"),
    "snapshots": ("payload", "diff"),
}


def _lz4_available(bind) -> bool:
    return bind.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals))"
    )).scalar()


def _set_compression(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql" or not _lz4_available(bind):
        return
    for table, columns in COLUMNS.items():
        for column in columns:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    _set_compression("lz4")


def downgrade() -> None:
    _set_compression("default")
