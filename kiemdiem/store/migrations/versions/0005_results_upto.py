"""results up to: which stored results each snapshot was made from; current flags repaired

``snapshots.results_upto`` keeps the highest member result id when a snapshot was made, so that
whose result changed since it is read from the results it saw (a result stored later but dated
before it is a change). And ``member_results.current`` is set again for the members with a
cancelled row: before 0004, a result received before a member's newest cancelled row became
current, which consolidation (counting by these flags since 0004) must not see. The flag is true
on the newest row by (received time, id), and only if that row is not cancelled.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 12:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

REPAIR_CURRENT = """
UPDATE member_results SET current = CASE
    WHEN cancelled_at IS NULL AND NOT EXISTS (
        SELECT 1 FROM member_results newer
        WHERE newer.campaign_id = member_results.campaign_id AND newer.member_id = member_results.member_id
          AND (newer.received_at > member_results.received_at
               OR (newer.received_at = member_results.received_at AND newer.id > member_results.id))
    ) THEN TRUE ELSE FALSE END
WHERE member_id IN (SELECT member_id FROM member_results WHERE cancelled_at IS NOT NULL)
"""


def upgrade() -> None:
    op.add_column('snapshots', sa.Column('results_upto', sa.BigInteger(), nullable=True))
    op.execute(REPAIR_CURRENT)


def downgrade() -> None:
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.drop_column('results_upto')
