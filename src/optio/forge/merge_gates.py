"""The rules a pull request must meet before anything merges it, enforced where the merge happens.

People (API/CLI) and the reconciler merge through the same `LocalForge.merge`, so the rules are checked
there and cannot be skipped by calling a different door. They apply to the exact head being merged:
CI must have passed on that sha (when the repo has CI), the repo's approval rule must hold on that sha
(an approving review when approval is required; the review agent's approval when one is configured),
and the squash itself refuses a head that no longer merges onto the current base. Only an admin's
explicit, audited force skips them (see `services.prs.merge_pr`).
"""

from __future__ import annotations

from dataclasses import dataclass

from optio.errors import Conflict
from optio.store import pull_requests as prs
from optio.store.models import PullRequest, Repo
from optio.store.session import Session

REVIEW_AGENT_AUTHOR_PREFIX = "review-agent:"


class MergeGateRefused(Conflict):
    """Merging now would break the repo's rules; the message names each unmet one."""

    code = "merge_gate"

    def __init__(self, number: int, head_sha: str, unmet: tuple[str, ...]) -> None:
        self.unmet = unmet
        super().__init__(f"pull request #{number} cannot be merged at {head_sha[:10]}: {'; '.join(unmet)} "
                         "(an admin may override with force)")


@dataclass(frozen=True)
class GateReport:
    """Which rules the head does not meet yet; empty means it may be merged."""

    head_sha: str
    unmet: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.unmet


def check_merge_gates(session: Session, repo: Repo, pr: PullRequest) -> GateReport:
    head = pr.head_sha
    short = head[:10]
    unmet: list[str] = []
    if repo.ci_command:
        ci = prs.ci_run(session, pr.id, head)
        if ci is None:
            unmet.append(f"CI has not run on {short}")
        elif ci.status == "pending":
            unmet.append(f"CI is still running on {short}")
        elif ci.status != "passing":
            unmet.append(f"CI is {ci.status} on {short}")
    reviews = prs.reviews(session, pr.id, head_sha=head)
    if repo.require_approval:
        if not reviews:
            unmet.append(f"approval required: no review of {short}")
        elif reviews[-1].verdict != "approve":
            unmet.append(f"approval required: the latest review of {short} requests changes")
    if repo.review_agent_type:
        agent = [r for r in reviews if r.author.startswith(REVIEW_AGENT_AUTHOR_PREFIX)]
        if not agent:
            unmet.append(f"the review agent has not reviewed {short}")
        elif agent[-1].verdict != "approve":
            unmet.append(f"the review agent requested changes on {short}")
    return GateReport(head_sha=head, unmet=tuple(unmet))


def require_merge_gates(session: Session, repo: Repo, pr: PullRequest) -> None:
    """Raise `MergeGateRefused` (a 409) unless the PR's current head meets every rule."""
    report = check_merge_gates(session, repo, pr)
    if not report.ok:
        raise MergeGateRefused(pr.number, pr.head_sha, report.unmet)
