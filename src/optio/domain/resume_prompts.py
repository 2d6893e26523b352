"""The prompt an agent gets when it is started again on a task whose pull request needs more work.

A resumed agent starts without memory of the first run, so the prompt repeats the original task and
carries the evidence (failing CI output, review comments, conflicting files) verbatim: paraphrased
evidence is how an agent ends up fixing the wrong thing. CI logs can be huge and the failure is almost
always at the end, so only the tail is kept, with a note that it was cut.
"""

from __future__ import annotations

import re
from typing import Literal

ResumeReason = Literal["ci_failed", "changes_requested", "conflict", "manual"]

CI_TAIL_MAX_LINES = 200
CI_TAIL_MAX_CHARS = 12_000

_BACKTICK_RUN = re.compile(r"`+")


def ci_tail(output: str) -> tuple[str, bool]:
    """The last lines of `output` within both caps, and whether anything was cut.

    Cutting happens on line boundaries so every line shown is a line of the real log; only a single line
    longer than the whole character budget is itself cut, keeping its end.
    """
    lines = output.splitlines()
    truncated = False
    if len(lines) > CI_TAIL_MAX_LINES:
        lines = lines[-CI_TAIL_MAX_LINES:]
        truncated = True
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        extra = len(line) + (1 if kept else 0)
        if size + extra > CI_TAIL_MAX_CHARS:
            truncated = True
            if not kept:
                kept.append(line[-CI_TAIL_MAX_CHARS:])
            break
        kept.append(line)
        size += extra
    return "\n".join(reversed(kept)), truncated


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in `text`, so the evidence cannot close it early."""
    longest = max((len(m.group(0)) for m in _BACKTICK_RUN.finditer(text)), default=0)
    return "`" * max(3, longest + 1)


def _fenced(text: str) -> str:
    fence = _fence(text)
    return f"{fence}\n{text}\n{fence}"


def _ci_merge_note(base_branch: str, base_sha: str) -> str:
    return (
        f"CI ran on your branch merged onto the current `{base_branch}` (at {base_sha[:12]}), which is exactly "
        "what would land. If the failure comes from changes merged there since your branch started, bring your "
        f"branch up to date first (`git fetch origin && git rebase origin/{base_branch}`) and make both work together."
    )


def _ci_section(ci_output: str) -> list[str]:
    if not ci_output.strip():
        return [
            "The CI checks failed on the current head of the pull request, but they produced no output.",
            "Run the project's tests and checks locally to find the failure.",
        ]
    tail, truncated = ci_tail(ci_output)
    total = len(ci_output.splitlines())
    intro = "The CI checks failed on the current head of the pull request."
    if truncated:
        intro += (
            f" The output below is truncated: it is the last {len(tail.splitlines())} of {total} lines"
            f" (at most {CI_TAIL_MAX_LINES} lines and {CI_TAIL_MAX_CHARS} characters are kept)."
        )
    else:
        intro += " This is the complete output of the failing checks:"
    return [
        intro,
        "",
        _fenced(tail),
        "",
        "Find the cause of the failure and fix it in the code.",
        "Change a test only if the test itself is wrong.",
        "Run the failing checks locally before you finish.",
    ]


def _review_section(comments: tuple[str, ...]) -> list[str]:
    if not comments:
        return [
            "A reviewer requested changes on the pull request but left no comment text.",
            "Re-read the task and the diff against the base branch, and fix what is missing or wrong.",
        ]
    out = [
        f"A reviewer requested changes on the pull request. The review comments, verbatim ({len(comments)}):",
    ]
    for i, comment in enumerate(comments, start=1):
        out += ["", f"### Comment {i}", "", comment]
    out += [
        "",
        "Address every comment. Where you disagree with one, leave the code as it is and explain why "
        "in a short note in your final message instead of ignoring it.",
    ]
    return out


def _conflict_section(conflicting_files: tuple[str, ...], base_branch: str) -> list[str]:
    out = [f"The pull request no longer merges cleanly into `{base_branch}`."]
    if conflicting_files:
        out += ["", "Files in conflict:", ""] + [f"- {path}" for path in conflicting_files]
    else:
        out += ["", "The forge did not say which files conflict; the rebase will show them."]
    out += [
        "",
        "Rebase the branch onto the latest base and stay on the same branch "
        "(do not create a new branch or open another pull request):",
        "",
        f"1. `git fetch origin && git rebase origin/{base_branch}`",
        "2. Resolve each conflict, keeping the intent of both sides, then `git add` the resolved files.",
        "3. `git rebase --continue`, repeating steps 2 and 3 until the rebase is finished.",
        "4. Run the tests to check that the rebased branch still works.",
    ]
    return out


def _manual_section() -> list[str]:
    return ["A person resumed this task by hand. Check the current state of the branch and continue the work."]


def build_resume_prompt(
    *,
    title: str,
    original_prompt: str,
    reason: ResumeReason,
    ci_output: str = "",
    comments: tuple[str, ...] = (),
    conflicting_files: tuple[str, ...] = (),
    base_branch: str = "main",
    note: str = "",
    ci_base_sha: str | None = None,
) -> str:
    """The full prompt for a resumed agent: original task, why it was resumed, the evidence, what to do."""
    if reason == "ci_failed":
        why = _ci_section(ci_output)
        if ci_base_sha:
            why += ["", _ci_merge_note(base_branch, ci_base_sha)]
        heading = "Why you are resumed: CI failed"
    elif reason == "changes_requested":
        why = _review_section(comments)
        heading = "Why you are resumed: changes requested in review"
    elif reason == "conflict":
        why = _conflict_section(conflicting_files, base_branch)
        heading = "Why you are resumed: merge conflicts"
    elif reason == "manual":
        why = _manual_section()
        heading = "Why you are resumed: resumed by a person"
    else:
        raise ValueError(f"unknown resume reason {reason!r}")

    parts = [
        "You are resuming work on a task whose pull request is already open. "
        "Your earlier changes are committed on the current branch of this workspace.",
        "",
        f"## Original task: {title}",
        "",
        original_prompt,
        "",
        f"## {heading}",
        "",
        *why,
    ]
    if note.strip():
        parts += ["", "## Note from a person", "", note]
    parts += [
        "",
        "## When you are done",
        "",
        "Commit your changes on the current branch. Do not push and do not open a pull request: "
        "Optio pushes the branch and updates the existing pull request when you finish.",
    ]
    return "\n".join(parts) + "\n"
