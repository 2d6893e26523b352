"""The decision for review-agent runs (run kind `pr_review`).

A review run is a job-like run whose exit code is a verdict, not a failure: for the script review agent,
0 approves and non-zero requests changes. Only a process that could not give a verdict (never started,
vanished, timed out, stalled) is a failed attempt. Everything else defers to the job decision's rules.
"""

from __future__ import annotations

from optio.domain.actions import Action, Transition
from optio.domain.reconcile.job import decide_job_run, executor_error_gate
from optio.domain.snapshot import JobRunSnapshot, ProcessStatus
from optio.domain.states import PrReviewState as S


def verdict_for_exit(exit_code: int | None) -> str:
    return "approve" if exit_code == 0 else "request_changes"


def decide_pr_review(snap: JobRunSnapshot) -> Action:
    run, proc = snap.run, snap.process
    if snap.read_error is None and run.control_intent is None and run.state == S.RUNNING:
        # Recording the verdict is an action too: if it keeps failing it must not retry for ever.
        gave_up = executor_error_gate(snap)
        if gave_up is not None:
            return gave_up
    if (
        snap.read_error is None
        and run.state == S.RUNNING
        and run.control_intent is None
        and proc is not None
        and proc.attempt == run.attempts
        and proc.status == ProcessStatus.EXITED
        and proc.exit_reason == "exited"
        and proc.exit_code is not None
    ):
        verdict = verdict_for_exit(proc.exit_code)
        return Transition(
            to=S.COMPLETED,
            reason=f"review agent exited {proc.exit_code}: {verdict}",
            patch={"verdict": verdict, "error": None},
            event="review_" + verdict,
        )
    return decide_job_run(snap)
