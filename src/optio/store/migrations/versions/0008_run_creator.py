"""runs remember who created them (for the audit of secret injections)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('job_runs', 'repo_tasks'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('created_by', sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in ('job_runs', 'repo_tasks'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('created_by')
