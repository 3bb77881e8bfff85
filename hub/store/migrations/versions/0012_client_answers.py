"""client answers: a notification says which source's bot or community sends it, and a lead has at most one
client answer (a partial unique index: the second INSERT for the same lead does nothing)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

PREDICATE = "kind = 'client_answer'"


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=64), nullable=True))
        batch_op.create_index('uq_notification_client_answer', ['lead_id'], unique=True,
                              sqlite_where=sa.text(PREDICATE), postgresql_where=sa.text(PREDICATE))


def downgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('uq_notification_client_answer', sqlite_where=sa.text(PREDICATE),
                            postgresql_where=sa.text(PREDICATE))
        batch_op.drop_column('source')
