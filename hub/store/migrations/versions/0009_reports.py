"""reports: lead history indexed by (at, kind, actor), so that a period's speed to lead, handovers and
activity per day are a range scan

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('lead_history', schema=None) as batch_op:
        batch_op.create_index('ix_lead_history_at_kind', ['at', 'kind', 'actor'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lead_history', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_history_at_kind')
