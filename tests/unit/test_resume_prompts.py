from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optio.domain.resume_prompts import (
    CI_TAIL_MAX_CHARS,
    CI_TAIL_MAX_LINES,
    build_resume_prompt,
    ci_tail,
)

BASE = {
    "title": "Add a health endpoint",
    "original_prompt": 'Add GET /healthz returning 200 with {"ok": true}.',
}


def test_every_prompt_repeats_the_original_task() -> None:
    for reason in ("ci_failed", "changes_requested", "conflict", "manual"):
        prompt = build_resume_prompt(**BASE, reason=reason)  # type: ignore[arg-type]
        assert BASE["title"] in prompt
        assert BASE["original_prompt"] in prompt
        assert "Do not push" in prompt


def test_unknown_reason_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown resume reason"):
        build_resume_prompt(**BASE, reason="bored")  # type: ignore[arg-type]


# --- CI ------------------------------------------------------------------------------------------------


def test_ci_output_is_included_verbatim_when_short() -> None:
    output = "collected 3 items\nFAILED tests/test_x.py::test_y - assert 1 == 2\nEXPECTED ok\n"
    prompt = build_resume_prompt(**BASE, reason="ci_failed", ci_output=output)
    assert "CI failed" in prompt
    assert "FAILED tests/test_x.py::test_y - assert 1 == 2\nEXPECTED ok" in prompt
    assert "truncated" not in prompt


def test_long_ci_output_keeps_the_last_lines_and_says_it_was_truncated() -> None:
    lines = [f"line {i}" for i in range(1000)] + ["EXPECTED ok"]
    prompt = build_resume_prompt(**BASE, reason="ci_failed", ci_output="\n".join(lines))
    assert "truncated" in prompt
    assert "EXPECTED ok" in prompt
    assert "line 999\n" in prompt
    assert f"line {1001 - CI_TAIL_MAX_LINES}\n" in prompt
    assert f"line {1000 - CI_TAIL_MAX_LINES}\n" not in prompt
    assert "line 0\n" not in prompt
    assert f"last {CI_TAIL_MAX_LINES} of 1001 lines" in prompt


def test_wide_ci_output_is_capped_in_characters_on_line_boundaries() -> None:
    lines = [f"{i:04d} " + "x" * 195 for i in range(150)] + ["EXPECTED ok"]
    output = "\n".join(lines)
    tail, truncated = ci_tail(output)
    assert truncated
    assert len(tail) <= CI_TAIL_MAX_CHARS
    assert tail.endswith("EXPECTED ok")
    kept = tail.splitlines()
    assert all(line in lines for line in kept), "every kept line is a whole line of the log"
    assert kept == lines[-len(kept) :]
    assert len(kept) < 150


def test_a_single_huge_line_keeps_its_end() -> None:
    tail, truncated = ci_tail("a" * 20_000 + "END")
    assert truncated
    assert len(tail) == CI_TAIL_MAX_CHARS
    assert tail.endswith("END")


def test_ci_tail_of_short_output_is_unchanged() -> None:
    assert ci_tail("one\ntwo") == ("one\ntwo", False)
    assert ci_tail("") == ("", False)


def test_empty_ci_output_says_so() -> None:
    prompt = build_resume_prompt(**BASE, reason="ci_failed", ci_output="  \n")
    assert "produced no output" in prompt


def test_backticks_in_ci_output_cannot_close_the_code_fence() -> None:
    output = "before\n```\nEXPECTED ok\n`````\nafter"
    prompt = build_resume_prompt(**BASE, reason="ci_failed", ci_output=output)
    assert "``````\n" + output + "\n``````" in prompt


@given(st.lists(st.text(max_size=300), max_size=400))
def test_ci_tail_respects_both_caps_and_keeps_the_end(lines: list[str]) -> None:
    output = "\n".join(lines)
    tail, truncated = ci_tail(output)
    all_lines = output.splitlines()
    assert len(tail) <= CI_TAIL_MAX_CHARS
    assert len(tail.splitlines()) <= CI_TAIL_MAX_LINES
    assert "\n".join(all_lines).endswith(tail)
    if not truncated:
        assert tail == "\n".join(all_lines)
    else:
        assert len(all_lines) > CI_TAIL_MAX_LINES or len("\n".join(all_lines)) > CI_TAIL_MAX_CHARS


# --- review comments -----------------------------------------------------------------------------------


def test_review_comments_are_included_verbatim() -> None:
    comments = ("Please rename `foo` to `bar`.\nAlso add a test.", "nit: trailing space ", "> quoted\n- list")
    prompt = build_resume_prompt(**BASE, reason="changes_requested", comments=comments)
    assert "changes requested" in prompt
    for comment in comments:
        assert comment in prompt
    assert "(3)" in prompt


def test_review_without_comments_still_explains_what_to_do() -> None:
    prompt = build_resume_prompt(**BASE, reason="changes_requested")
    assert "no comment text" in prompt


# --- conflicts ------------------------------------------------------------------------------------------


def test_conflict_prompt_lists_files_and_rebase_steps_onto_the_base() -> None:
    prompt = build_resume_prompt(
        **BASE, reason="conflict", conflicting_files=("src/app.py", "README.md"), base_branch="develop"
    )
    assert "- src/app.py\n- README.md" in prompt
    assert "git fetch origin && git rebase origin/develop" in prompt
    assert "git rebase --continue" in prompt
    assert "same branch" in prompt
    assert "origin/main" not in prompt


def test_conflict_prompt_without_files() -> None:
    prompt = build_resume_prompt(**BASE, reason="conflict")
    assert "did not say which files" in prompt
    assert "git rebase origin/main" in prompt


# --- manual ---------------------------------------------------------------------------------------------


def test_manual_resume_carries_the_persons_note() -> None:
    prompt = build_resume_prompt(**BASE, reason="manual", note="Use the existing router, not a new one.")
    assert "resumed by a person" in prompt
    assert "Use the existing router, not a new one." in prompt


def test_blank_note_adds_no_section() -> None:
    assert "Note from a person" not in build_resume_prompt(**BASE, reason="manual", note="  ")


@given(
    reason=st.sampled_from(["ci_failed", "changes_requested", "conflict", "manual"]),
    ci=st.text(max_size=200),
    comments=st.lists(st.text(max_size=50), max_size=3).map(tuple),
    files=st.lists(st.text(min_size=1, max_size=20), max_size=3).map(tuple),
    note=st.text(max_size=50),
)
def test_prompt_is_deterministic(
    reason: str, ci: str, comments: tuple[str, ...], files: tuple[str, ...], note: str
) -> None:
    def build() -> str:
        return build_resume_prompt(
            **BASE,
            reason=reason,  # type: ignore[arg-type]
            ci_output=ci,
            comments=comments,
            conflicting_files=files,
            note=note,
        )

    assert build() == build()
