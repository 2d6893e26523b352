"""indexes the lists need at volume: runs of a workspace newest first, by id or creation time, of one state or all

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    (table, f"ix_{table}_{name}", columns)
    for table in ("repo_tasks", "job_runs", "review_runs")
    for name, columns in (("ws_state_id", ["workspace_id", "state", "id"]),
                          ("ws_created", ["workspace_id", "created_at", "id"]),
                          ("ws_state_created", ["workspace_id", "state", "created_at", "id"]))
    if not (table == "review_runs" and name == "ws_state_id")
]


def upgrade() -> None:
    for table, name, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, name, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
