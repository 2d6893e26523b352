"""The `interrupt` intent (a person's message that cannot wait): kill the running agent, then resume at once."""

from __future__ import annotations

import pytest
from tests.unit.test_repo_decision import NOW, decide, pr, proc, run

from optio.domain.actions import ClearControlIntent, StartAgent, Transition
from optio.domain.snapshot import ProcessStatus
from optio.domain.states import RepoTaskState

S = RepoTaskState


@pytest.mark.parametrize("status", [ProcessStatus.STARTING, ProcessStatus.ALIVE])
def test_a_live_agent_is_killed_first_and_the_intent_kept(status: ProcessStatus) -> None:
    action = decide(run(S.RUNNING, control_intent="interrupt"), process=proc(status))
    assert isinstance(action, Transition) and action.to == S.RUNNING
    assert action.kill_process and not action.clear_intent and action.event == "interrupted"
    assert action.patch["reconcile_backoff_until"] > NOW  # one kill, then a look once it is done


def test_once_the_agent_is_gone_the_intent_resumes_it_as_a_persons_resume() -> None:
    action = decide(run(S.RUNNING, control_intent="interrupt", attempts=1),
                    process=proc(ProcessStatus.EXITED, exit_code=-15, exit_reason="killed"), human_resumes=2,
                    resume_count=1)
    assert isinstance(action, StartAgent) and action.to == S.RUNNING and action.clear_intent
    assert action.resume_reason == "manual" and action.resume_key is None  # not an automatic resume
    assert action.patch == {"attempts": 2, "human_resumes": 3}
    assert action.prompt and "Add GET /healthz." in action.prompt


@pytest.mark.parametrize("state", [S.PR_OPENED, S.NEEDS_ATTENTION])
def test_a_task_waiting_on_its_pr_is_resumed_at_once(state: str) -> None:
    action = decide(run(state, control_intent="interrupt"), pr=pr())
    assert isinstance(action, StartAgent) and action.to == S.RUNNING and action.clear_intent


@pytest.mark.parametrize("state", [S.QUEUED, S.COMPLETED, S.FAILED])
def test_elsewhere_the_intent_is_cleared(state: str) -> None:
    action = decide(run(state, control_intent="interrupt"))
    assert isinstance(action, ClearControlIntent)
