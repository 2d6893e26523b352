"""What a forge reports: plain values every forge returns, whichever platform it speaks to.

The `Forge` protocol itself lives with the other ports in `optio.control.ports`; these values are
shared by it, the forge implementations and the services that show pull requests.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PullRequestInfo:
    number: int
    state: str  # open | merged | closed
    title: str
    head_branch: str
    head_sha: str
    base_branch: str
    mergeable: bool | None
    conflicting_files: tuple[str, ...]
    merged_sha: str | None = None
    # The forge's own id of the PR where it has one Optio can refer to (the local forge's row id).
    id: int | None = None
    base_sha: str | None = None


@dataclass(frozen=True)
class CiInfo:
    head_sha: str
    status: str  # pending | passing | failing | error (the command could not test anything: see failure_kind)
    output: str
    failure_kind: str | None = None  # with "error": not_found | not_executable | timeout | could_not_run
    duration_s: float | None = None
    # The base tip the head was merged onto for this run (None: the forge tested the head alone or does not say).
    base_sha: str | None = None


@dataclass(frozen=True)
class LineComment:
    """A review comment on one line of the PR's head (``path`` relative to the repo root)."""

    path: str
    line: int
    body: str

    def as_text(self) -> str:
        """How an agent reads it in a resume prompt."""
        return f"{self.path}:{self.line}: {self.body}"


@dataclass(frozen=True)
class ReviewInfo:
    id: int
    head_sha: str
    verdict: str  # approve | request_changes
    comments: str
    author: str


@dataclass(frozen=True)
class PullRequestState:
    """Everything the repo decision needs to know about a task's PR, read in one call.

    ``ci_required`` says whether the repo runs CI at all; ``ci`` is the run on the current head (None when
    it has not been reported yet). ``review`` is the latest review of the PR, on any head.
    """

    info: PullRequestInfo
    ci_required: bool
    ci: CiInfo | None
    review: ReviewInfo | None


@dataclass(frozen=True)
class DiffFile:
    """One file a pull request changes (``path`` is where it ends up; ``old_path`` where a rename came from)."""

    path: str
    status: str  # added | modified | deleted | renamed
    additions: int
    deletions: int
    binary: bool = False
    old_path: str | None = None


@dataclass(frozen=True)
class DiffSummary:
    """What a pull request changes, file by file, with totals over every file listed.

    Forges cap how many files they list (``DIFF_FILES_MAX`` here, GitHub at 3,000): ``truncated`` says the list
    stopped there, so a reader never takes a capped list for the whole change.
    """

    files: tuple[DiffFile, ...]
    truncated: bool = False

    @property
    def additions(self) -> int:
        return sum(f.additions for f in self.files)

    @property
    def deletions(self) -> int:
        return sum(f.deletions for f in self.files)

    @property
    def changed_files(self) -> int:
        return len(self.files)


# How many files a diff summary lists at most, on every forge (a page stays readable; the rest is truncated).
DIFF_FILES_MAX = 1000


@dataclass(frozen=True)
class ForgeEvent:
    """A forge's webhook, parsed: which PR of which repo changed, and how (e.g. `ci`, `review`, `closed`).

    ``task_id`` is the task the PR belongs to when the event names it (its head branch ``optio/<task-id>``);
    None with ``number`` 0 means the change may touch every task of the repo (e.g. a push to the base branch).
    """

    repo_id: int
    number: int
    kind: str
    task_id: int | None = None


class BadSignature(Exception):
    """A webhook delivery whose signature (or token) does not verify: refused with 401, nothing happens."""


class ForgeBusy(Exception):
    """The forge cannot answer now (rate limit, 5xx): defer the work until ``retry_after_s`` seconds from now.

    Never a failure of the task: control reschedules the reconcile and spends none of the task's attempts.
    """

    def __init__(self, reason: str, retry_after_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class MergeRefused(Exception):
    """The forge refused the merge for a reason a person must fix (protected branch, a required review):
    the task ends ``needs_attention`` with ``reason``, never a retry loop."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
