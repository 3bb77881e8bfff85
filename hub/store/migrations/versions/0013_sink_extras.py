"""sink extras: what a sink posted once for a lead (its notes, the refusal's comment), so that it is never
posted twice

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sink_link', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remembered', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sink_link', schema=None) as batch_op:
        batch_op.drop_column('remembered')
