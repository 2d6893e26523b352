"""CI on the merge result: the base each CI run tested against, the merge commit it ran on, the merge queue

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import optio.store.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ci_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_sha", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("tested_sha", sa.String(length=64), nullable=True))
        batch_op.drop_constraint("uq_ci_runs_head", type_="unique")
        batch_op.create_unique_constraint("uq_ci_runs_head_base", ["pr_id", "head_sha", "base_sha"])
    with op.batch_alter_table("pull_requests", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merge_queued_at", optio.store.types.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("pull_requests", schema=None) as batch_op:
        batch_op.drop_column("merge_queued_at")
    with op.batch_alter_table("ci_runs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_ci_runs_head_base", type_="unique")
        batch_op.create_unique_constraint("uq_ci_runs_head", ["pr_id", "head_sha"])
        batch_op.drop_column("tested_sha")
        batch_op.drop_column("base_sha")
