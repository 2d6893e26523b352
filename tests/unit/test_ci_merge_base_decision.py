"""A CI result holds for the pair (head, base): the decision's resume key and prompt say which base."""

from __future__ import annotations

from tests.unit.test_repo_decision import HEAD, pr, pr_task

from optio.domain.actions import StartAgent, Transition
from optio.domain.resume_prompts import build_resume_prompt
from optio.domain.states import RepoTaskState as S

BASE_1 = "b" * 40
BASE_2 = "c" * 40


def test_failing_ci_on_a_merge_result_is_keyed_by_head_and_base() -> None:
    action = pr_task(pr=pr(ci_status="failing", ci_output_tail="BOTH EXIST\n", ci_base_sha=BASE_1))
    assert isinstance(action, StartAgent)
    assert action.resume_key == f"ci_failed:{HEAD}:{BASE_1}"
    assert f"merged onto main at {BASE_1[:12]}" in action.reason
    assert action.prompt is not None and "BOTH EXIST" in action.prompt
    assert "git rebase origin/main" in action.prompt and BASE_1[:12] in action.prompt


def test_the_same_head_failing_on_a_new_base_is_a_new_failure() -> None:
    seen = frozenset({f"ci_failed:{HEAD}:{BASE_1}"})
    action = pr_task(pr=pr(ci_status="failing", ci_base_sha=BASE_2), resume_keys=seen, resume_count=1)
    assert isinstance(action, StartAgent) and action.resume_key == f"ci_failed:{HEAD}:{BASE_2}"


def test_the_same_head_failing_on_the_same_base_again_needs_attention() -> None:
    seen = frozenset({f"ci_failed:{HEAD}:{BASE_1}"})
    action = pr_task(pr=pr(ci_status="failing", ci_base_sha=BASE_1), resume_keys=seen, resume_count=1)
    assert isinstance(action, Transition) and action.to == S.NEEDS_ATTENTION


def test_prompt_without_a_base_says_nothing_about_merging() -> None:
    prompt = build_resume_prompt(title="t", original_prompt="p", reason="ci_failed", ci_output="x")
    assert "merged onto" not in prompt
