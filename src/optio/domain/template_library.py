"""The prompt template library: one template per kind of prompt (task, review, job), chosen repo override first,
then the workspace default, then the built-in text.

A saved template may only read the variables its kind provides (and, for a job template, the parameters the
job declares): a typo is refused when the template is saved, not discovered when an agent gets a prompt with a
hole in it. Every variable of a kind is always given when the prompt is rendered (a value that does not exist,
such as a task without a ticket, is given as null and renders as nothing), so a template that was accepted
renders.

Pure: the stored bodies come in as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from optio.domain.templates import TemplateError, paths, render

Kind = Literal["task", "review", "job"]
Source = Literal["repo", "workspace", "builtin", "given"]  # given: a body being previewed, not saved
KINDS: tuple[Kind, ...] = ("task", "review", "job")

# What each kind's template may read, with what the value is (shown by `optio template show`).
VARIABLES: dict[Kind, dict[str, str]] = {
    "task": {
        "prompt": "the task's own prompt, as it was created",
        "title": "the task's title",
        "task_id": "the task's number",
        "repo": "the repo's name",
        "base_branch": "the branch the pull request targets",
        "branch": "the task's branch",
        "ticket": "the ticket the task closes (e.g. `ticket #4`), or nothing",
    },
    "review": {
        "review_prompt": "the repo's (or the task's) review prompt, or nothing",
        "pr_number": "the pull request's number",
        "pr_title": "the pull request's title",
        "base_branch": "the branch the pull request targets",
        "head_sha": "the commit under review",
        "task_prompt": "the task's prompt, as its agent got it",
        "task_title": "the task's title",
        "task_id": "the task's number",
        "repo": "the repo's name",
    },
    "job": {
        "prompt": "the job's prompt, rendered from its prompt template and the run's params",
        "job": "the job's name",
        "params": "the run's params (read one as `params.NAME`; it must be declared by the job)",
    },
}

# The texts Optio used before templates could be changed; the review one renders exactly
# `optio.domain.prompts.review_prompt`.
BUILTIN: dict[Kind, str] = {
    "task": "{{prompt}}",
    "review": (
        "{{#if review_prompt}}{{review_prompt}}{{else}}Review this pull request.{{/if}}\n\n"
        "Pull request #{{pr_number}}: {{pr_title}}\n"
        "Base branch: {{base_branch}}  Head: {{head_sha}}\n\n"
        "Original task:\n{{task_prompt}}\n"
    ),
    "job": "{{prompt}}",
}


@dataclass(frozen=True)
class Effective:
    """The template a prompt is rendered with, and where it came from."""

    kind: Kind
    body: str
    source: Source


def check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise TemplateError(f"unknown template kind {kind!r}; kinds are {', '.join(KINDS)}", field="kind")
    return kind


def effective(kind: Kind, *, repo_body: str | None = None, workspace_body: str | None = None) -> Effective:
    """Repo override, else workspace default, else the built-in text."""
    if repo_body is not None:
        return Effective(kind, repo_body, "repo")
    if workspace_body is not None:
        return Effective(kind, workspace_body, "workspace")
    return Effective(kind, BUILTIN[kind], "builtin")


def check(kind: Kind, body: str, *, params: Mapping[str, Mapping[str, object]] | None = None) -> None:
    """Refuse a template that does not parse or reads a variable the kind does not provide.

    `params` is, for a job template, each job's declared params by job name: `params.NAME` must be declared by
    every one of them (the template is used for all of them). The TemplateError's field is the variable.
    """
    allowed = VARIABLES[kind]
    for path in paths(body):
        head, _, rest = path.partition(".")
        if head not in allowed:
            raise TemplateError(f"{kind} templates cannot use {{{{{path}}}}}: {head!r} is not one of "
                                f"{', '.join(allowed)}", field=head)
        if rest and not (kind == "job" and head == "params" and "." not in rest):
            raise TemplateError(f"{kind} templates cannot use {{{{{path}}}}}: {head!r} has no fields", field=head)
        if kind == "job" and head == "params" and rest:
            name = rest
            for job, declared in sorted((params or {}).items()):
                if name not in declared:
                    raise TemplateError(f"job {job!r} declares no parameter {name!r} ({{{{{path}}}}})",
                                        field=f"params.{name}")


def render_prompt(template: Effective, values: Mapping[str, object]) -> str:
    """The prompt: the template filled with the kind's values (a variable not given is null)."""
    context: dict[str, object] = {name: None for name in VARIABLES[template.kind]}
    context.update(values)
    return render(template.body, context)


def sample_values(kind: Kind, given: Mapping[str, object] | None = None) -> dict[str, object]:
    """Values for a preview: the given ones, and `<name>` for the others."""
    values: dict[str, object] = {name: f"<{name}>" for name in VARIABLES[kind] if name != "params"}
    if kind == "job":
        values["params"] = {}
    for key, value in (given or {}).items():
        head, _, rest = key.partition(".")
        if kind == "job" and head == "params" and rest:
            params = values["params"] if isinstance(values["params"], dict) else {}
            values["params"] = {**params, rest: value}
        else:
            values[key] = value
    return values
