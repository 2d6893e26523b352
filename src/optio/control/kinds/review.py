"""Review-agent runs (kind `pr_review`): a subtask on the PR head whose verdict becomes a PR review."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from optio.control import processes
from optio.control.context import ControlContext
from optio.control.executor import write_transition
from optio.control.handlers import Loaded, Outcome
from optio.control.kinds.job import active_process_count, executor_error_policy, run_view
from optio.control.kinds.repo import RepoAt
from optio.control.ports import LineComment
from optio.control.review_file import load_review_file
from optio.domain.actions import Action, PostReview
from optio.domain.prompts import REVIEW_FILE_NAME, SCRIPT_VERDICT_WRAPPER, review_comment, vendor_review_instructions
from optio.domain.reconcile.review import ReviewReport, ReviewRunSnapshot, decide_pr_review, read_verdict
from optio.domain.snapshot import Capacity, ProcessStatus
from optio.domain.states import TERMINAL, RunKind
from optio.runtime.base import Mounts
from optio.store import logs, pull_requests, queue, repo_tasks, reviews, runs
from optio.store.session import Session

log = structlog.get_logger("optio.reviews")

KIND = RunKind.PR_REVIEW.value
COMMENT_MAX_CHARS = 20_000
VERDICT_MAX_BYTES = 1024


@dataclass(frozen=True)
class ReviewLayout:
    """Where one review attempt's checkouts and verdict live: `<root>/{base,head,verdict}`."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def head(self) -> Path:
        return self.root / "head"

    @property
    def verdict_dir(self) -> Path:
        return self.root / "verdict"

    @property
    def verdict_file(self) -> Path:
        return self.verdict_dir / "verdict"

    @property
    def review_file(self) -> Path:
        """A vendor review's report, in its working directory (the base checkout)."""
        return self.base / REVIEW_FILE_NAME

    @property
    def script_review_file(self) -> Path:
        """A script review's optional summary and line comments (`$OPTIO_REVIEW_FILE`), beside its verdict."""
        return self.verdict_dir / REVIEW_FILE_NAME

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def read_verdict_file(path: Path) -> str | None:
    """The verdict file's text; None when it does not exist. Never follows a link or blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        return ""  # a symlink or something unreadable is an invalid verdict, not a missing one
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        data = os.read(fd, VERDICT_MAX_BYTES)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


@dataclass(frozen=True)
class ReviewRunFacts:
    """What launching a review and recording its verdict need beyond the snapshot."""

    repo_id: int
    remote_url: str
    task_id: int
    pr_id: int | None  # the local forge's PR row; None on a hosted forge
    pr_number: int
    head_sha: str
    base_branch: str
    base_sha: str | None
    agent_type: str
    agent_config: dict[str, Any]
    prompt: str
    worktree: str | None
    secret_names: list[str]
    forge_kind: str = "local"

    @property
    def structured(self) -> bool:
        """A vendor review reports through review.json; the script agent's exit code is its verdict."""
        return self.agent_type != "script"


ReviewLoaded = Loaded[ReviewRunSnapshot, ReviewRunFacts]


class ReviewRunHandler:
    kind = KIND
    terminal = TERMINAL[RunKind.PR_REVIEW]

    def build_snapshot(self, ctx: ControlContext, session: Session, run_id: int, workspace_id: int,
                       now: datetime) -> ReviewLoaded | None:
        row = reviews.load(session, run_id, workspace_id)
        if row is None:
            return None
        run, pr, repo = row
        pr_number = pr.number if pr is not None else run.number
        assert pr_number is not None  # reviews.load returns no run without a PR to review
        capacity = Capacity()
        if run.state == "queued":
            capacity = Capacity(running_global=active_process_count(session),
                                max_global=ctx.settings.max_concurrent_runs)
        process = None
        if run.state == "running":
            process = processes.process_view(ctx, processes.latest_process(session, KIND, run.id))
        verdict = None
        structured = run.agent_type != "script"
        report: ReviewReport | None = None
        report_error: str | None = None
        if process is not None and process.status == ProcessStatus.EXITED and run.worktree_path:
            layout = ReviewLayout(Path(run.worktree_path))
            if structured:
                report, report_error = load_review_file(layout.review_file)
            else:
                verdict = read_verdict_file(layout.verdict_file)
                if layout.script_review_file.exists() or layout.script_review_file.is_symlink():
                    report, report_error = load_review_file(layout.script_review_file)
        snap = ReviewRunSnapshot(now=now, run=run_view(run, RunKind.PR_REVIEW), max_retries=1, process=process,
                                 capacity=capacity, stall_threshold_s=ctx.settings.stall_threshold_s,
                                 verdict_file=verdict, structured=structured, report=report,
                                 report_error=report_error, posts_verdict=pr is None,
                                 executor_errors=executor_error_policy(ctx))
        facts = ReviewRunFacts(repo_id=repo.id, remote_url=repo.remote_url, task_id=run.task_id,
                               pr_id=pr.id if pr is not None else None, pr_number=pr_number, head_sha=run.head_sha,
                               base_branch=pr.base_branch if pr is not None else repo.default_branch,
                               base_sha=pr.base_sha if pr is not None else None, agent_type=run.agent_type,
                               agent_config=dict(run.agent_config or {}), prompt=run.prompt,
                               worktree=run.worktree_path, secret_names=list(repo.secret_names or []),
                               forge_kind=repo.forge)
        return Loaded(workspace_id=workspace_id, snapshot=snap, facts=facts)

    def decide(self, snapshot: Any) -> Action:
        return decide_pr_review(snapshot)

    def admit(self, ctx: ControlContext, session: Session, loaded: ReviewLoaded, to_state: str) -> bool:
        return True

    def launch(self, ctx: ControlContext, loaded: ReviewLoaded, action: Any, attempt: int) -> None:
        """Start the review with the base branch as its (trusted) working directory and the head read-only.

        The review command is resolved and run in a checkout of the base branch, so a PR that rewrites
        its review script changes nothing about how it is judged; the head is what is reviewed, at
        `$OPTIO_PR_HEAD_DIR`. The script agent's verdict goes to `$OPTIO_REVIEW_VERDICT_FILE` in a directory
        only the review can write, by Optio's wrapper from the command's exit code. A vendor agent writes
        `review.json` in its working directory (the base checkout, writable for it, with any review.json the
        base branch carries removed first); `$OPTIO_REVIEW_VERDICT_FILE` names that file then.
        """
        facts = loaded.facts
        layout = ReviewLayout(ctx.data_dir / "worktrees" / f"review-{loaded.run.id}-{attempt}")
        with ctx.db.write() as session:
            runs.cas_update(session, KIND, loaded.run.id, None, {"worktree_path": str(layout.root)})
        cache = ctx.worktrees_for(RepoAt(facts.repo_id, facts.remote_url))

        def checkout() -> None:
            # A review must see the PR head and the base; without them the launch fails rather than review nothing.
            cache.ensure()
            cache.fetch()
            cache.export_tree(facts.head_sha, layout.head)
            cache.export_tree(facts.base_sha or f"origin/{facts.base_branch}", layout.base)
            if layout.review_file.is_symlink() or layout.review_file.is_file():
                layout.review_file.unlink()  # a review.json committed on the base is not this review's
            if layout.verdict_dir.exists():
                shutil.rmtree(layout.verdict_dir)
            layout.verdict_dir.mkdir(mode=0o700)

        env = ctx.secret_env(loaded.workspace_id, facts.secret_names, repo_id=facts.repo_id,
                             run=(KIND, loaded.run.id))
        env.update({"OPTIO_PR_NUMBER": str(facts.pr_number), "OPTIO_HEAD_SHA": facts.head_sha,
                    "OPTIO_BASE_BRANCH": facts.base_branch, "OPTIO_PR_HEAD_DIR": str(layout.head),
                    "OPTIO_PR_BASE_DIR": str(layout.base),
                    "OPTIO_REVIEW_VERDICT_FILE": str(layout.review_file if facts.structured else layout.verdict_file)})
        agent_config, prompt = dict(facts.agent_config), facts.prompt
        if facts.agent_type == "script":
            command = agent_config.get("command")
            if isinstance(command, str) and command.strip():  # else the script agent refuses the config itself
                # The repo's command (from settings, run in the base checkout) keeps its meaning: exit 0 approves.
                env["OPTIO_REVIEW_COMMAND"] = command
                agent_config["command"] = SCRIPT_VERDICT_WRAPPER
            env["OPTIO_REVIEW_FILE"] = str(layout.script_review_file)
            mounts = Mounts(writable=(layout.verdict_dir,), readonly=(layout.head, layout.base))
        else:
            prompt += vendor_review_instructions(layout.head, layout.review_file)
            mounts = Mounts(writable=(layout.base,), readonly=(layout.head,))
        processes.launch(
            ctx,
            processes.LaunchRequest(
                kind=KIND, run_id=loaded.run.id, workspace_id=loaded.workspace_id, attempt=attempt,
                agent_type=facts.agent_type, agent_config=agent_config, prompt=prompt,
                cwd=layout.base, env=env, timeout_s=agent_config.get("timeout_s") or ctx.settings.agent_timeout_s,
                prepare=checkout, repo_id=facts.repo_id,
                mounts=mounts,
            ),
        )

    def apply_special(self, ctx: ControlContext, loaded: ReviewLoaded, action: Any, now: datetime) -> Outcome:
        if isinstance(action, PostReview):
            return self._post_review(ctx, loaded, action, now)
        return Outcome("error", f"review runs do not support action {action.name!r}")

    def _post_review(self, ctx: ControlContext, loaded: ReviewLoaded, action: PostReview, now: datetime) -> Outcome:
        """Post a review's verdict on the PR through the forge, then complete the run with it.

        A vendor review's report, or (on a hosted forge) a script review's exit-code verdict with its log as
        the summary. Posted first: a crash in between posts it again on the next look rather than losing it.
        """
        facts, snap = loaded.facts, loaded.snapshot
        if not isinstance(snap, ReviewRunSnapshot):
            return Outcome("error", "no review to post")
        report = snap.report if facts.structured else self._script_report(ctx, loaded, snap)
        if report is None:
            return Outcome("error", "no review report to post")
        def redact(text: str) -> str:
            return ctx.redact(text, loaded.workspace_id, facts.repo_id)

        summary = redact(report.summary.strip() or f"review agent: {report.verdict}")[:COMMENT_MAX_CHARS]
        lines = tuple(LineComment(path=c.path, line=c.line, body=redact(c.body)) for c in report.comments)
        forge = ctx.forge_for(facts.forge_kind)
        pr = forge.get_pr(facts.repo_id, facts.pr_number)
        text = "\n".join([summary, *(c.as_text() for c in lines)])
        if pr.state == "open" and pr.head_sha == facts.head_sha:
            forge.submit_review(facts.repo_id, facts.pr_number, verdict=report.verdict, comments=summary,
                                author=f"review-agent:{facts.agent_type}", line_comments=lines)
        else:  # a review of a head the PR no longer has must not pass for a review of the new one
            text = review_comment(text, f"not posted: the pull request is {pr.state} at {pr.head_sha[:10]} now")
        ok = write_transition(ctx, self, loaded, to=action.to, reason=action.reason, event="review_" + report.verdict,
                              patch={"verdict": report.verdict, "comments": text[:COMMENT_MAX_CHARS], "error": None},
                              clear_intent=False, now=now)
        if ok:
            self.after_commit(ctx, loaded, action)
        return Outcome("applied" if ok else "stale")

    def _script_report(self, ctx: ControlContext, loaded: ReviewLoaded, snap: ReviewRunSnapshot) -> ReviewReport:
        """A script review's verdict (from its exit code) as a report: its review file's summary and line
        comments when it wrote one, else its log."""
        code = snap.process.exit_code if snap.process is not None else None
        found = read_verdict(code, snap.verdict_file)
        extra = snap.report
        if extra is not None and extra.summary.strip():
            text = extra.summary.strip()
        else:
            with ctx.db.read() as session:
                text = "\n".join(logs.attempt_lines(session, KIND, loaded.run.id, loaded.run.attempts)).strip()
        if found.note:
            text = review_comment(text, found.note)
            text = text[-COMMENT_MAX_CHARS:]
        return ReviewReport(verdict=found.verdict, summary=text, comments=extra.comments if extra else ())

    def on_transition(self, ctx: ControlContext, session: Session, loaded: ReviewLoaded, to_state: str,
                      now: datetime) -> None:
        """A finished review becomes a review on the PR, in the same transaction; the task looks at once."""
        facts = loaded.facts
        # A vendor review, and any review on a hosted forge, was posted through the forge (`_post_review`).
        if to_state == "completed" and not facts.structured and facts.pr_id is not None:
            snap = loaded.snapshot
            code = snap.process.exit_code if snap.process is not None else None
            found = read_verdict(code, snap.verdict_file if isinstance(snap, ReviewRunSnapshot) else None)
            verdict = found.verdict
            lines = logs.attempt_lines(session, KIND, loaded.run.id, loaded.run.attempts)
            text = "\n".join(lines).strip()
            if found.note:
                text = review_comment(text, found.note)
            extra = snap.report if isinstance(snap, ReviewRunSnapshot) else None
            if extra is not None and extra.comments:  # a script review's line comments, as the local forge keeps them
                text = "\n".join([text, *(LineComment(c.path, c.line, c.body).as_text() for c in extra.comments)])
            comments = ctx.redact(text[-COMMENT_MAX_CHARS:] if found.note else text[:COMMENT_MAX_CHARS],
                                  loaded.workspace_id, facts.repo_id)
            runs.cas_update(session, KIND, loaded.run.id, None, {"verdict": verdict, "comments": comments}, now=now)
            pull_requests.add_review(session, workspace_id=loaded.workspace_id, pr_id=facts.pr_id,
                                     head_sha=facts.head_sha, verdict=verdict, comments=comments,
                                     author=f"review-agent:{facts.agent_type}")
            if verdict == "approve":  # requested changes reach the task's timeline with the resume they cause
                runs.record_event(session, workspace_id=loaded.workspace_id, kind="repo_task", run_id=facts.task_id,
                                  event="approved", from_state=None, to_state=None,
                                  reason=f"review agent run #{loaded.run.id} approved {facts.head_sha[:10]}", now=now)
        if to_state in self.terminal:
            queue.enqueue(session, "repo_task", facts.task_id, loaded.workspace_id, reason=f"review {to_state}")

    def after_commit(self, ctx: ControlContext, loaded: ReviewLoaded, action: Any) -> None:
        if getattr(action, "to", None) not in self.terminal:
            return
        with ctx.db.read() as session:
            path = reviews.worktree_path(session, loaded.run.id)
            repo = repo_tasks.get_repo(session, loaded.facts.repo_id)
        if path and repo is not None and Path(path).name.startswith("review-"):
            try:
                ReviewLayout(Path(path)).remove()
            except Exception:
                log.exception("review_checkout_cleanup_failed", run=loaded.run.id)
