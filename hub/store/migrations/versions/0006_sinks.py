"""sinks: the forwarding outbox, the lead's id in each sink, each sink's shared rate-limit bucket and state;
calls: alerts of known clients calling, and the managers' web presence

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('sink_delivery',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('sink', sa.String(length=64), nullable=False),
    sa.Column('lead_id', BigId, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sink_delivery', schema=None) as batch_op:
        batch_op.create_index('ix_sink_delivery_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_sink_delivery_lead_id', ['lead_id'], unique=False)
        batch_op.create_index('uq_sink_delivery_pending', ['sink', 'lead_id'], unique=True,
                              sqlite_where=sa.text("status = 'pending'"),
                              postgresql_where=sa.text("status = 'pending'"))
    op.create_table('sink_link',
    sa.Column('sink', sa.String(length=64), nullable=False),
    sa.Column('lead_id', BigId, nullable=False),
    sa.Column('remote_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('sink', 'lead_id')
    )
    op.create_table('sink_state',
    sa.Column('sink', sa.String(length=64), nullable=False),
    sa.Column('tokens', sa.Float(), nullable=False),
    sa.Column('counted_at', sa.Float(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('sink')
    )
    op.create_table('call_alert',
    sa.Column('id', BigId, autoincrement=True, nullable=False),
    sa.Column('manager', sa.String(length=128), nullable=False),
    sa.Column('lead_id', BigId, nullable=True),
    sa.Column('caller', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('call_alert', schema=None) as batch_op:
        batch_op.create_index('ix_call_alert_manager_id', ['manager', 'id'], unique=False)
    op.create_table('web_presence',
    sa.Column('manager', sa.String(length=128), nullable=False),
    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('manager')
    )


def downgrade() -> None:
    op.drop_table('web_presence')
    with op.batch_alter_table('call_alert', schema=None) as batch_op:
        batch_op.drop_index('ix_call_alert_manager_id')
    op.drop_table('call_alert')
    op.drop_table('sink_state')
    op.drop_table('sink_link')
    with op.batch_alter_table('sink_delivery', schema=None) as batch_op:
        batch_op.drop_index('uq_sink_delivery_pending', sqlite_where=sa.text("status = 'pending'"),
                            postgresql_where=sa.text("status = 'pending'"))
        batch_op.drop_index('ix_sink_delivery_lead_id')
        batch_op.drop_index('ix_sink_delivery_due')
    op.drop_table('sink_delivery')
