"""The decision for repo tasks: one action from a frozen snapshot, no I/O, no clock.

Order of precedence (the first rule that applies wins):

1. A read error: defer with a growing backoff (`count_attempt=True`).
2. Backoff guard: while `run.reconcile_backoff_until` is in the future, do nothing but ask for a recheck.
3. Control intents set by a person:
   - `cancel`: from any non-terminal state to `cancelled`, killing the agent when one may be running.
   - `retry`: from `failed`, `cancelled` or `needs_attention` back to `queued` with the attempt and resume
     counters reset; from `needs_attention` with a pull request still open, back to `pr_opened` instead,
     so the feedback loop picks up where it stopped with a fresh resume budget.
   - `resume`: from `needs_attention` or `pr_opened` with an open pull request, start the agent again with
     a "resumed by a person" prompt. It bypasses the automatic resume caps: a person asked for it.
   - Any intent that does not apply to the current state is cleared.
4. What the state asks for:
   - `pending` / `waiting_on_deps`: a failed or cancelled dependency fails the task; all dependencies
     completed queues it; otherwise `pending` moves to `waiting_on_deps` and `waiting_on_deps` rechecks.
   - `queued`: wait while capacity is full, else provision a worktree.
   - `provisioning`: start the agent once the worktree is ready; re-provision (idempotent, same state) while
     it is not; after `PROVISION_TIMEOUT` the attempt fails.
   - `running`: watch the agent process like a job does. A failed attempt (never started, vanished,
     timed out, could not spawn, non-zero exit, stalled) is retried with backoff while attempts remain,
     else the task fails; once a pull request exists a failed attempt goes to `needs_attention` instead,
     so the work in the pull request is never thrown away. Exit 0 opens or updates the pull request.
   - `pr_opened`: merged completes; closed fails; a CI run that could not test anything (command not found
     or not executable, timed out: CI status `error`) goes to `needs_attention` with its output, never to
     the agent; then, in this order, conflicts, failing CI and requested changes each resume the agent
     with the evidence; pending CI waits; a configured review agent runs
     once per head; an approved (or approval-free) pull request is merged when auto-merge is on.
   - `needs_attention`, `completed`, `failed`, `cancelled`: nothing; only intents move them.

Every automatic resume passes one gate. Its key names the exact failure (`conflict:<head>`,
`ci_failed:<head>:<base>` when CI ran on the merge onto a base tip, else `ci_failed:<head>`,
`changes_requested:<review id>`); a key already in `resume_keys` means the agent had
its go at this failure and did not move the head, and `resume_count >= max_auto_resumes` means the loop
has run long enough. Either way the task goes to `needs_attention`, never a silent stop or an endless loop.
Changes a person requested in a review pass the same key check but are counted in `human_resumes`, not
against the automatic cap (nor stopped by it), like a `resume` intent.

Every agent start (first run, retry or resume) bumps `attempts`, so a process left over from an earlier
start can never be mistaken for the current one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from optio.domain.actions import (
    Action,
    ClearControlIntent,
    DeferWithBackoff,
    LaunchReview,
    MergePullRequest,
    Noop,
    OpenPullRequest,
    Provision,
    StartAgent,
    Transition,
)
from optio.domain.backoff import read_error_delay
from optio.domain.executor_errors import decide_executor_error
from optio.domain.process_health import WATCH_RECHECK_S as WATCH_RECHECK_S
from optio.domain.process_health import assess, never_started
from optio.domain.repo_snapshot import PullRequestView, RepoTaskSnapshot
from optio.domain.resume_prompts import ResumeReason, build_resume_prompt
from optio.domain.retry import Failure, decide_retry
from optio.domain.snapshot import ProcessStatus
from optio.domain.states import PrReviewState, RunKind, can_transition
from optio.domain.states import RepoTaskState as S

CAPACITY_RECHECK_S = 2.0
# A queued task whose turn is not next only needs a backstop look: a freed slot wakes the next in line.
CAPACITY_BACKSTOP_S = 30.0
DEPS_RECHECK_S = 30.0
PR_RECHECK_S = 60.0
PROVISION_TIMEOUT = timedelta(minutes=10)
INTERRUPT_KILL_WAIT = timedelta(seconds=2)

_TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
_RETRYABLE = frozenset({S.FAILED, S.CANCELLED, S.NEEDS_ATTENTION})
_RESUMABLE = frozenset({S.NEEDS_ATTENTION, S.PR_OPENED})
_DEP_FAILED = frozenset({S.FAILED, S.CANCELLED})
_REVIEW_ACTIVE = frozenset({PrReviewState.QUEUED, PrReviewState.RUNNING})


def _short(sha: str) -> str:
    return sha[:12]


def _open_pr(snap: RepoTaskSnapshot) -> PullRequestView | None:
    return snap.pr if snap.pr is not None and snap.pr.state == "open" else None


def _needs_attention(why: str) -> Transition:
    return Transition(to=S.NEEDS_ATTENTION, reason=why, patch={"error": why}, event="needs_attention")


# --- control intents ---------------------------------------------------------------------------------


def _agent_may_run(snap: RepoTaskSnapshot) -> bool:
    proc = snap.process
    if snap.run.state == S.RUNNING:
        return True
    return proc is not None and proc.status in (ProcessStatus.STARTING, ProcessStatus.ALIVE)


def _decide_intent(snap: RepoTaskSnapshot, intent: str) -> Action:
    run = snap.run
    state = run.state
    if intent == "cancel" and state not in _TERMINAL:
        return Transition(
            to=S.CANCELLED,
            reason="cancel requested",
            kill_process=_agent_may_run(snap),
            clear_intent=True,
            event="cancelled",
        )
    if intent == "retry" and state in _RETRYABLE:
        reset = {"resume_count": 0, "resume_keys": (), "error": None, "reconcile_backoff_until": None}
        pr = _open_pr(snap)
        if state == S.NEEDS_ATTENTION and pr is not None:
            return Transition(
                to=S.PR_OPENED,
                reason=f"retry requested: watching PR #{pr.number} again with a fresh resume budget",
                patch=reset,
                clear_intent=True,
                event="retried",
            )
        return Transition(
            to=S.QUEUED,
            reason="retry requested",
            patch={"attempts": 0, **reset},
            clear_intent=True,
            event="retried",
        )
    if intent == "resume" and state in _RESUMABLE:
        pr = _open_pr(snap)
        if pr is not None:
            prompt = build_resume_prompt(
                title=snap.title,
                original_prompt=snap.prompt,
                reason="manual",
                base_branch=snap.base_branch,
                note=snap.intent_note,
            )
            return StartAgent(
                to=S.RUNNING,
                reason=f"resumed by a person on pull request #{pr.number}",
                prompt=prompt,
                resume_reason="manual",
                patch={"attempts": run.attempts + 1, "human_resumes": snap.human_resumes + 1},
                clear_intent=True,
                event="resumed",
            )
        return ClearControlIntent(reason="resume ignored: the task has no open pull request")
    if intent == "interrupt" and (state == S.RUNNING or state in _RESUMABLE):
        return _interrupt(snap)
    return ClearControlIntent(reason=f"{intent} ignored: task is {state}")


def _interrupt(snap: RepoTaskSnapshot) -> Action:
    """A person's message that cannot wait: stop the running agent, then resume it at once with the message.

    Two steps, each its own CAS write: the kill keeps the intent, so once the process is gone the same intent
    starts the next attempt (with the person's queued messages in its prompt), counted as a person's resume.
    """
    run = snap.run
    proc = snap.process
    if run.state == S.RUNNING and proc is not None and proc.status in (ProcessStatus.STARTING, ProcessStatus.ALIVE):
        # The kill takes a moment: look again once it is done, not at every wake-up until then.
        return Transition(to=S.RUNNING, reason="interrupted by a person: stopping the agent to resume it with "
                          "their message", kill_process=True, event="interrupted",
                          patch={"reconcile_backoff_until": snap.now + INTERRUPT_KILL_WAIT})
    prompt = build_resume_prompt(title=snap.title, original_prompt=snap.prompt, reason="manual",
                                 base_branch=snap.base_branch, note=snap.intent_note)
    return StartAgent(
        to=S.RUNNING,
        reason="resumed at once with a person's message (not counted as an automatic resume)",
        prompt=prompt,
        resume_reason="manual",
        patch={"attempts": run.attempts + 1, "human_resumes": snap.human_resumes + 1},
        clear_intent=True,
        event="resumed",
    )


# --- failed attempts -----------------------------------------------------------------------------------


def _failed_attempt(snap: RepoTaskSnapshot, failure: Failure, *, kill: bool = False,
                    before_start: bool = False) -> Action:
    """Retry, fail, or hand to a person once a pull request holds work worth keeping.

    `before_start` marks a failure before the agent was launched (provisioning), which has not bumped
    `attempts` yet; it still has to use up an attempt or a worktree that never gets ready would retry forever.
    """
    run = snap.run
    attempt = run.attempts + 1 if before_start else run.attempts
    patch: dict[str, object] = {"error": failure.why}
    if before_start:
        patch["attempts"] = attempt
    if snap.pr is not None:
        reason = (f"attempt {attempt} failed: {failure.why}; pull request #{snap.pr.number} is kept for a person "
                  "to decide")
        return Transition(to=S.NEEDS_ATTENTION, reason=reason, patch=patch, kill_process=kill, event="needs_attention")
    decision = decide_retry(failure, attempt=attempt, max_retries=snap.max_retries, seed=run.id)
    if decision.outcome == "retry":
        patch["reconcile_backoff_until"] = snap.now + timedelta(seconds=decision.delay_s)
        return Transition(to=S.QUEUED, reason=decision.reason, patch=patch, kill_process=kill,
                          event="retry_scheduled")
    return Transition(to=S.FAILED, reason=decision.reason, patch=patch, kill_process=kill, event="failed")


# --- per state -------------------------------------------------------------------------------------------


def _decide_dependencies(snap: RepoTaskSnapshot) -> Action:
    deps = sorted(snap.dependencies, key=lambda d: d.id)
    for dep in deps:
        if dep.state in _DEP_FAILED:
            why = f"dependency #{dep.id} failed" if dep.state == S.FAILED else f"dependency #{dep.id} was cancelled"
            return Transition(to=S.FAILED, reason=why, patch={"error": why}, event="failed")
    waiting_on = [d.id for d in deps if d.state != S.COMPLETED]
    if not waiting_on:
        # A task with enough queued ahead of it to take every slot is woken when its turn comes; its first
        # look in the queue would only find that out.
        recheck = CAPACITY_BACKSTOP_S if snap.capacity.far_back else 0.0
        return Transition(to=S.QUEUED, reason="dependencies met", event="queued", recheck_after_s=recheck)
    listed = ", ".join(f"#{i}" for i in waiting_on)
    if snap.run.state == S.PENDING:
        return Transition(to=S.WAITING_ON_DEPS, reason=f"waiting on {listed}", event="waiting_on_deps")
    return Noop(reason=f"waiting on {listed}", recheck_after_s=DEPS_RECHECK_S)


def _decide_queued(snap: RepoTaskSnapshot) -> Action:
    if snap.capacity.full:
        recheck = CAPACITY_BACKSTOP_S if snap.capacity.far_back else CAPACITY_RECHECK_S
        return Noop(reason="waiting for capacity", recheck_after_s=recheck)
    return Provision(reason="capacity available: preparing the worktree")


def _decide_provisioning(snap: RepoTaskSnapshot) -> Action:
    run = snap.run
    if snap.worktree_ready:
        return StartAgent(
            to=S.RUNNING,
            reason=f"worktree ready: starting attempt {run.attempts + 1}",
            patch={"attempts": run.attempts + 1},
            event="started",
        )
    since = snap.provisioning_since
    if since is not None and snap.now - since > PROVISION_TIMEOUT:
        minutes = int(PROVISION_TIMEOUT.total_seconds() // 60)
        return _failed_attempt(snap, Failure(why=f"worktree not ready after {minutes} minutes"), before_start=True)
    return Provision(reason="re-provision", to=S.PROVISIONING)


def _decide_running(snap: RepoTaskSnapshot) -> Action:
    health = assess(snap.run, snap.process, now=snap.now, stall_threshold_s=snap.stall_threshold_s)
    if health.outcome == "failed":
        assert health.failure is not None
        if snap.pr is not None and never_started(snap.run, snap.process):
            restart = _restart_lost_resume(snap)
            if restart is not None:
                return restart
        return _failed_attempt(snap, health.failure, kill=health.kill)
    if health.outcome == "succeeded":
        return OpenPullRequest(reason="agent exited 0: pushing the branch")
    return Noop(reason=f"agent {health.outcome}", recheck_after_s=health.recheck_after_s)


def _restart_lost_resume(snap: RepoTaskSnapshot) -> Action | None:
    """A resume whose agent never started (the server stopped in between) is started again, not given up on.

    Its key and counter were recorded with its start, so the gates are read as they were before it; the
    restart records nothing more (the same failure is still resumed at most once). None when the pull
    request's facts no longer call for a resume: then the lost attempt is a failure as before.
    """
    again = _decide_pr_opened(replace(snap, resume_keys=frozenset(), resume_count=0))
    if not isinstance(again, StartAgent):
        return None
    keys = {again.resume_key} if again.resume_key else set(again.patch.get("resume_keys", ())) - {None}
    if not keys or not keys <= snap.resume_keys:
        return None  # the lost start was not this resume
    return replace(again, reason=f"attempt {snap.run.attempts} was lost before its agent started; {again.reason}",
                   resume_key=None, patch={"attempts": snap.run.attempts + 1})


def _resume(snap: RepoTaskSnapshot, *, key: str, reason: ResumeReason, what: str, prompt: str,
            by_person: bool = False) -> Action:
    """The single gate every resume on the pull request's facts passes through.

    `by_person` marks a resume a person asked for (their review requested changes): it still records its key,
    so the same review never resumes the agent twice, but it counts in `human_resumes`, not against the
    automatic cap, and the cap does not stop it.
    """
    if key in snap.resume_keys:
        return _needs_attention(f"{what}, and the agent already had a go at it without moving the head ({key})")
    if by_person:
        return StartAgent(
            to=S.RUNNING,
            reason=f"{what}: resuming the agent (requested by a person; not counted as an automatic resume)",
            prompt=prompt,
            resume_reason=reason,
            patch={"attempts": snap.run.attempts + 1, "human_resumes": snap.human_resumes + 1,
                   "resume_keys": sorted(snap.resume_keys | {key})},
            event=reason,
        )
    if snap.resume_count >= snap.max_auto_resumes:
        return _needs_attention(f"{what}, and the cap of {snap.max_auto_resumes} automatic resumes is reached")
    n = snap.resume_count + 1
    return StartAgent(
        to=S.RUNNING,
        reason=f"{what}: resuming the agent (automatic resume {n} of {snap.max_auto_resumes})",
        prompt=prompt,
        resume_reason=reason,
        resume_key=key,
        patch={"attempts": snap.run.attempts + 1},
        event=reason,
    )


def _decide_pr_opened(snap: RepoTaskSnapshot) -> Action:
    pr = snap.pr
    if pr is None:
        return DeferWithBackoff(
            reason="task is pr_opened but its pull request could not be found",
            delay_s=read_error_delay(snap.run.reconcile_attempts, seed=snap.run.id),
            count_attempt=True,
        )
    if pr.state == "merged":  # by a person, or landed with a merge-queue batch
        return Transition(
            to=S.COMPLETED,
            reason=f"pull request #{pr.number} merged",
            patch={"error": None},
            event="merged",
        )
    if pr.state == "closed":
        why = "pull request closed"
        return Transition(
            to=S.FAILED, reason=f"{why} (#{pr.number}) without merging", patch={"error": why}, event="failed"
        )

    head = _short(pr.head_sha)

    if (setup_failure := _ci_setup_failure(pr)) is not None:
        return setup_failure
    if pr.mergeable is False:
        return _resume(
            snap,
            key=f"conflict:{pr.head_sha}",
            reason="conflict",
            what=f"pull request #{pr.number} has merge conflicts with {snap.base_branch} at {head}",
            prompt=build_resume_prompt(
                title=snap.title,
                original_prompt=snap.prompt,
                reason="conflict",
                conflicting_files=pr.conflicting_files,
                base_branch=snap.base_branch,
            ),
        )
    if pr.ci_status == "failing":
        # A result holds for (head, base): the same head failing on a base that moved is a new failure.
        base = pr.ci_base_sha
        return _resume(
            snap,
            key=f"ci_failed:{pr.head_sha}:{base}" if base else f"ci_failed:{pr.head_sha}",
            reason="ci_failed",
            what=f"CI failed on {head} merged onto {snap.base_branch} at {_short(base)}" if base
            else f"CI failed on {head}",
            prompt=build_resume_prompt(
                title=snap.title,
                original_prompt=snap.prompt,
                reason="ci_failed",
                ci_output=pr.ci_output_tail,
                base_branch=snap.base_branch,
                ci_base_sha=base,
            ),
        )

    stale_changes_requested = False
    if pr.review_status == "changes_requested":
        review_ref = pr.review_id if pr.review_id is not None else (pr.review_head_sha or pr.head_sha)
        key = f"changes_requested:{review_ref}"
        head_moved = pr.review_head_sha is not None and pr.review_head_sha != pr.head_sha
        if key in snap.resume_keys and head_moved:
            # The agent already answered this review with new commits; it now waits for a fresh review.
            stale_changes_requested = True
        else:
            return _resume(
                snap,
                key=key,
                reason="changes_requested",
                what=f"changes requested in review of pull request #{pr.number}",
                prompt=build_resume_prompt(
                    title=snap.title,
                    original_prompt=snap.prompt,
                    reason="changes_requested",
                    comments=pr.review_comments,
                    base_branch=snap.base_branch,
                ),
                by_person=pr.review_by_person,
            )

    if pr.ci_status == "pending":
        return Noop(reason=f"waiting for CI on {head}", recheck_after_s=PR_RECHECK_S)

    if snap.repo.has_review_agent:
        review = _review_gate(snap, pr)
        if review is not None:
            return review

    if stale_changes_requested:
        return Noop(
            reason=f"changes were pushed after the last review; waiting for a new review of {head}",
            recheck_after_s=PR_RECHECK_S,
        )

    # An approval counts for the head it was given on only (the forge's merge gate checks the same).
    approved = pr.review_status == "approved" and pr.review_head_sha in (None, pr.head_sha)
    if approved or not snap.repo.require_approval:
        if not snap.repo.auto_merge:
            return Noop(reason="waiting for a manual merge", recheck_after_s=PR_RECHECK_S)
        if pr.mergeable is None:
            return Noop(reason="waiting for the forge to compute mergeability", recheck_after_s=PR_RECHECK_S)
        why = "approved" if approved else "no approval required"
        ci = "CI passing" if pr.ci_status == "passing" else "no CI configured"
        return MergePullRequest(reason=f"{why}, {ci}: merging pull request #{pr.number}", head_sha=pr.head_sha)
    return Noop(reason="waiting for review", recheck_after_s=PR_RECHECK_S)


CI_ERROR_TAIL_CHARS = 4000
_CI_SETUP_WHY = {
    "not_found": "the CI command was not found (exit 127)",
    "not_executable": "the CI command could not be executed (exit 126)",
    "timeout": "the CI command was killed by its timeout",
    "could_not_run": "Optio could not start the CI command",
}


def _ci_setup_failure(pr: PullRequestView) -> Action | None:
    """A CI run that could not test the code at all goes to a person at once, never to the agent.

    Its output says nothing about the agent's change (a command or interpreter missing, a timeout), so a
    resume could only guess, and burn the resume budget doing it. The task's error carries the reason,
    the duration and the output's tail, so the person sees in one place what to fix (the repo's CI
    command, its environment, its timeout) before retrying.
    """
    if pr.ci_status != "error":
        return None
    why = _CI_SETUP_WHY.get(pr.ci_failure_kind or "", "the CI command could not run")
    took = f" after {pr.ci_duration_s:.1f}s" if pr.ci_duration_s is not None else ""
    reason = f"CI could not run on {_short(pr.head_sha)}: {why}{took}; the agent was not resumed"
    tail = pr.ci_output_tail[-CI_ERROR_TAIL_CHARS:].strip()
    error = f"{reason}\n--- CI output (tail) ---\n{tail}" if tail else f"{reason} (no output)"
    return Transition(to=S.NEEDS_ATTENTION, reason=reason, patch={"error": error}, event="needs_attention")


def _review_gate(snap: RepoTaskSnapshot, pr: PullRequestView) -> Action | None:
    """What the review agent still needs before a merge may happen, or None once it passed this head.

    A review that failed or ended without a verdict is not relaunched automatically (that could loop);
    a person decides, since merging without the configured review would break the repo's rules.
    """
    head = _short(pr.head_sha)
    run = snap.review_run
    if run is None or run.head_sha != pr.head_sha:
        return LaunchReview(reason=f"running the review agent on {head}", head_sha=pr.head_sha)
    if run.state in _REVIEW_ACTIVE:
        return Noop(reason=f"review agent is looking at {head}", recheck_after_s=PR_RECHECK_S)
    if run.state != PrReviewState.COMPLETED or run.verdict is None:
        return _needs_attention(
            f"the review agent did not reach a verdict on {head} (review run #{run.id} {run.state})"
        )
    if run.verdict == "request_changes":
        # Not yet reflected in pr.review_status (handled earlier when it is): never merge past it.
        return Noop(
            reason=f"waiting for the review agent's verdict on {head} to reach the pull request",
            recheck_after_s=PR_RECHECK_S,
        )
    return None


def _executor_error_gate(snap: RepoTaskSnapshot) -> Action | None:
    """Back off after an action that could not be applied; hand the task to a person once it failed too often.

    A task that failed before its agent started waits out the backoff in the queue, not in a run slot.
    """
    state = snap.run.state
    give_up_to = S.NEEDS_ATTENTION if can_transition(RunKind.REPO_TASK, state, S.NEEDS_ATTENTION) else S.FAILED
    return decide_executor_error(snap.run, snap.executor_errors, snap.now, give_up_to=give_up_to,
                                 requeue_from=frozenset({S.PROVISIONING}), requeue_to=S.QUEUED)


_BY_STATE: dict[str, Callable[[RepoTaskSnapshot], Action]] = {
    S.PENDING: _decide_dependencies,
    S.WAITING_ON_DEPS: _decide_dependencies,
    S.QUEUED: _decide_queued,
    S.PROVISIONING: _decide_provisioning,
    S.RUNNING: _decide_running,
    S.PR_OPENED: _decide_pr_opened,
}


def decide_repo_task(snap: RepoTaskSnapshot) -> Action:
    run = snap.run
    if snap.read_error is not None:
        return DeferWithBackoff(
            reason=f"could not read state: {snap.read_error}",
            delay_s=read_error_delay(run.reconcile_attempts, seed=run.id),
            count_attempt=True,
        )

    if run.reconcile_backoff_until is not None and snap.now < run.reconcile_backoff_until:
        wait = (run.reconcile_backoff_until - snap.now).total_seconds()
        return Noop(reason="in backoff", recheck_after_s=wait)

    if run.control_intent == "cancel" or (run.control_intent is not None and run.state not in _BY_STATE):
        return _decide_intent(snap, run.control_intent)

    if run.state in _BY_STATE:
        gave_up = _executor_error_gate(snap)
        if gave_up is not None:
            return gave_up

    if run.control_intent is not None:
        return _decide_intent(snap, run.control_intent)

    decide = _BY_STATE.get(run.state)
    if decide is not None:
        action = decide(snap)
        if isinstance(action, StartAgent):
            # The agent's exit wakes the task; until then a look only finds it running (or, stalled, after
            # the stall threshold).
            action = replace(action, recheck_after_s=min(WATCH_RECHECK_S, snap.stall_threshold_s + 1))
        return action
    if run.state in (S.NEEDS_ATTENTION, *_TERMINAL):
        return Noop(reason=f"task is {run.state}; only a person's intent moves it on")
    return DeferWithBackoff(
        reason=f"unknown repo task state {run.state!r}",
        delay_s=read_error_delay(run.reconcile_attempts, seed=run.id),
        count_attempt=True,
    )
