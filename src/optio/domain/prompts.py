"""Prompt templates with `{{PARAM}}` placeholders, rendered strictly.

A missing parameter is an error at the moment a run is requested, not a literal `{{X}}` reaching an
agent that then does the wrong thing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class TemplateError(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ParamSpec:
    name: str
    required: bool = True
    default: str | None = None
    description: str = ""


def placeholders(template: str) -> list[str]:
    seen: list[str] = []
    for m in PLACEHOLDER.finditer(template):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


def resolve_params(specs: Mapping[str, ParamSpec], given: Mapping[str, str]) -> dict[str, str]:
    """Fill defaults and reject unknown or missing parameters."""
    unknown = sorted(set(given) - set(specs))
    if unknown and specs:
        raise TemplateError(f"unknown parameter(s): {', '.join(unknown)}", field=unknown[0])
    out = dict(given)
    for name, spec in specs.items():
        if name not in out:
            if spec.default is not None:
                out[name] = spec.default
            elif spec.required:
                raise TemplateError(f"missing required parameter {name!r}", field=name)
    return out


def render(template: str, params: Mapping[str, str]) -> str:
    missing = [p for p in placeholders(template) if p not in params]
    if missing:
        raise TemplateError(f"missing value for placeholder {{{{{missing[0]}}}}}", field=missing[0])
    return PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), template)


# --- text Optio writes around an agent's work: commits, pull requests, review prompts ------------------


def task_commit_message(title: str, task_id: int) -> str:
    """The commit Optio makes of what the agent left uncommitted in its worktree."""
    return f"{title}\n\nOptio task #{task_id}"


def pull_request_body(task_prompt: str, task_id: int) -> str:
    """A task's pull request says what was asked, so a reviewer sees the request next to the change."""
    return f"{task_prompt}\n\n---\nOpened by Optio for task #{task_id}."


def squash_merge_message(title: str, pr_number: int, task_id: int, ticket: str | None = None) -> str:
    """The squash commit on the base branch names the pull request, the task it came from and the ticket it
    closes (``ticket`` as people name it, e.g. ``ticket #4``), so `git log` leads back to why it was made."""
    closes = f"\nCloses {ticket}" if ticket else ""
    return f"{title} (#{pr_number})\n\nOptio task #{task_id}{closes}"


def review_prompt(review_prompt: str | None, *, pr_number: int, pr_title: str, base_branch: str, head_sha: str,
                  task_prompt: str) -> str:
    """What a review agent is asked: the repo's review prompt, then the pull request and the original task."""
    return (
        f"{review_prompt or 'Review this pull request.'}\n\n"
        f"Pull request #{pr_number}: {pr_title}\n"
        f"Base branch: {base_branch}  Head: {head_sha}\n\n"
        f"Original task:\n{task_prompt}\n"
    )


# Optio's own code around the repo's review command: the command's exit code becomes the verdict file.
# It runs after the command, so whatever the command (or anything it ran) wrote there is overwritten.
SCRIPT_VERDICT_WRAPPER = (
    '/bin/sh -c "$OPTIO_REVIEW_COMMAND"; code=$?; '
    'if [ "$code" -eq 0 ]; then verdict=approve; else verdict=request_changes; fi; '
    'printf "%s\\n" "$verdict" > "$OPTIO_REVIEW_VERDICT_FILE"; exit "$code"'
)
VENDOR_VERDICT_INSTRUCTIONS = (
    "\n\nThe pull request head is checked out read-only at {head} ($OPTIO_PR_HEAD_DIR); your working "
    "directory is the base branch. Review the head. When you are done, write exactly `approve` or "
    "`request_changes` to the file {verdict} ($OPTIO_REVIEW_VERDICT_FILE); anything else, or no file, "
    "requests changes. Your final message is the review comment.\n"
)


def vendor_verdict_instructions(head: object, verdict_file: object) -> str:
    """Appended to a vendor review agent's prompt: where the head is and where its verdict goes."""
    return VENDOR_VERDICT_INSTRUCTIONS.format(head=head, verdict=verdict_file)


def review_comment(text: str, note: str | None) -> str:
    """A review's comment, with Optio's note when the verdict is not simply what the review said."""
    return f"{text}\n\noptio: {note}".strip() if note else text


def ticket_close_note(task_id: int) -> str:
    """Why a ticket closed: the task that completed it."""
    return f"completed by Optio task #{task_id}"


def with_messages(prompt: str, messages: list[str]) -> str:
    """A prompt with the messages a person sent the agent since it last ran, first and verbatim."""
    if not messages:
        return prompt
    parts = ["Messages from a person about this task, sent while you were not running (oldest first):", ""]
    for n, text in enumerate(messages, 1):
        parts += [f"--- message {n} ---", text.strip(), ""]
    parts += ["--- end of messages ---", "", prompt]
    return "\n".join(parts)
