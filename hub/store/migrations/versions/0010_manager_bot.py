"""manager bot: notification rows say what they are (kind); the Telegram message each became (to edit it when
its lead is acted on from the chat); managers' linked Telegram accounts and their one-time link codes

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=32), nullable=True))
    op.create_table('notification_message',
    sa.Column('notification_id', BigId, nullable=False),
    sa.Column('lead_id', BigId, nullable=True),
    sa.Column('chat_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['lead.id'], ),
    sa.ForeignKeyConstraint(['notification_id'], ['notification.id'], ),
    sa.PrimaryKeyConstraint('notification_id')
    )
    with op.batch_alter_table('notification_message', schema=None) as batch_op:
        batch_op.create_index('ix_notification_message_lead_id', ['lead_id'], unique=False)
    op.create_table('telegram_link',
    sa.Column('manager', sa.String(length=128), nullable=False),
    sa.Column('telegram_user_id', sa.BigInteger(), nullable=False),
    sa.Column('chat_id', sa.String(length=64), nullable=False),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('manager'),
    sa.UniqueConstraint('telegram_user_id')
    )
    op.create_table('telegram_link_code',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('manager', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('code_hash')
    )


def downgrade() -> None:
    op.drop_table('telegram_link_code')
    op.drop_table('telegram_link')
    with op.batch_alter_table('notification_message', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_message_lead_id')
    op.drop_table('notification_message')
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_column('kind')
