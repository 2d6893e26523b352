"""persistent agents: the agents, their turns and their inboxes

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import optio.store.types

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('persistent_agents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('system_prompt', sa.Text(), nullable=False),
    sa.Column('operator_manual', sa.Text(), nullable=False),
    sa.Column('agent_type', sa.String(length=64), nullable=False),
    sa.Column('agent_config', sa.JSON(), nullable=False),
    sa.Column('lifecycle', sa.String(length=16), nullable=False),
    sa.Column('idle_timeout_s', sa.Float(), nullable=False),
    sa.Column('max_consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('max_turn_s', sa.Float(), nullable=True),
    sa.Column('max_cost_usd', sa.Float(), nullable=True),
    sa.Column('secret_names', sa.JSON(), nullable=False),
    sa.Column('paused_reason', sa.String(length=64), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('turn_count', sa.Integer(), nullable=False),
    sa.Column('current_turn_id', sa.Integer(), nullable=True),
    sa.Column('last_turn_outcome', sa.String(length=32), nullable=True),
    sa.Column('last_turn_at', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('agent_session_id', sa.String(length=200), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('control_intent', sa.String(length=32), nullable=True),
    sa.Column('reconcile_backoff_until', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reconcile_attempts', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('heartbeat_at', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cost_usd', sa.Float(), nullable=False),
    sa.Column('cost_imputed', sa.Boolean(), nullable=False),
    sa.Column('input_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=False),
    sa.Column('cache_tokens', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('started_at', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('executor_error_action', sa.String(length=32), nullable=True),
    sa.Column('executor_error', sa.Text(), nullable=True),
    sa.Column('executor_error_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('executor_error_at', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('log_bytes', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('log_dropped_bytes', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.Column('created_at', optio.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', optio.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workspace_id', 'slug', name='uq_persistent_agents_slug')
    )
    with op.batch_alter_table('persistent_agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_persistent_agents_state'), ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_persistent_agents_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('agent_messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('sender', sa.String(length=300), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', optio.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('turn_id', sa.Integer(), nullable=True),
    sa.Column('processed_by_turn', sa.Integer(), nullable=True),
    sa.Column('processed_at', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['persistent_agents.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('agent_messages', schema=None) as batch_op:
        batch_op.create_index('ix_agent_messages_inbox', ['agent_id', 'processed_by_turn', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_messages_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('agent_turns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('wake_reason', sa.Text(), nullable=False),
    sa.Column('message_ids', sa.JSON(), nullable=False),
    sa.Column('prompt', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('cost_at_start', sa.Float(), nullable=False),
    sa.Column('cost_usd', sa.Float(), nullable=False),
    sa.Column('resumed_session_id', sa.String(length=200), nullable=True),
    sa.Column('session_id', sa.String(length=200), nullable=True),
    sa.Column('started_at', optio.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', optio.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('workspace_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['persistent_agents.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('agent_id', 'number', name='uq_agent_turns_number')
    )
    with op.batch_alter_table('agent_turns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_turns_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_turns_workspace_id'), ['workspace_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('agent_turns', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_turns_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_agent_turns_agent_id'))

    op.drop_table('agent_turns')
    with op.batch_alter_table('agent_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_messages_workspace_id'))
        batch_op.drop_index('ix_agent_messages_inbox')

    op.drop_table('agent_messages')
    with op.batch_alter_table('persistent_agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_persistent_agents_workspace_id'))
        batch_op.drop_index(batch_op.f('ix_persistent_agents_state'))

    op.drop_table('persistent_agents')
