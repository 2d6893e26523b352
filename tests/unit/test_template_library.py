"""The prompt template library: which template a prompt uses, what a saved template may read, and that the
built-in texts are the ones Optio used before templates could be changed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optio.domain import prompts
from optio.domain import template_library as library
from optio.domain.review_policy import ReviewPolicy, effective
from optio.domain.templates import TemplateError

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["{{X}}", "{{#if a}}", "{{/if}}", '{{"{{"}}', "}}{{", ""])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.none(), text), st.one_of(st.none(), text))
def test_a_repo_override_wins_over_the_workspace_default_which_wins_over_the_builtin(
        repo_body: str | None, workspace_body: str | None) -> None:
    for kind in library.KINDS:
        got = library.effective(kind, repo_body=repo_body, workspace_body=workspace_body)
        if repo_body is not None:
            assert (got.body, got.source) == (repo_body, "repo")
        elif workspace_body is not None:
            assert (got.body, got.source) == (workspace_body, "workspace")
        else:
            assert (got.body, got.source) == (library.BUILTIN[kind], "builtin")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), text), st.integers(1, 10**6), text, text, st.text(alphabet="0123456789abcdef",
                                                                                max_size=40), text)
def test_the_builtin_review_template_renders_exactly_the_old_review_prompt(
        review_prompt: str | None, number: int, title: str, base: str, head: str, task_prompt: str) -> None:
    old = prompts.review_prompt(review_prompt, pr_number=number, pr_title=title, base_branch=base, head_sha=head,
                                task_prompt=task_prompt)
    new = library.render_prompt(library.effective("review"), {
        "review_prompt": review_prompt, "pr_number": number, "pr_title": title, "base_branch": base,
        "head_sha": head, "task_prompt": task_prompt})
    assert new == old


@settings(max_examples=200, deadline=None)
@given(text)
def test_the_builtin_task_and_job_templates_hand_over_the_prompt_unchanged(prompt: str) -> None:
    assert library.render_prompt(library.effective("task"), {"prompt": prompt}) == prompt
    assert library.render_prompt(library.effective("job"), {"prompt": prompt, "params": {}}) == prompt


def test_every_builtin_template_passes_its_own_check() -> None:
    for kind in library.KINDS:
        library.check(kind, library.BUILTIN[kind], params={"any-job": {}})


@pytest.mark.parametrize(("kind", "body", "field"), [
    ("task", "Do {{promt}}", "promt"),
    ("task", "{{#if tickets}}x{{/if}}", "tickets"),
    ("review", "{{head}}", "head"),
    ("review", "{{pr_title.length}}", "pr_title"),
    ("job", "{{title}}", "title"),
    ("task", "{{params.x}}", "params"),
    ("job", "{{params.x.y}}", "params"),
])
def test_a_template_reading_what_its_kind_does_not_provide_is_refused_naming_it(kind: str, body: str,
                                                                                 field: str) -> None:
    with pytest.raises(TemplateError) as info:
        library.check(kind, body)
    assert info.value.field == field
    assert field in str(info.value)


def test_a_template_that_does_not_parse_is_refused() -> None:
    with pytest.raises(TemplateError):
        library.check("task", "{{#if ticket}}unclosed")


def test_a_job_template_may_read_only_params_every_job_declares() -> None:
    body = "{{prompt}}{{#if params.env}} in {{params.env}}{{/if}}"
    library.check("job", body, params={"deploy": {"env": {}}, "lint": {"env": {"default": "dev"}}})
    library.check("job", body, params={})  # no job yet: nothing to break
    with pytest.raises(TemplateError) as info:
        library.check("job", body, params={"deploy": {"env": {}}, "lint": {"path": {}}})
    assert info.value.field == "params.env" and "lint" in str(info.value)


def test_a_variable_without_a_value_renders_as_nothing_and_values_are_never_expanded_again() -> None:
    template = library.Effective("task", "{{prompt}}{{#if ticket}} (closes {{ticket}}){{/if}}|{{branch}}|",
                                 "workspace")
    assert library.render_prompt(template, {"prompt": "fix {{ticket}}"}) == "fix {{ticket}}||"
    assert library.render_prompt(template, {"prompt": "p", "ticket": "ticket #4", "branch": "optio/t"}) == (
        "p (closes ticket #4)|optio/t|")


def test_sample_values_fill_what_a_preview_was_not_given() -> None:
    values = library.sample_values("job", {"prompt": "hello", "params.env": "prod"})
    assert values == {"prompt": "hello", "job": "<job>", "params": {"env": "prod"}}
    assert library.sample_values("task")["title"] == "<title>"


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(TemplateError) as info:
        library.check_kind("ticket")
    assert info.value.field == "kind"


REPO = ReviewPolicy(require_approval=True, auto_merge=False, review_agent_type="script",
                    review_agent_config={"command": "true", "timeout_s": 60}, review_prompt="Be strict.")


def test_without_overrides_a_task_follows_its_repo() -> None:
    assert effective(REPO, None) == REPO
    assert effective(REPO, {}) == REPO


def test_a_blueprint_can_turn_approval_and_the_review_agent_off_and_merge_by_itself() -> None:
    got = effective(REPO, {"require_approval": False, "auto_merge": True, "review_agent": False})
    assert (got.require_approval, got.auto_merge, got.review_agent_type, got.review_agent_config) == (
        False, True, None, {})
    assert got.review_prompt == "Be strict."


def test_a_blueprint_review_agent_of_another_type_does_not_inherit_the_repos_config() -> None:
    other = effective(REPO, {"review_agent_type": "claude-code", "review_agent_config": {"model": "x"}})
    assert (other.review_agent_type, other.review_agent_config) == ("claude-code", {"model": "x"})
    same = effective(REPO, {"review_agent_config": {"command": "false"}, "review_prompt": ""})
    assert (same.review_agent_type, same.review_agent_config, same.review_prompt) == (
        "script", {"command": "false", "timeout_s": 60}, "")
    added = effective(ReviewPolicy(False, True, None), {"review_agent_type": "script",
                                                        "review_agent_config": {"command": "true"}})
    assert (added.review_agent_type, added.review_agent_config) == ("script", {"command": "true"})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["params", "params.env", "prompt", "job", "x.y", "params."]),
                       st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=6))
def test_preview_values_of_any_shape_render_or_are_a_template_error(given_values: dict[str, object]) -> None:
    body = "{{job}} {{prompt}}{{#if params.env}} {{params.env}}{{/if}}"
    try:
        library.render_prompt(library.Effective("job", body, "given"), library.sample_values("job", given_values))
    except TemplateError:
        pass
