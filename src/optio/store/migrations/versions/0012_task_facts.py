"""task facts: resumes a person asked for are counted apart from the automatic ones

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repo_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("human_resumes", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("repo_tasks", schema=None) as batch_op:
        batch_op.drop_column("human_resumes")
