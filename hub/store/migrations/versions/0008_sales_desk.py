"""sales desk: a lead's deal amount and follow-up clock, call-back tasks (notes are history entries)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.add_column(sa.Column('follow_up_due_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('follow_up_stage', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_lead_follow_up_due_at', ['follow_up_due_at'], unique=False)
    op.create_table('lead_task',
    sa.Column('id', BigId, nullable=False),
    sa.Column('lead_id', BigId, nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_by', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('lead_task', schema=None) as batch_op:
        batch_op.create_index('ix_lead_task_lead_id', ['lead_id'], unique=False)
        batch_op.create_index('ix_lead_task_open_due', ['done_at', 'due_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('lead_task', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_task_open_due')
        batch_op.drop_index('ix_lead_task_lead_id')
    op.drop_table('lead_task')
    with op.batch_alter_table('lead', schema=None) as batch_op:
        batch_op.drop_index('ix_lead_follow_up_due_at')
        batch_op.drop_column('follow_up_stage')
        batch_op.drop_column('amount')
        batch_op.drop_column('follow_up_due_at')
