"""submissions.refused_at: a list the ingest could not read is not a delivery

Lists are read at submission, but the ingest reads them again against the tree of its time; one
refused then (a member moved by a re-import in between) counted as delivered in status,
reminders and dossiers. Refusals logged before this revision (event_log ``results.refused``,
subject ``submission:<id>``) are carried over.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21 18:00:00
"""
from alembic import op
import sqlalchemy as sa

import kiemdiem.store.models


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

CARRY_OVER = """
UPDATE submissions SET refused_at = (
    SELECT min(e.at) FROM event_log e
    WHERE e.campaign_id = submissions.campaign_id AND e.action = 'results.refused'
      AND e.subject = 'submission:' || CAST(submissions.id AS VARCHAR(20))
)
WHERE EXISTS (
    SELECT 1 FROM event_log e
    WHERE e.campaign_id = submissions.campaign_id AND e.action = 'results.refused'
      AND e.subject = 'submission:' || CAST(submissions.id AS VARCHAR(20))
)
"""


def upgrade() -> None:
    op.add_column('submissions', sa.Column('refused_at', kiemdiem.store.models.UtcDateTime(timezone=True), nullable=True))
    op.create_index(
        'ix_submissions_refused', 'submissions', ['campaign_id', 'refused_at'], unique=False,
        sqlite_where=sa.text('refused_at IS NOT NULL'), postgresql_where=sa.text('refused_at IS NOT NULL'),
    )
    op.execute(CARRY_OVER)


def downgrade() -> None:
    op.drop_index('ix_submissions_refused', table_name='submissions')
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_column('refused_at')
