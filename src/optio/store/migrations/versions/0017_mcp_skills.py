"""MCP servers and skills per workspace/repo, and messages to a task's agent

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from optio.store.types import UTCDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _scoped(name: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("repo_id", sa.Integer(), sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=True),
        sa.Column("scope_key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        *columns,
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("workspace_id", "scope_key", "name", name=f"uq_{name}_scope_name"),
    )
    op.create_index(f"ix_{name}_workspace_id", name, ["workspace_id"])
    op.create_index(f"ix_{name}_repo_id", name, ["repo_id"])


def upgrade() -> None:
    _scoped(
        "mcp_servers",
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("env", sa.JSON(), nullable=False),
    )
    _scoped(
        "skills",
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("source_repo_id", sa.Integer(), sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=True),
        sa.Column("source_path", sa.Text(), nullable=True),
    )
    op.create_table(
        "task_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("workspace_id", sa.Integer(), sa.ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("repo_tasks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("interrupt", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("delivered_attempt", sa.Integer(), nullable=True),
        sa.Column("delivered_via", sa.String(length=16), nullable=True),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", UTCDateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_task_messages_workspace_id", "task_messages", ["workspace_id"])
    op.create_index("ix_task_messages_task", "task_messages", ["task_id", "status"])


def downgrade() -> None:
    op.drop_table("task_messages")
    op.drop_table("skills")
    op.drop_table("mcp_servers")
