"""Review-agent runs (kind `pr_review`): a subtask on the PR head whose verdict becomes a PR review."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from optio.control import processes
from optio.control.context import ControlContext
from optio.control.handlers import Loaded, Outcome
from optio.control.kinds.job import active_process_count, run_view
from optio.domain.actions import Action
from optio.domain.reconcile.review import decide_pr_review
from optio.domain.snapshot import Capacity, JobRunSnapshot
from optio.domain.states import TERMINAL, RunKind
from optio.forge.local import LocalForge
from optio.store import queue
from optio.store.models import PrReview, PullRequest, Repo, ReviewRun, RunLog

log = structlog.get_logger("optio.reviews")

KIND = RunKind.PR_REVIEW.value
COMMENT_MAX_CHARS = 20_000


class ReviewRunHandler:
    kind = KIND
    terminal = TERMINAL[RunKind.PR_REVIEW]

    def build_snapshot(self, ctx: ControlContext, session: Session, run_id: int, workspace_id: int,
                       now: datetime) -> Loaded | None:
        run = session.scalar(select(ReviewRun).where(ReviewRun.id == run_id, ReviewRun.workspace_id == workspace_id))
        if run is None:
            return None
        pr = session.get(PullRequest, run.pr_id)
        repo = session.get(Repo, pr.repo_id) if pr else None
        if pr is None or repo is None:
            return None
        capacity = Capacity()
        if run.state == "queued":
            capacity = Capacity(running_global=active_process_count(session),
                                max_global=ctx.settings.max_concurrent_runs)
        process = None
        if run.state == "running":
            process = processes.process_view(ctx, processes.latest_process(session, KIND, run.id))
        snap = JobRunSnapshot(now=now, run=run_view(run, RunKind.PR_REVIEW), max_retries=1, process=process,
                              capacity=capacity, stall_threshold_s=ctx.settings.stall_threshold_s)
        extra = {"repo_id": repo.id, "task_id": run.task_id, "pr_id": pr.id, "head_sha": run.head_sha,
                 "agent_type": run.agent_type, "agent_config": dict(run.agent_config or {}), "prompt": run.prompt,
                 "worktree": run.worktree_path, "pr_number": pr.number, "base_branch": pr.base_branch,
                 "secret_names": list(repo.secret_names or [])}
        return Loaded(workspace_id=workspace_id, snapshot=snap, extra=extra)

    def decide(self, snapshot: Any) -> Action:
        return decide_pr_review(snapshot)

    def _forge(self, ctx: ControlContext) -> LocalForge:
        assert ctx.forge is not None
        return ctx.forge  # type: ignore[no-any-return]

    def launch(self, ctx: ControlContext, loaded: Loaded, action: Any, attempt: int) -> None:
        extra = loaded.extra
        path = ctx.data_dir / "worktrees" / f"review-{loaded.run.id}-{attempt}"
        with ctx.db.write() as session:
            session.execute(update(ReviewRun).where(ReviewRun.id == loaded.run.id).values(worktree_path=str(path)))
            repo = session.get(Repo, extra["repo_id"])
            assert repo is not None
        cache = self._forge(ctx).cache(repo)

        def checkout_head() -> None:
            # A review agent must see the PR head; without it the launch fails rather than review nothing.
            cache.ensure()
            cache.add_worktree(path, f"optio-review/{loaded.run.id}-{attempt}", extra["head_sha"])

        env = ctx.secret_env(loaded.workspace_id, extra["secret_names"], repo_id=extra["repo_id"],
                             run=(KIND, loaded.run.id))
        env.update({"OPTIO_PR_NUMBER": str(extra["pr_number"]), "OPTIO_HEAD_SHA": extra["head_sha"],
                    "OPTIO_BASE_BRANCH": extra["base_branch"]})
        processes.launch(
            ctx,
            processes.LaunchRequest(
                kind=KIND, run_id=loaded.run.id, workspace_id=loaded.workspace_id, attempt=attempt,
                agent_type=extra["agent_type"], agent_config=extra["agent_config"], prompt=extra["prompt"],
                cwd=path, env=env, timeout_s=extra["agent_config"].get("timeout_s") or ctx.settings.agent_timeout_s,
                prepare=checkout_head,
            ),
        )

    def apply_special(self, ctx: ControlContext, loaded: Loaded, action: Any, now: datetime) -> Outcome:
        return Outcome("error", f"review runs do not support action {action.name!r}")

    def on_transition(self, ctx: ControlContext, session: Session, loaded: Loaded, to_state: str,
                      now: datetime) -> None:
        """A finished review becomes a review on the PR, in the same transaction; the task looks at once."""
        extra = loaded.extra
        if to_state == "completed":
            proc = processes.latest_process(session, KIND, loaded.run.id)
            code = proc.exit_code if proc is not None else None
            verdict = "approve" if code == 0 else "request_changes"
            lines = session.scalars(
                select(RunLog.text).where(RunLog.run_kind == KIND, RunLog.run_id == loaded.run.id,
                                          RunLog.stream == "stdout", RunLog.attempt == loaded.run.attempts)
                .order_by(RunLog.seq)
            )
            comments = ctx.redact("\n".join(lines).strip()[:COMMENT_MAX_CHARS], loaded.workspace_id, extra["repo_id"])
            session.execute(update(ReviewRun).where(ReviewRun.id == loaded.run.id)
                            .values(verdict=verdict, comments=comments))
            session.add(PrReview(workspace_id=loaded.workspace_id, pr_id=extra["pr_id"], head_sha=extra["head_sha"],
                                 verdict=verdict, comments=comments, author=f"review-agent:{extra['agent_type']}"))
        if to_state in self.terminal:
            queue.enqueue(session, "repo_task", extra["task_id"], loaded.workspace_id, reason=f"review {to_state}")

    def after_commit(self, ctx: ControlContext, loaded: Loaded, action: Any) -> None:
        if getattr(action, "to", None) not in self.terminal:
            return
        with ctx.db.read() as session:
            run = session.get(ReviewRun, loaded.run.id)
            repo = session.get(Repo, loaded.extra["repo_id"])
            path = run.worktree_path if run else None
        if path and repo is not None and Path(path).name.startswith("review-"):
            try:
                self._forge(ctx).cache(repo).remove_worktree(Path(path))
            except Exception:
                log.exception("review_worktree_cleanup_failed", run=loaded.run.id)
