"""Texts Optio writes around an agent's work; the template engine itself is `optio.domain.templates`."""

from __future__ import annotations

from optio.domain.params import ParamSpec, resolve_params
from optio.domain.templates import TemplateError, placeholders, render

__all__ = ["ParamSpec", "TemplateError", "placeholders", "render", "resolve_params"]


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
# A vendor review agent's report: `review.json` in its working directory (a base-branch checkout).
REVIEW_FILE_NAME = "review.json"
VENDOR_REVIEW_INSTRUCTIONS = (
    "\n\nThe pull request head is checked out read-only at {head} ($OPTIO_PR_HEAD_DIR); your working "
    "directory is a checkout of the base branch. Review the head. When you are done, write your review as "
    "JSON to the file review.json in your working directory ({review_file}, also named by "
    "$OPTIO_REVIEW_VERDICT_FILE), exactly in this shape:\n"
    '{{"verdict": "approve" or "request_changes", "summary": "<your review, for the author>", '
    '"comments": [{{"path": "<file path relative to the repository root>", "line": <line number in the head>, '
    '"body": "<what to change there>"}}]}}\n'
    "`comments` may be an empty list. Without a valid review.json the review fails and is run again; it never "
    "approves.\n"
)


def vendor_review_instructions(head: object, review_file: object) -> str:
    """Appended to a vendor review agent's prompt: where the head is and where its review.json goes."""
    return VENDOR_REVIEW_INSTRUCTIONS.format(head=head, review_file=review_file)


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
