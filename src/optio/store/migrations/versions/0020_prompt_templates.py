"""prompt template library; review and merge settings on blueprints and the tasks they spawn

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import optio.store.types

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "prompt_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", optio.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", optio.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workspace_id", "kind", "scope", name="uq_prompt_templates_scope"),
    )
    op.create_index("ix_prompt_templates_workspace_id", "prompt_templates", ["workspace_id"])
    op.create_index("ix_prompt_templates_repo_id", "prompt_templates", ["repo_id"])
    for table in ("blueprints", "repo_tasks"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("review_settings", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    for table in ("repo_tasks", "blueprints"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("review_settings")
    op.drop_index("ix_prompt_templates_repo_id", table_name="prompt_templates")
    op.drop_index("ix_prompt_templates_workspace_id", table_name="prompt_templates")
    op.drop_table("prompt_templates")
