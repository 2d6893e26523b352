"""CI setup failures: why a CI run could not run the repo's tests at all (not found, not executable, timeout)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ci_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_kind", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ci_runs", schema=None) as batch_op:
        batch_op.drop_column("failure_kind")
