"""incremental lookup indexes: the tree's fingerprint and the organizations a committee decided

An incremental consolidation reads the tree's fingerprint (count, max and sum of the unit ids)
and the organization results decided by the units it rebuilds; both scanned whole tables.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21 13:20:00
"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_units_campaign_id', 'units', ['campaign_id', 'id'], unique=False)
    op.create_index('ix_org_results_decided_by', 'org_results', ['campaign_id', 'decided_by_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_org_results_decided_by', table_name='org_results')
    op.drop_index('ix_units_campaign_id', table_name='units')
