"""server administrators: a flag on users, set for the bootstrap admin

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_server_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    # The bootstrap admin is the first user ever created (see services/users.py::ensure_bootstrap_admin).
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("is_server_admin", sa.Boolean))
    first = sa.select(sa.func.min(users.c.id)).scalar_subquery()
    op.execute(users.update().where(users.c.id == first).values(is_server_admin=sa.true()))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("is_server_admin")
