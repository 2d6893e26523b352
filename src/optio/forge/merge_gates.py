"""The rules a pull request must meet before anything merges it, enforced where the merge happens.

People (API/CLI) and the reconciler merge through the same `LocalForge.merge`, so the rules are checked
there and cannot be skipped by calling a different door. They apply to the exact head being merged:
CI must have passed on the merge of that sha onto the current base tip (when the repo has CI: a result
on an older base says nothing about what would land now), the repo's approval rule must hold on that sha
(an approving review when approval is required; the review agent's approval when one is configured),
and the squash itself refuses a head that no longer merges onto the current base. Only an admin's
explicit, audited force skips them (see `services.prs.merge_pr`).
"""

from __future__ import annotations

from dataclasses import dataclass

from optio.errors import Conflict
from optio.store import pull_requests as prs
from optio.store.models import PullRequest, Repo
from optio.store.repo_tasks import review_policy_for_pr
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
    # CI passed on this head merged onto an older base only: re-testing on the current base may clear it.
    stale_ci: bool = False

    @property
    def ok(self) -> bool:
        return not self.unmet

    @property
    def only_stale_ci(self) -> bool:
        """Everything holds but CI on the current base: the PR belongs in the merge queue."""
        return self.stale_ci and len(self.unmet) == 1


def check_merge_gates(session: Session, repo: Repo, pr: PullRequest, base_sha: str | None = None, *,
                      ci: bool = True) -> GateReport:
    """The unmet rules for merging the PR's head onto `base_sha` (default: the base tip last seen).

    `ci=False` leaves CI out: a merge-queue batch's own CI run on the combined merge stands for it.
    """
    head = pr.head_sha
    short = head[:10]
    base = base_sha or pr.base_sha
    unmet: list[str] = []
    stale = False
    if repo.ci_command and ci:
        run = prs.ci_run_on(session, pr.id, head, base) if base else prs.ci_run(session, pr.id, head)
        latest = run or prs.ci_run(session, pr.id, head)
        if run is None and latest is not None and latest.status == "passing":
            stale = True
            unmet.append(f"CI passed on {short} merged onto an older base, not onto {pr.base_branch} at "
                         f"{(base or '')[:10]}")
        elif latest is None:
            unmet.append(f"CI has not run on {short}")
        elif latest.status == "pending":
            unmet.append(f"CI is still running on {short}")
        elif latest.status != "passing":
            unmet.append(f"CI is {latest.status} on {short}")
    reviews = prs.reviews(session, pr.id, head_sha=head)
    policy = review_policy_for_pr(session, repo, pr.task_id)  # a blueprint's task may differ from its repo
    if policy.require_approval:
        if not reviews:
            unmet.append(f"approval required: no review of {short}")
        elif reviews[-1].verdict != "approve":
            unmet.append(f"approval required: the latest review of {short} requests changes")
    if policy.review_agent_type:
        agent = [r for r in reviews if r.author.startswith(REVIEW_AGENT_AUTHOR_PREFIX)]
        if not agent:
            unmet.append(f"the review agent has not reviewed {short}")
        elif agent[-1].verdict != "approve":
            unmet.append(f"the review agent requested changes on {short}")
    return GateReport(head_sha=head, unmet=tuple(unmet), stale_ci=stale)


def require_merge_gates(session: Session, repo: Repo, pr: PullRequest, base_sha: str | None = None) -> None:
    """Raise `MergeGateRefused` (a 409) unless the PR's current head meets every rule on `base_sha`."""
    report = check_merge_gates(session, repo, pr, base_sha)
    if not report.ok:
        raise MergeGateRefused(pr.number, pr.head_sha, report.unmet)
