"""agent process failure classification

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agent_processes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_kind", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("retry_after_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_processes", schema=None) as batch_op:
        batch_op.drop_column("retry_after_s")
        batch_op.drop_column("failure_kind")
