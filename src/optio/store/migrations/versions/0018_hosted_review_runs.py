"""review runs on hosted forges: a review names its repo and PR number; the local PR row is optional

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("review_runs") as batch:
        batch.add_column(sa.Column("repo_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("number", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_review_runs_repo_id_repos", "repos", ["repo_id"], ["id"], ondelete="CASCADE")
        batch.alter_column("pr_id", existing_type=sa.Integer(), nullable=True)
    # Existing reviews are all on the local forge: their repo and number come from their PR row.
    op.execute("UPDATE review_runs SET repo_id = (SELECT repo_id FROM pull_requests WHERE pull_requests.id = "
               "review_runs.pr_id), number = (SELECT number FROM pull_requests WHERE pull_requests.id = "
               "review_runs.pr_id)")


def downgrade() -> None:
    op.execute("DELETE FROM review_runs WHERE pr_id IS NULL")
    with op.batch_alter_table("review_runs") as batch:
        batch.alter_column("pr_id", existing_type=sa.Integer(), nullable=False)
        batch.drop_constraint("fk_review_runs_repo_id_repos", type_="foreignkey")
        batch.drop_column("number")
        batch.drop_column("repo_id")
