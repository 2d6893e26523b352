"""The repo decision on a CI run that could not test anything: a person, at once, never the agent."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from optio.domain.actions import StartAgent, Transition, target_state
from optio.domain.reconcile.repo import decide_repo_task
from optio.domain.repo_snapshot import PullRequestView, RepoTaskSnapshot, RepoView
from optio.domain.snapshot import RunView
from optio.domain.states import RepoTaskState, RunKind, check_transition

S = RepoTaskState
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HEAD = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0"
KINDS = ("not_found", "not_executable", "timeout", "could_not_run")


def pr(**kw: object) -> PullRequestView:
    fields: dict[str, object] = {"number": 42, "state": "open", "head_sha": HEAD, "mergeable": True,
                                 "ci_status": "error", "ci_failure_kind": "not_found", "ci_duration_s": 0.25,
                                 "ci_output_tail": "sh: 1: does-not-exist: not found\n"}
    fields.update(kw)
    return PullRequestView(**fields)  # type: ignore[arg-type]


def snap(p: PullRequestView, **kw: object) -> RepoTaskSnapshot:
    fields: dict[str, object] = {
        "now": NOW,
        "run": RunView(id=11, kind=RunKind.REPO_TASK, state=S.PR_OPENED, version=5, attempts=1),
        "title": "Add a health endpoint",
        "prompt": "Add GET /healthz.",
        "base_branch": "main",
        "repo": RepoView(require_approval=True, auto_merge=True, has_review_agent=False),
        "max_retries": 2,
        "max_auto_resumes": 3,
        "pr": p,
    }
    fields.update(kw)
    return RepoTaskSnapshot(**fields)  # type: ignore[arg-type]


def test_command_not_found_goes_to_a_person_with_reason_duration_and_output() -> None:
    action = decide_repo_task(snap(pr()))
    assert isinstance(action, Transition) and action.to == S.NEEDS_ATTENTION
    assert "CI could not run on a1b2c3d4e5f6" in action.reason
    assert "was not found (exit 127)" in action.reason and "after 0.2s" in action.reason
    error = str(action.patch["error"])
    assert error.startswith(action.reason)
    assert "sh: 1: does-not-exist: not found" in error


def test_each_kind_names_its_reason() -> None:
    reasons = {kind: decide_repo_task(snap(pr(ci_failure_kind=kind))).reason for kind in KINDS}
    assert "(exit 126)" in reasons["not_executable"]
    assert "killed by its timeout" in reasons["timeout"]
    assert "Optio could not start" in reasons["could_not_run"]
    assert len(set(reasons.values())) == len(KINDS)


def test_an_unknown_kind_and_no_output_still_say_what_happened() -> None:
    action = decide_repo_task(snap(pr(ci_failure_kind=None, ci_duration_s=None, ci_output_tail="")))
    assert isinstance(action, Transition) and action.to == S.NEEDS_ATTENTION
    assert action.patch["error"] == f"CI could not run on {HEAD[:12]}: the CI command could not run; " \
                                    "the agent was not resumed (no output)"


def test_the_error_keeps_only_the_tail_of_a_huge_output() -> None:
    output = "x" * 100_000 + "\nthe last words\n"
    error = str(decide_repo_task(snap(pr(ci_failure_kind="timeout", ci_output_tail=output))).patch["error"])
    assert error.endswith("the last words") and len(error) < 5000


def test_a_plain_red_ci_still_resumes_the_agent() -> None:
    action = decide_repo_task(snap(pr(ci_status="failing", ci_failure_kind=None, ci_output_tail="1 failed")))
    assert isinstance(action, StartAgent) and action.resume_reason == "ci_failed"


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from((*KINDS, None, "something-new")),
    mergeable=st.sampled_from((True, False, None)),
    review=st.sampled_from((None, "approved", "changes_requested")),
    resume_count=st.integers(0, 5),
    auto_merge=st.booleans(),
    has_review_agent=st.booleans(),
    tail=st.text(max_size=200),
    duration=st.none() | st.floats(0, 10_000, allow_nan=False),
)
def test_a_ci_that_could_not_run_never_resumes_nor_merges(
    kind: str | None, mergeable: bool | None, review: str | None, resume_count: int, auto_merge: bool,
    has_review_agent: bool, tail: str, duration: float | None,
) -> None:
    p = pr(ci_failure_kind=kind, mergeable=mergeable, review_status=review, review_id=7 if review else None,
           ci_output_tail=tail, ci_duration_s=duration, conflicting_files=("a.py",) if mergeable is False else ())
    s = snap(p, resume_count=resume_count,
             repo=RepoView(require_approval=True, auto_merge=auto_merge, has_review_agent=has_review_agent))
    action = decide_repo_task(s)
    assert isinstance(action, Transition) and action.to == S.NEEDS_ATTENTION
    check_transition(RunKind.REPO_TASK, S.PR_OPENED, str(target_state(action)))
    assert "the agent was not resumed" in str(action.patch["error"])
    assert tail.strip()[-100:] in str(action.patch["error"])
