"""finding_overrides.covers: an override holds for the numbers it was granted on

An override used to hold for its finding's key whatever the numbers became: a 20% cap approved
for one member over the limit still covered six. Each override now keeps the finding's data
when it was granted (``covers``), and a finding whose numbers went past them is a breach
again, to be approved anew: several overrides per key, one per grant (unique by time).
Overrides granted before this revision keep ``covers`` NULL and hold as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21 23:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('finding_overrides', schema=None) as batch_op:
        batch_op.add_column(sa.Column('covers', sa.JSON(), nullable=True))
        batch_op.drop_constraint('uq_override', type_='unique')
        batch_op.create_unique_constraint('uq_override', ['campaign_id', 'finding_key', 'at'])


def downgrade() -> None:
    with op.batch_alter_table('finding_overrides', schema=None) as batch_op:
        batch_op.drop_constraint('uq_override', type_='unique')
        batch_op.create_unique_constraint('uq_override', ['campaign_id', 'finding_key'])
        batch_op.drop_column('covers')
