"""per run: consecutive executor errors (a run failing the same way again and again is given up) and
the bytes of output stored and dropped (the log size cap)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import optio.store.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RUN_TABLES = ("job_runs", "repo_tasks", "review_runs")


def upgrade() -> None:
    for table in RUN_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("executor_error_action", sa.String(length=32), nullable=True))
            batch_op.add_column(sa.Column("executor_error", sa.Text(), nullable=True))
            batch_op.add_column(
                sa.Column("executor_error_count", sa.Integer(), nullable=False, server_default="0")
            )
            batch_op.add_column(
                sa.Column("executor_error_at", optio.store.types.UTCDateTime(timezone=True), nullable=True)
            )
            batch_op.add_column(sa.Column("log_bytes", sa.BigInteger(), nullable=False, server_default="0"))
            batch_op.add_column(sa.Column("log_dropped_bytes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    for table in RUN_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("log_dropped_bytes")
            batch_op.drop_column("log_bytes")
            batch_op.drop_column("executor_error_at")
            batch_op.drop_column("executor_error_count")
            batch_op.drop_column("executor_error")
            batch_op.drop_column("executor_error_action")
