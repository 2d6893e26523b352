"""merge queue batches: several queued PRs tested together, bisected when red; the message a queued PR asked for

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import optio.store.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merge_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("base_branch", sa.String(length=200), nullable=False),
        sa.Column("base_sha", sa.String(length=64), nullable=True),
        sa.Column("pr_ids", sa.JSON(), nullable=False),
        sa.Column("head_shas", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tested_sha", sa.String(length=64), nullable=True),
        sa.Column("merged_sha", sa.String(length=64), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("failure_kind", sa.String(length=32), nullable=True),
        sa.Column("created_at", optio.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", optio.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", optio.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("merge_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merge_batches_repo_id"), ["repo_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_merge_batches_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_merge_batches_workspace_id"), ["workspace_id"], unique=False)
    with op.batch_alter_table("pull_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merge_message", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pull_requests", schema=None) as batch_op:
        batch_op.drop_column("merge_message")
    with op.batch_alter_table("merge_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merge_batches_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_merge_batches_status"))
        batch_op.drop_index(batch_op.f("ix_merge_batches_repo_id"))
    op.drop_table("merge_batches")
