"""Repo tasks: snapshot building and the side effects of the repo decision (worktrees, PRs, merges)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from optio.control import processes, prompt_templates, task_messages
from optio.control.admission import admit_repo_task
from optio.control.context import ControlContext
from optio.control.executor import write_transition
from optio.control.handlers import Loaded, Outcome
from optio.control.kinds.job import active_process_count, executor_error_policy, run_view
from optio.control.ports import Forge, MergeRefused, PullRequestState, Worktrees
from optio.domain import prompts
from optio.domain.actions import Action, LaunchReview, MergePullRequest, OpenPullRequest, Provision
from optio.domain.backoff import repo_slot_cap
from optio.domain.reconcile.repo import WATCH_RECHECK_S, decide_repo_task
from optio.domain.repo_snapshot import (
    DependencyView,
    PullRequestView,
    RepoTaskSnapshot,
    RepoView,
    ReviewRunView,
)
from optio.domain.snapshot import Capacity
from optio.domain.states import TERMINAL, RunKind
from optio.errors import AppError
from optio.forge.git import branch_for_task
from optio.observability import metrics
from optio.store import pull_requests, queue, repo_tasks, runs
from optio.store.models import Repo
from optio.store.session import Session
from optio.store.tickets import close_for_task

log = structlog.get_logger("optio.repo_tasks")

KIND = RunKind.REPO_TASK.value
ACTIVE_STATES = ("provisioning", "running")
# How old a fetch of the repo cache may be when a task's PR is opened. Nothing there needs the remote as of this
# instant: the ahead check holds against any later base, and the push is leased against the tip seen, so a push
# someone made meanwhile is refused, never lost. A burst of tasks then shares one fetch.
BASE_FETCH_MAX_AGE_S = 2.0
CI_TAIL_CHARS = 20_000
# The author the review agent's verdicts carry on the pull request (see kinds/review.py): anything else is a person.
REVIEW_AGENT_AUTHOR = "review-agent:"
# Agents that commit (or rebase) in their worktree need an identity; the agent gets its own, so its
# commits are told apart from the ones Optio makes for it.
AGENT_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Optio Agent", "GIT_AUTHOR_EMAIL": "agent@optio.invalid",
    "GIT_COMMITTER_NAME": "Optio Agent", "GIT_COMMITTER_EMAIL": "agent@optio.invalid",
}


@dataclass(frozen=True)
class RepoAt:
    """A repo as the ports see it: its id and where its remote is."""

    id: int
    remote_url: str


@dataclass(frozen=True)
class RepoTaskFacts:
    """What a repo task's side effects need beyond its snapshot: its repo, agent, PR and worktree."""

    repo_id: int
    remote_url: str
    forge_kind: str
    default_branch: str
    agent_type: str
    agent_config: dict[str, Any]
    secret_names: list[str]
    session_id: str | None
    worktree: str | None
    review_agent_type: str | None
    review_agent_config: dict[str, Any]
    review_prompt: str
    pr_number: int | None
    pr_id: int | None  # the forge's own id of the PR, where it has one (the local forge's row)
    pr_title: str | None
    ticket: str | None = None  # the ticket the task closes, as the squash commit names it
    repo_name: str = ""
    original_prompt: str = ""  # the task's prompt before the task template (the snapshot has it after)


RepoLoaded = Loaded[RepoTaskSnapshot, RepoTaskFacts]


def forge_of(ctx: ControlContext, loaded: RepoLoaded) -> Forge:
    """The forge the task's repo lives on (resolved per repo, so repos on different forges coexist)."""
    return ctx.forge_for(loaded.facts.forge_kind)


def worktrees_of(ctx: ControlContext, loaded: RepoLoaded) -> Worktrees:
    return ctx.worktrees_for(RepoAt(loaded.facts.repo_id, loaded.facts.remote_url))


def worktree_path(ctx: ControlContext, task_id: int) -> Path:
    return ctx.data_dir / "worktrees" / f"task-{task_id}"


def pr_view(state: PullRequestState) -> PullRequestView:
    """The decision's view of the task's PR, from what its forge reports."""
    pr, ci, review = state.info, state.ci, state.review
    ci_status: str | None = None
    ci_tail = ""
    if state.ci_required:
        ci_status = "pending" if ci is None else ci.status
        if ci is not None and ci.status in ("failing", "error"):
            ci_tail = ci.output[-CI_TAIL_CHARS:]
    status = None
    if review is not None:
        status = "approved" if review.verdict == "approve" else "changes_requested"
    return PullRequestView(
        number=pr.number, state=pr.state, head_sha=pr.head_sha,  # type: ignore[arg-type]
        base_sha=pr.base_sha, mergeable=pr.mergeable,
        conflicting_files=tuple(pr.conflicting_files or ()), ci_status=ci_status,  # type: ignore[arg-type]
        ci_output_tail=ci_tail, ci_base_sha=ci.base_sha if ci is not None else None,
        review_status=status,  # type: ignore[arg-type]
        ci_failure_kind=ci.failure_kind if ci is not None else None,
        ci_duration_s=ci.duration_s if ci is not None else None,
        review_id=review.id if review else None,
        review_comments=(review.comments,) if review and review.comments else (),
        review_head_sha=review.head_sha if review else None,
        review_by_person=review is not None and not review.author.startswith(REVIEW_AGENT_AUTHOR),
    )


def repo_cap(ctx: ControlContext, repo: Repo, now: datetime) -> int:
    """A repo's concurrency cap, lowered to one while a vendor is rate limiting its agents."""
    return repo_slot_cap(repo.max_concurrent, ctx.settings.max_concurrent_per_repo, repo.rate_limited_until, now)


# States whose decision reads the repo's capacity: the queue's, and those about to join it (how far back
# a task lands decides how soon it needs its first look there).
_CAPACITY_STATES = frozenset({"queued", "pending", "waiting_on_deps"})


class RepoTaskHandler:
    kind = KIND
    terminal = TERMINAL[RunKind.REPO_TASK]

    def build_snapshot(self, ctx: ControlContext, session: Session, run_id: int, workspace_id: int,
                       now: datetime) -> RepoLoaded | None:
        row = repo_tasks.load(session, run_id, workspace_id)
        if row is None:
            return None
        task, repo = row
        # An ended task nobody asked anything of is only ever left as it is (a person's intent moves it on):
        # its look skips the dependencies and the forge. Its own merge, for one, wakes it once more.
        settled = task.state in self.terminal and task.control_intent is None
        deps = () if settled else tuple(DependencyView(id=dep_id, state=state)
                                        for dep_id, state in repo_tasks.dependencies(session, task.id))
        capacity = Capacity()
        if task.state in _CAPACITY_STATES:
            in_repo = repo_tasks.active_in_repo(session, repo.id)
            # Queued tasks of the repo that come first (higher priority, then older) hold their claim on the
            # next free slots, so --priority decides who starts, not whoever is looked at first.
            ahead = repo_tasks.queued_ahead(session, task)
            capacity = Capacity(
                running_global=active_process_count(session), max_global=ctx.settings.max_concurrent_runs,
                running_scope=in_repo + ahead, max_scope=repo_cap(ctx, repo, now), ahead=ahead,
            )
        process = None
        if task.state == "running":
            process = processes.process_view(ctx, processes.latest_process(session, KIND, task.id))
        # Only a task that got as far as a branch can have a PR; its forge says which and in what state.
        pr_state = ctx.forge_for(repo.forge).pr_for_task(repo.id, task.id) if task.branch and not settled else None
        pr = pr_state.info if pr_state is not None else None
        policy = repo_tasks.review_policy(repo, task)
        # The review agent's last run is only read by the merge gate of a repo that has one.
        review = (repo_tasks.latest_review_run(session, task.id)
                  if pr is not None and policy.review_agent_type is not None else None)
        ticket = repo_tasks.ticket_label(task)
        # What the agent is asked: the task's prompt through the task template (repo, workspace, built-in).
        # Only a state that can start an agent reads it (provisioning starts one, running retries, pr_opened
        # and needs_attention resume); the queue's states and the ended ones skip the template's queries.
        prompt = ""
        if task.state not in _CAPACITY_STATES and task.state not in self.terminal:
            prompt = prompt_templates.render(session, workspace_id, "task", repo.id, {
                "prompt": task.prompt, "title": task.title, "task_id": task.id, "repo": repo.name,
                "base_branch": repo.default_branch, "branch": branch_for_task(task.id), "ticket": ticket})
        snap = RepoTaskSnapshot(
            now=now,
            run=run_view(task, RunKind.REPO_TASK),
            title=task.title,
            prompt=prompt,
            base_branch=repo.default_branch,
            repo=RepoView(require_approval=policy.require_approval, auto_merge=policy.auto_merge,
                          has_review_agent=policy.review_agent_type is not None, max_concurrent=repo.max_concurrent),
            max_retries=task.max_retries,
            max_auto_resumes=ctx.settings.max_auto_resumes,
            dependencies=deps,
            process=process,
            capacity=capacity,
            pr=pr_view(pr_state) if pr_state is not None else None,
            review_run=ReviewRunView(id=review.id, state=review.state, head_sha=review.head_sha,
                                     verdict=review.verdict) if review else None,  # type: ignore[arg-type]
            worktree_ready=task.worktree_ready,
            resume_count=task.resume_count,
            human_resumes=task.human_resumes,
            resume_keys=frozenset(task.resume_keys or ()),
            stall_threshold_s=ctx.settings.stall_threshold_s,
            provisioning_since=task.provisioning_since,
            executor_errors=executor_error_policy(ctx),
        )
        facts = RepoTaskFacts(
            repo_id=repo.id, remote_url=repo.remote_url, forge_kind=repo.forge, default_branch=repo.default_branch,
            agent_type=task.agent_type, agent_config=dict(task.agent_config or {}),
            secret_names=sorted(set(task.secret_names or []) | set(repo.secret_names or [])),
            session_id=task.agent_session_id, worktree=task.worktree_path,
            review_agent_type=policy.review_agent_type, review_agent_config=policy.review_agent_config,
            review_prompt=policy.review_prompt, pr_number=pr.number if pr else None, pr_id=pr.id if pr else None,
            pr_title=pr.title if pr else None, ticket=ticket, repo_name=repo.name, original_prompt=task.prompt,
        )
        return Loaded(workspace_id=workspace_id, snapshot=snap, facts=facts)

    def decide(self, snapshot: Any) -> Action:
        return decide_repo_task(snapshot)

    def admit(self, ctx: ControlContext, session: Session, loaded: RepoLoaded, to_state: str) -> bool:
        """Leaving the queue takes a slot: re-check the caps inside that transition's own transaction."""
        if not (loaded.run.state == "queued" and to_state == "provisioning"):
            return True
        repo = repo_tasks.get_repo(session, loaded.facts.repo_id)
        if repo is None:
            return True
        return admit_repo_task(session, loaded.run.id, repo.id, ctx.settings.max_concurrent_runs,
                               repo_cap(ctx, repo, loaded.snapshot.now))

    def launch(self, ctx: ControlContext, loaded: RepoLoaded, action: Any, attempt: int) -> None:
        facts = loaded.facts
        task_id = loaded.run.id
        env = ctx.secret_env(loaded.workspace_id, facts.secret_names, repo_id=facts.repo_id, run=(KIND, task_id))
        env.update({"OPTIO_TASK_ID": str(task_id), "OPTIO_BRANCH": branch_for_task(task_id),
                    "OPTIO_BASE_BRANCH": facts.default_branch, **AGENT_GIT_IDENTITY})
        if action.resume_reason:
            env["OPTIO_RESUME_REASON"] = action.resume_reason
        cwd = Path(facts.worktree or worktree_path(ctx, task_id))

        def sync_origin() -> None:
            # The clone's origin/* are Optio's copy of the cache's: bring them current so a resumed agent's
            # `git fetch origin && git rebase origin/<base>` sees the base as it is now. A resume fetches the
            # cache first: on a hosted forge nothing else fetches when the base moves there.
            cache = worktrees_of(ctx, loaded)
            if action.resume_reason:
                try:
                    cache.fetch()
                except Exception:
                    log.warning("resume_fetch_failed", task=task_id)
            cache.sync_clone(cwd)

        processes.launch(
            ctx,
            processes.LaunchRequest(
                kind=KIND, run_id=task_id, workspace_id=loaded.workspace_id, attempt=attempt,
                agent_type=facts.agent_type, agent_config=facts.agent_config,
                prompt=task_messages.into_prompt(ctx, workspace_id=loaded.workspace_id, task_id=task_id,
                                                 attempt=attempt, prompt=action.prompt or loaded.snapshot.prompt),
                cwd=cwd, env=env,
                timeout_s=facts.agent_config.get("timeout_s") or ctx.settings.agent_timeout_s,
                resume_session_id=facts.session_id if action.resume_reason else None, prepare=sync_origin,
                repo_id=facts.repo_id, live_input=True,
            ),
        )

    # --- kind-specific actions -------------------------------------------------------------------------

    def apply_special(self, ctx: ControlContext, loaded: RepoLoaded, action: Any, now: datetime) -> Outcome:
        if isinstance(action, Provision):
            return self._provision(ctx, loaded, action, now)
        if isinstance(action, OpenPullRequest):
            return self._open_pr(ctx, loaded, action, now)
        if isinstance(action, LaunchReview):
            return self._launch_review(ctx, loaded, action, now)
        if isinstance(action, MergePullRequest):
            return self._merge(ctx, loaded, action, now)
        return Outcome("error", f"repo tasks do not support action {action.name!r}")

    def _provision(self, ctx: ControlContext, loaded: RepoLoaded, action: Provision, now: datetime) -> Outcome:
        task_id = loaded.run.id
        path = worktree_path(ctx, task_id)
        branch = branch_for_task(task_id)
        if loaded.run.state != "provisioning":
            # The worker looks again as soon as the worktree is ready (a chained reconcile) and that look's
            # action asks for the next one; this follow-up is only the backstop should it not come (a failure
            # here enqueues the task itself, and a worker that dies leaves the item to come back after its
            # lease). At once, it would bring the task back for a look that only finds its agent running.
            ok = write_transition(ctx, self, loaded, to="provisioning", reason=action.reason, event="provisioning",
                                  patch={"provisioning_since": now, "branch": branch, "worktree_path": str(path),
                                         "worktree_ready": False},
                                  clear_intent=False, now=now, recheck_after_s=WATCH_RECHECK_S)
            if not ok:
                return Outcome("stale")
        cache = worktrees_of(ctx, loaded)
        # A failure here (a base branch that does not exist, an unreachable remote) is an executor error:
        # recorded, retried with backoff from the queue (not from a run slot), and given up after a bound.
        cache.ensure()
        # A fetch made after this call: a task must start from the base as it is now, with whatever it depends on
        # merged (a fetch from a moment ago may predate its parent's merge on a hosted forge).
        cache.add_worktree(path, branch, loaded.facts.default_branch)
        with ctx.db.write() as session:
            # Guarded by the state, not the version: output or an intent may have bumped the version meanwhile.
            marked = runs.cas_update(session, KIND, task_id, None, {"worktree_ready": True,
                                                                   "worktree_path": str(path), "branch": branch,
                                                                   "error": None},
                                     now=now, expected_state="provisioning")
            # Marked: the worker looks again at once (chained), so this is the backstop; not marked: a look now.
            queue.enqueue(session, KIND, task_id, loaded.workspace_id, reason="worktree ready",
                          delay_s=WATCH_RECHECK_S if marked else 0.0)
            ended = not marked and repo_tasks.state_of(session, task_id) in self.terminal
        if ended:
            # The task ended (e.g. cancelled) while git was busy, so its cleanup may have run before the
            # worktree existed. A task that merely moved on (a parallel re-provision won) keeps it.
            cache.remove_worktree(path)
        return Outcome("applied" if marked else "stale")

    def _open_pr(self, ctx: ControlContext, loaded: RepoLoaded, action: OpenPullRequest, now: datetime) -> Outcome:
        """Commit what the agent left, push, open or update the PR; no changes at all completes the task."""
        task_id = loaded.run.id
        snap: RepoTaskSnapshot = loaded.snapshot
        forge = forge_of(ctx, loaded)
        cache = worktrees_of(ctx, loaded)
        path = Path(loaded.facts.worktree or worktree_path(ctx, task_id))
        branch = branch_for_task(task_id)
        # The clone's HEAD: the commit just made, or what the agent committed itself (read once, used below).
        head = cache.commit_all(path, prompts.task_commit_message(snap.title, task_id)) or cache.head_sha(path)
        cache.fetch(max_age_s=BASE_FETCH_MAX_AGE_S)
        if cache.commits_ahead(path, f"origin/{loaded.facts.default_branch}", head=head) == 0 and snap.pr is None:
            ok = write_transition(ctx, self, loaded, to="completed", reason="agent made no changes; no pull request",
                                  event="completed", patch={"note": "agent finished without changing anything",
                                                           "error": None},
                                  clear_intent=False, now=now)
            if ok:
                self.cleanup(ctx, loaded)
            return Outcome("applied" if ok else "stale")
        head_sha = cache.push_branch(path, branch, head=head)
        body = prompts.pull_request_body(loaded.facts.original_prompt or snap.prompt, task_id)
        info = forge.open_or_update_pr(loaded.facts.repo_id, task_id, head_branch=branch, head_sha=head_sha,
                                       title=snap.title, body=body)
        event = "pr_updated" if snap.pr is not None else "pr_opened"
        ok = write_transition(ctx, self, loaded, to="pr_opened",
                              reason=f"pushed {head_sha[:10]} to #{info.number}", event=event,
                              patch={"error": None}, clear_intent=False, now=now)
        return Outcome("applied" if ok else "stale")

    def _launch_review(self, ctx: ControlContext, loaded: RepoLoaded, action: LaunchReview, now: datetime) -> Outcome:
        facts = loaded.facts
        with ctx.db.write() as session:
            if repo_tasks.live_review_exists(session, loaded.run.id, action.head_sha):
                return Outcome("applied", "review already launched")
            if facts.pr_number is None:
                return Outcome("error", "the task has no pull request a review agent can review")
            prompt = prompt_templates.render(session, loaded.workspace_id, "review", facts.repo_id, {
                "review_prompt": facts.review_prompt, "pr_number": facts.pr_number, "pr_title": facts.pr_title or "",
                "base_branch": facts.default_branch, "head_sha": action.head_sha,
                "task_prompt": loaded.snapshot.prompt, "task_title": loaded.snapshot.title,
                "task_id": loaded.run.id, "repo": facts.repo_name})
            review_id = repo_tasks.add_review_run(
                session, workspace_id=loaded.workspace_id, task_id=loaded.run.id, pr_id=facts.pr_id,
                repo_id=facts.repo_id, number=facts.pr_number, head_sha=action.head_sha,
                agent_type=facts.review_agent_type or "script", agent_config=facts.review_agent_config, prompt=prompt)
            runs.record_event(session, workspace_id=loaded.workspace_id, kind=KIND, run_id=loaded.run.id,
                              event="review_requested", from_state=loaded.run.state, to_state=loaded.run.state,
                              reason=f"review agent run #{review_id} on {action.head_sha[:10]}", now=now)
            queue.enqueue(session, RunKind.PR_REVIEW.value, review_id, loaded.workspace_id, reason="created")
        return Outcome("applied")

    def _merge(self, ctx: ControlContext, loaded: RepoLoaded, action: MergePullRequest, now: datetime) -> Outcome:
        snap: RepoTaskSnapshot = loaded.snapshot
        assert snap.pr is not None
        message = prompts.squash_merge_message(snap.title, snap.pr.number, loaded.run.id, loaded.facts.ticket)
        forge = forge_of(ctx, loaded)
        timer = metrics.MERGE_SECONDS.labels(str(getattr(forge, "name", "unknown")), "merged").time()
        try:
            with timer:
                merged_sha = forge.merge(loaded.facts.repo_id, snap.pr.number, head_sha=action.head_sha,
                                         message=message)
        except MergeRefused as exc:
            # The forge said no for a reason a person must fix (a protected branch's rule, a missing review):
            # the task waits for them with the forge's own words, and nothing retries the merge by itself.
            why = f"the forge refused the merge: {exc.reason}"
            ok = write_transition(ctx, self, loaded, to="needs_attention", reason=why, event="needs_attention",
                                  patch={"error": why}, clear_intent=False, now=now)
            return Outcome("applied" if ok else "stale", why)
        except AppError as exc:
            return Outcome("deferred", exc.message)  # the forge enqueued the task with the new facts
        ok = write_transition(ctx, self, loaded, to="completed", reason=f"squash-merged as {merged_sha[:10]}",
                              event="merged", patch={"error": None}, clear_intent=False, now=now)
        if ok:
            self.cleanup(ctx, loaded)
        return Outcome("applied" if ok else "stale")

    # --- hooks ----------------------------------------------------------------------------------------

    def on_transition(self, ctx: ControlContext, session: Session, loaded: RepoLoaded, to_state: str,
                      now: datetime) -> None:
        task_id = loaded.run.id
        if to_state == "completed":
            task = repo_tasks.get_task(session, task_id)
            if task is not None:
                close_for_task(session, task, prompts.ticket_close_note(task_id))
        if to_state in self.terminal:
            for dep_task, ws in repo_tasks.dependents(session, task_id):
                queue.enqueue(session, KIND, dep_task, ws, reason=f"dependency #{task_id} {to_state}")
            if to_state == "cancelled" and loaded.facts.pr_id:
                pull_requests.close_if_open(session, loaded.facts.pr_id, now)
        # A running task whose agent's end is recorded gave its slot up then, and its exit woke the next in line.
        if loaded.run.state in ACTIVE_STATES and to_state not in ACTIVE_STATES and not (
                loaded.run.state == "running" and repo_tasks.agent_ended(session, task_id, loaded.run.attempts)):
            # Wake as many of the next queued tasks as there are free slots now: each of them can start, and
            # waking more only has them look and go back to waiting. They go ahead of the queue's routine
            # looks: the slot stays idle until they are looked at. The count follows the rate-limit rule, as
            # an agent's exit does (a task in these states carries no look at the repo's capacity).
            repo_tasks.wake_queued_for(session, task_id, ctx.settings.max_concurrent_per_repo, now,
                                       except_task=task_id)
        elif loaded.run.state == "queued" and to_state == "provisioning":
            # A task leaving the queue passes the line on while slots are still free (its own is counted
            # now): a slot whose wake went to a task that another slot had already started is not lost. Its
            # look read the cap (one while a vendor rate-limits the repo): a queued task's look always does.
            cap = loaded.snapshot.capacity.max_scope
            if cap is not None:
                repo_tasks.wake_queued(session, loaded.facts.repo_id, cap, at_least=0)

    def after_commit(self, ctx: ControlContext, loaded: RepoLoaded, action: Any) -> None:
        to = getattr(action, "to", None)
        if to == "cancelled" and loaded.facts.pr_number is not None and loaded.facts.pr_id is None:
            # A PR the forge keeps elsewhere (the local forge's closed with the cancel itself, just above).
            try:
                forge_of(ctx, loaded).close(loaded.facts.repo_id, loaded.facts.pr_number)
            except Exception:
                log.exception("pr_close_failed", task=loaded.run.id)
        if to in self.terminal:
            pr = loaded.snapshot.pr
            # A failed task whose PR stays open keeps its branch for a person; a cancel closed the PR above.
            left_open = to == "failed" and pr is not None and pr.state == "open"
            self.cleanup(ctx, loaded, delete_branch=to in ("cancelled", "failed") and not left_open)

    def cleanup(self, ctx: ControlContext, loaded: RepoLoaded, *, delete_branch: bool = False) -> None:
        """Remove the task's worktree once the task is over (it is kept while the PR is open), and with
        ``delete_branch`` its branch on the remote (a merge deletes it through the forge)."""
        path = loaded.facts.worktree
        if not path:
            return
        try:
            worktrees_of(ctx, loaded).remove_worktree(Path(path))
        except Exception:
            log.exception("worktree_cleanup_failed", task=loaded.run.id, path=path)
        if delete_branch:
            try:
                worktrees_of(ctx, loaded).delete_remote_branch(branch_for_task(loaded.run.id))
            except Exception:
                log.exception("branch_cleanup_failed", task=loaded.run.id)


def sweep_finished_worktrees(ctx: ControlContext) -> int:
    """On start: remove the worktrees of tasks that ended while their cleanup had not run (a killed server).

    A task's worktree is removed after the write that ends it; a crash in between would keep it for good.
    """
    root = ctx.data_dir / "worktrees"
    if not root.is_dir():
        return 0
    removed = 0
    for path in root.iterdir():
        name, _, number = path.name.partition("-")
        if name != "task" or not number.isdigit():
            continue
        with ctx.db.read() as session:
            task = repo_tasks.get_task(session, int(number))
            repo = repo_tasks.get_repo(session, task.repo_id) if task is not None else None
            ended = task is not None and task.state in TERMINAL[RunKind.REPO_TASK]
        if not ended or repo is None:
            continue
        try:
            ctx.worktrees_for(RepoAt(repo.id, repo.remote_url)).remove_worktree(path)
            removed += 1
        except Exception:
            log.exception("worktree_cleanup_failed", task=int(number), path=str(path))
    return removed
