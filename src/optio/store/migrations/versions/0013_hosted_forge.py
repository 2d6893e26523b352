"""hosted forges: a repo's API root, webhook secret and forge-specific options

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_url", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("forge_options", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("repos", schema=None) as batch_op:
        batch_op.drop_column("forge_options")
        batch_op.drop_column("webhook_secret")
        batch_op.drop_column("api_url")
