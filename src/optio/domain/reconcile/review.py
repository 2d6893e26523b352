"""The decision for review-agent runs (run kind `pr_review`).

A review run is a job-like run whose end is a verdict, not a failure. The verdict is what the review
wrote to the verdict file Optio gave it (`$OPTIO_REVIEW_VERDICT_FILE`, outside the PR head, which is
mounted read-only): `approve` or `request_changes`. For the script review agent, Optio's own wrapper
writes the file from the exit code of the repo's review command (0 approves), and that command is run
from the base branch, so a PR cannot rewrite the code that judges it. A missing or invalid file, or an
`approve` from a process that did not exit 0, requests changes. Only a process that could not give a
verdict (never started, vanished, timed out, stalled) is a failed attempt. Everything else defers to
the job decision's rules.

A vendor review agent (any agent but the script one) instead writes a review file, `review.json`, in
its working directory: a verdict, a summary and line comments. The control plane validates it and hands
the decision a `ReviewReport` (or why there is none). Exiting 0 with a valid report posts it on the PR;
exiting 0 without one is a failed attempt (retried by the retry rule), never an approval, and a non-zero
exit is a failed attempt as for any job.
"""

from __future__ import annotations

from dataclasses import dataclass

from optio.domain.actions import Action, PostReview, Transition
from optio.domain.reconcile.job import _failed_attempt as failed_attempt
from optio.domain.reconcile.job import decide_job_run, executor_error_gate
from optio.domain.retry import Failure
from optio.domain.snapshot import JobRunSnapshot, ProcessStatus
from optio.domain.states import PrReviewState as S

VERDICTS = ("approve", "request_changes")


@dataclass(frozen=True)
class ReviewComment:
    """A comment on one line of the PR head (``path`` relative to the repo root)."""

    path: str
    line: int
    body: str


@dataclass(frozen=True)
class ReviewReport:
    """A vendor review agent's validated review file."""

    verdict: str
    summary: str
    comments: tuple[ReviewComment, ...] = ()


@dataclass(frozen=True)
class ReviewRunSnapshot(JobRunSnapshot):
    """A job-run snapshot plus what the review wrote to its verdict file (None: no file was written).

    ``structured`` reviews (vendor agents) report through ``report`` instead: the validated review
    file, or None with ``report_error`` saying why there is none. A script review may leave a review file
    too, for its summary and line comments only (its verdict is still its exit code's).

    ``posts_verdict``: the PR lives on a hosted forge, so a script review's verdict is posted through the
    forge (`PostReview`) rather than written beside the run in the same transaction.
    """

    verdict_file: str | None = None
    structured: bool = False
    report: ReviewReport | None = None
    report_error: str | None = None
    posts_verdict: bool = False


@dataclass(frozen=True)
class Verdict:
    verdict: str
    note: str | None = None  # why the verdict is not simply what the review said; shown with its comments


def read_verdict(exit_code: int | None, verdict_file: str | None) -> Verdict:
    if verdict_file is None:
        return Verdict("request_changes", "the review gave no verdict ($OPTIO_REVIEW_VERDICT_FILE was not "
                                          "written), so changes are requested")
    said = verdict_file.strip()
    if said not in VERDICTS:
        return Verdict("request_changes", "the review's verdict file holds neither 'approve' nor "
                                          "'request_changes', so changes are requested")
    if said == "approve" and exit_code != 0:
        return Verdict("request_changes", f"the review wrote 'approve' but exited {exit_code}, so changes are "
                                          "requested")
    return Verdict(said)


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
        if isinstance(snap, ReviewRunSnapshot) and snap.structured:
            return _decide_structured(snap, proc.exit_code)
        found = read_verdict(proc.exit_code, snap.verdict_file if isinstance(snap, ReviewRunSnapshot) else None)
        why = found.note or f"verdict file says {found.verdict}"
        if isinstance(snap, ReviewRunSnapshot) and snap.posts_verdict:
            return PostReview(reason=f"review agent exited {proc.exit_code}: {found.verdict} ({why})",
                              verdict=found.verdict)
        return Transition(
            to=S.COMPLETED,
            reason=f"review agent exited {proc.exit_code}: {found.verdict} ({why})",
            patch={"verdict": found.verdict, "error": None},
            event="review_" + found.verdict,
        )
    return decide_job_run(snap)


def _decide_structured(snap: ReviewRunSnapshot, exit_code: int) -> Action:
    """A vendor review that exited: post its report, or count a failed attempt (never an approval)."""
    if exit_code != 0:
        return decide_job_run(snap)  # the retry rule, with the failure its adapter classified
    if snap.report is None:
        why = f"the review agent exited 0 without a valid review file: {snap.report_error or 'none was written'}"
        return failed_attempt(snap, Failure(why=why))
    report = snap.report
    lines = len(report.comments)
    return PostReview(
        reason=f"review agent exited 0: {report.verdict} with {lines} line comment{'s' * (lines != 1)}",
        verdict=report.verdict,
    )
