"""In-memory implementations of the control plane's ports, for tests that drive the real control code.

They keep real state (PRs, CI results the test scripts, reviews, merges, processes) and tell the control
plane about changes the way a real forge's webhook would: through `on_change`, which a test wires to a
reconcile enqueue of the task.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from optio.control.ports import (
    CiInfo,
    ForgeEvent,
    LineComment,
    PullRequestInfo,
    PullRequestState,
    ReviewInfo,
    RunRef,
)
from optio.errors import Conflict, NotFound
from optio.runtime.base import LaunchSpec, OutputSink, ProcessInfo


@dataclass
class FakePr:
    repo_id: int
    task_id: int
    info: PullRequestInfo
    ci: dict[str, CiInfo] = field(default_factory=dict)  # by head sha
    reviews: list[ReviewInfo] = field(default_factory=list)


@dataclass(frozen=True)
class MergeRecord:
    repo_id: int
    number: int
    head_sha: str
    message: str
    forced: bool


class InMemoryForge:
    """A second forge: PRs, CI and reviews held in memory; merges recorded, never pushed anywhere.

    Its gates are the same rules the local forge enforces: CI passing on the merged head (when the repo
    runs CI) and an approving latest review on it when the repo requires approval.
    """

    name = "memory"

    def __init__(self, *, ci_repos: set[int] | None = None, approval_repos: set[int] | None = None,
                 on_change: Callable[[int], None] = lambda _task_id: None) -> None:
        self.ci_repos = set(ci_repos or ())
        self.approval_repos = set(approval_repos or ())
        self.on_change = on_change
        self.prs: dict[tuple[int, int], FakePr] = {}
        self.merges: list[MergeRecord] = []
        self.closed: list[tuple[int, int]] = []
        self.heads_seen: list[str] = []
        self._next_number: dict[int, int] = {}
        self._next_review = 1
        self._lock = threading.RLock()

    # --- what a test scripts ------------------------------------------------------------------------------

    def pr_of_task(self, task_id: int) -> FakePr | None:
        with self._lock:
            found = [pr for pr in self.prs.values() if pr.task_id == task_id]
            return found[-1] if found else None

    def report_ci(self, repo_id: int, number: int, *, status: str, output: str = "") -> str:
        """CI finished on the PR's current head with `status`; the head it reported on."""
        with self._lock:
            pr = self._pr(repo_id, number)
            head = pr.info.head_sha
            pr.ci[head] = CiInfo(head_sha=head, status=status, output=output)
        self.on_change(pr.task_id)
        return head

    # --- the Forge port ---------------------------------------------------------------------------------

    def _pr(self, repo_id: int, number: int) -> FakePr:
        pr = self.prs.get((repo_id, number))
        if pr is None:
            raise NotFound(f"pull request #{number} not found")
        return pr

    def open_or_update_pr(self, repo_id: int, task_id: int, *, head_branch: str, head_sha: str, title: str,
                          body: str) -> PullRequestInfo:
        with self._lock:
            self.heads_seen.append(head_sha)
            open_prs = [pr for pr in self.prs.values() if pr.task_id == task_id and pr.info.state == "open"]
            if open_prs:
                pr = open_prs[0]
                if pr.info.head_sha != head_sha:
                    pr.info = replace(pr.info, head_sha=head_sha, mergeable=True)
                return pr.info
            number = self._next_number.get(repo_id, 1)
            self._next_number[repo_id] = number + 1
            info = PullRequestInfo(number=number, state="open", title=title, head_branch=head_branch,
                                   head_sha=head_sha, base_branch="main", mergeable=True, conflicting_files=())
            self.prs[(repo_id, number)] = FakePr(repo_id=repo_id, task_id=task_id, info=info)
            return info

    def get_pr(self, repo_id: int, number: int) -> PullRequestInfo:
        with self._lock:
            return self._pr(repo_id, number).info

    def pr_for_task(self, repo_id: int, task_id: int) -> PullRequestState | None:
        with self._lock:
            pr = self.pr_of_task(task_id)
            if pr is None or pr.repo_id != repo_id:
                return None
            return PullRequestState(info=pr.info, ci_required=repo_id in self.ci_repos,
                                    ci=pr.ci.get(pr.info.head_sha), review=pr.reviews[-1] if pr.reviews else None)

    def ci_for_head(self, repo_id: int, number: int) -> CiInfo | None:
        with self._lock:
            pr = self._pr(repo_id, number)
            return pr.ci.get(pr.info.head_sha)

    def latest_review(self, repo_id: int, number: int) -> ReviewInfo | None:
        with self._lock:
            pr = self._pr(repo_id, number)
            return pr.reviews[-1] if pr.reviews else None

    def submit_review(self, repo_id: int, number: int, *, verdict: str, comments: str, author: str,
                      line_comments: tuple[LineComment, ...] = ()) -> ReviewInfo:
        if verdict not in ("approve", "request_changes"):
            raise Conflict(f"unknown verdict {verdict!r}", field="verdict")
        with self._lock:
            pr = self._pr(repo_id, number)
            if pr.info.state != "open":
                raise Conflict(f"pull request #{number} is {pr.info.state}", field="state")
            review = ReviewInfo(self._next_review, pr.info.head_sha, verdict, comments, author)
            self._next_review += 1
            pr.reviews.append(review)
        self.on_change(pr.task_id)
        return review

    def unmet_gates(self, pr: FakePr) -> list[str]:
        head = pr.info.head_sha
        unmet = []
        ci = pr.ci.get(head)
        if pr.repo_id in self.ci_repos and (ci is None or ci.status != "passing"):
            unmet.append(f"CI is not passing on {head[:10]}")
        on_head = [r for r in pr.reviews if r.head_sha == head]
        if pr.repo_id in self.approval_repos and (not on_head or on_head[-1].verdict != "approve"):
            unmet.append(f"approval required on {head[:10]}")
        return unmet

    def merge(self, repo_id: int, number: int, *, head_sha: str, message: str, force: bool = False) -> str:
        with self._lock:
            pr = self._pr(repo_id, number)
            if pr.info.state == "merged":
                return pr.info.merged_sha or ""
            if pr.info.state != "open":
                raise Conflict(f"pull request #{number} is {pr.info.state}", field="state")
            if pr.info.head_sha != head_sha:
                raise Conflict(f"pull request #{number} moved to {pr.info.head_sha[:10]}")
            unmet = self.unmet_gates(pr)
            if unmet and not force:
                raise Conflict(f"pull request #{number} cannot be merged: {'; '.join(unmet)}")
            merged_sha = f"{len(self.merges) + 1:040x}"
            pr.info = replace(pr.info, state="merged", merged_sha=merged_sha)
            self.merges.append(MergeRecord(repo_id, number, head_sha, message, force))
        self.on_change(pr.task_id)
        return merged_sha

    def rerun_ci(self, repo_id: int, number: int) -> None:
        with self._lock:
            pr = self._pr(repo_id, number)
            pr.ci.pop(pr.info.head_sha, None)
        self.on_change(pr.task_id)

    def close(self, repo_id: int, number: int) -> None:
        with self._lock:
            pr = self._pr(repo_id, number)
            if pr.info.state != "open":
                return
            pr.info = replace(pr.info, state="closed")
            self.closed.append((repo_id, number))
        self.on_change(pr.task_id)

    def parse_event(self, repo_id: int, headers: Mapping[str, str], body: bytes) -> list[ForgeEvent]:
        return []

    def poll_open_prs(self) -> int:
        with self._lock:
            return sum(1 for pr in self.prs.values() if pr.info.state == "open")

    def recover(self) -> None:
        return None

    def shutdown(self) -> None:
        return None


class NoSecrets:
    """A secrets provider with none: every run asks for nothing it can get."""

    def env_for(self, workspace_id: int, names: list[str], repo_id: int | None = None, *,
                run: RunRef | None = None) -> dict[str, str]:
        return {}


class FakeRuntime:
    """A runtime that starts nothing: launches, kills and adoptions are recorded; exits are scripted."""

    def __init__(self, sink: OutputSink | None = None) -> None:
        self.sink = sink
        self.launched: list[LaunchSpec] = []
        self.killed: list[str] = []
        self.adopted: list[str] = []
        self.alive: set[str] = set()
        self.fail_launch: str | None = None
        self._pid = 1000

    def launch(self, spec: LaunchSpec) -> ProcessInfo:
        if self.fail_launch is not None:
            raise RuntimeError(self.fail_launch)
        self.launched.append(spec)
        self.alive.add(spec.key)
        self._pid += 1
        return ProcessInfo(key=spec.key, pid=self._pid, start_time=1.0, log_dir=spec.log_dir, started_at=0.0,
                           timeout_at=None)

    def finish(self, key: str, exit_code: int, lines: list[str] | None = None) -> None:
        """The process printed `lines` and exited with `exit_code` (reported as a real runtime would)."""
        assert self.sink is not None
        if lines:
            self.sink.on_output(key, "stdout", lines, sum(len(line) + 1 for line in lines))
        self.alive.discard(key)
        self.sink.on_exit(key, exit_code, "exited")

    def is_alive(self, pid: int, start_time: float) -> bool:
        return False

    def exit_status(self, info: ProcessInfo) -> int | None:
        return None

    def adopt(self, info: ProcessInfo, *, stdout_offset: int, stderr_offset: int) -> None:
        self.adopted.append(info.key)
        self.alive.add(info.key)

    def kill(self, key: str, *, grace_s: float = 1.0) -> None:
        self.killed.append(key)
        self.alive.discard(key)

    def kill_info(self, info: ProcessInfo, *, grace_s: float = 1.0) -> None:
        self.killed.append(info.key)

    def active_keys(self) -> list[str]:
        return sorted(self.alive)

    def shutdown(self) -> None:
        return None
