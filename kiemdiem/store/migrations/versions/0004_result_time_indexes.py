"""result time indexes: whether any member result was received or cancelled after a moment

A full consolidation counts members by the rows flagged current, which is right unless a row
was received or cancelled after the moment consolidated; these two indexes answer that at once
(the second holds only cancelled rows, a few).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 11:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_member_results_received', 'member_results', ['campaign_id', 'received_at'], unique=False)
    op.create_index(
        'ix_member_results_cancelled', 'member_results', ['campaign_id', 'cancelled_at'], unique=False,
        sqlite_where=sa.text('cancelled_at IS NOT NULL'), postgresql_where=sa.text('cancelled_at IS NOT NULL'),
    )


def downgrade() -> None:
    op.drop_index('ix_member_results_cancelled', table_name='member_results')
    op.drop_index('ix_member_results_received', table_name='member_results')
