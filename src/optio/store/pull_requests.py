"""Pull requests of the local forge, their CI runs and reviews: the writes the control plane makes to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from optio.store.models import PrReview, PullRequest


def close_if_open(session: Session, pr_id: int, now: datetime) -> None:
    session.execute(update(PullRequest).where(PullRequest.id == pr_id, PullRequest.state == "open")
                    .values(state="closed", closed_at=now))


def add_review(session: Session, *, workspace_id: int, pr_id: int, head_sha: str, verdict: str, comments: str,
               author: str) -> None:
    """Record a review of `head_sha` (its comments already redacted by the caller)."""
    session.add(PrReview(workspace_id=workspace_id, pr_id=pr_id, head_sha=head_sha, verdict=verdict,
                         comments=comments, author=author))
