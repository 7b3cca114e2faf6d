"""members.code_key: each member's key (kiemdiem.member_key), for consolidation's per-unit sums

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 09:00:00

The column is added nullable, filled in batches with ``member_key(member_code)`` computed in
Python (the one definition of the key), then made NOT NULL; ``ix_members_lines`` serves the
per-unit GROUP BY of consolidation.

On SQLite a column becomes NOT NULL only by rebuilding the table. ``members`` is the parent of
foreign keys (submissions, member_results, notices), and with ``foreign_keys=ON`` dropping it
would fail on their rows, while the pragma cannot be switched off inside the migration's
transaction. So the constraints are deferred to the commit (``defer_foreign_keys``), the rows
are held in a TEMP table, ``members`` is dropped, created anew and refilled, which resolves
every deferred reference again before the commit checks them.
"""
from alembic import op
import sqlalchemy as sa

from kiemdiem.member_key import member_key


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# Members read, keyed and written back at a time.
BATCH = 20_000

_COLUMNS = (
    "id", "campaign_id", "member_code", "full_name", "unit_id", "email", "joined_on", "status",
    "temporary_unit_id", "positions", "code_key",
)


def _backfill(bind) -> None:
    """``code_key = member_key(member_code)`` for every member without one, ``BATCH`` rows at a time (by id)."""
    postgres = bind.dialect.name == "postgresql"
    read = sa.text("SELECT id, member_code FROM members WHERE id > :last AND code_key IS NULL ORDER BY id LIMIT :n")
    if postgres:
        write = sa.text(
            "UPDATE members SET code_key = v.k FROM unnest(CAST(:ids AS integer[]), CAST(:keys AS bigint[])) AS v(id, k)"
            " WHERE members.id = v.id"
        )
    else:
        write = sa.text("UPDATE members SET code_key = :k WHERE id = :id")
    last = 0
    while True:
        rows = bind.execute(read, {"last": last, "n": BATCH}).all()
        if not rows:
            return
        if postgres:
            bind.execute(write, {"ids": [r[0] for r in rows], "keys": [member_key(r[1]) for r in rows]})
        else:
            bind.execute(write, [{"id": r[0], "k": member_key(r[1])} for r in rows])
        last = rows[-1][0]


def _create_members() -> None:
    """``members`` as of this revision (0001's definition plus ``code_key NOT NULL``)."""
    op.create_table(
        'members',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('campaign_id', sa.String(length=64), nullable=False),
        sa.Column('member_code', sa.String(length=64), nullable=False),
        sa.Column('full_name', sa.String(length=256), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=256), nullable=True),
        sa.Column('joined_on', sa.Date(), nullable=True),
        sa.Column('status', sa.String(length=32), nullable=False),
        sa.Column('temporary_unit_id', sa.Integer(), nullable=True),
        sa.Column('positions', sa.JSON(), nullable=False),
        sa.Column('code_key', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['temporary_unit_id'], ['units.id'], ),
        sa.ForeignKeyConstraint(['unit_id'], ['units.id'], ),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('campaign_id', 'member_code', name='uq_member_code'),
    )


def _rebuild_sqlite_members(bind) -> None:
    """SQLite: ``members`` rebuilt with ``code_key NOT NULL``, ids and every row kept (see the module doc)."""
    columns = ", ".join(_COLUMNS)
    bind.exec_driver_sql("PRAGMA defer_foreign_keys = ON")  # until this transaction's commit
    bind.exec_driver_sql("DROP TABLE IF EXISTS temp.kd_members_0003")
    bind.exec_driver_sql(f"CREATE TEMP TABLE kd_members_0003 AS SELECT {columns} FROM members")
    bind.exec_driver_sql("DROP INDEX IF EXISTS ix_members_unit")
    bind.exec_driver_sql("DROP TABLE members")
    _create_members()
    bind.exec_driver_sql(f"INSERT INTO members ({columns}) SELECT {columns} FROM temp.kd_members_0003 ORDER BY id")
    bind.exec_driver_sql("DROP TABLE temp.kd_members_0003")
    bind.exec_driver_sql("CREATE INDEX ix_members_unit ON members (unit_id)")


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code_key', sa.BigInteger(), nullable=True))
    _backfill(bind)
    if bind.dialect.name == "sqlite":
        _rebuild_sqlite_members(bind)
    else:
        op.alter_column('members', 'code_key', existing_type=sa.BigInteger(), nullable=False)
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.create_index('ix_members_lines', ['campaign_id', 'unit_id', 'status', 'joined_on', 'code_key'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('ix_members_lines')
        batch_op.drop_column('code_key')
