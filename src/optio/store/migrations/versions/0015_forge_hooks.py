"""forge webhook deliveries: each delivery id is handled once per repo

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import optio.store.types

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forge_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repo_id", sa.Integer(), sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("delivery_id", sa.String(length=200), nullable=False),
        sa.Column("event", sa.String(length=100), nullable=False, server_default=""),
        sa.Column("received_at", optio.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("repo_id", "delivery_id", name="uq_forge_delivery"),
    )
    op.create_index("ix_forge_deliveries_received_at", "forge_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_forge_deliveries_received_at", table_name="forge_deliveries")
    op.drop_table("forge_deliveries")
