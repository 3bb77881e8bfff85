"""web sessions kept on the server (signing out ends one; a password, role or disable ends all of a user's),
sign-in counters shared by every web process; hub_user.session_version, which they replace, dropped

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('web_session',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', BigId, nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['hub_user.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.create_index('ix_web_session_expires_at', ['expires_at'], unique=False)
        batch_op.create_index('ix_web_session_user_id', ['user_id'], unique=False)
    op.create_table('sign_in_counter',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('sign_in_counter', schema=None) as batch_op:
        batch_op.create_index('ix_sign_in_counter_window_start', ['window_start'], unique=False)
    # Sessions signed with a version are void now anyway (their cookies name no web_session row): everyone
    # signs in once more. SQLite (3.35+) drops the column in place: rebuilding hub_user, as batch mode would,
    # is refused while api_token rows point at it.
    with op.batch_alter_table('hub_user', schema=None, recreate='never') as batch_op:
        batch_op.drop_column('session_version')


def downgrade() -> None:
    with op.batch_alter_table('hub_user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='1'))
    with op.batch_alter_table('sign_in_counter', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_in_counter_window_start')
    op.drop_table('sign_in_counter')
    with op.batch_alter_table('web_session', schema=None) as batch_op:
        batch_op.drop_index('ix_web_session_user_id')
        batch_op.drop_index('ix_web_session_expires_at')
    op.drop_table('web_session')
