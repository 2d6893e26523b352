"""The texts Optio writes around an agent's work (commits, pull requests, review prompts), built in the pure core."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from optio.domain import prompts

DOMAIN = Path(__file__).resolve().parents[2] / "src" / "optio" / "domain"


def test_commit_pr_and_merge_texts_name_the_task() -> None:
    assert prompts.task_commit_message("Add a changelog", 7) == "Add a changelog\n\nOptio task #7"
    assert prompts.pull_request_body("Please add it.", 7) == "Please add it.\n\n---\nOpened by Optio for task #7."
    assert prompts.squash_merge_message("Add a changelog", 3, 7) == "Add a changelog (#3)\n\nOptio task #7"
    assert prompts.squash_merge_message("Add a changelog", 3, 7, "ticket #4") == \
        "Add a changelog (#3)\n\nOptio task #7\nCloses ticket #4"
    assert prompts.ticket_close_note(7) == "completed by Optio task #7"


def test_review_prompt_falls_back_to_a_plain_request() -> None:
    text = prompts.review_prompt(None, pr_number=3, pr_title="Add a changelog", base_branch="main",
                                 head_sha="abc123", task_prompt="Please add it.")
    assert text == ("Review this pull request.\n\nPull request #3: Add a changelog\n"
                    "Base branch: main  Head: abc123\n\nOriginal task:\nPlease add it.\n")
    assert prompts.review_prompt("Be strict.", pr_number=3, pr_title="t", base_branch="main", head_sha="abc",
                                 task_prompt="p").startswith("Be strict.\n\nPull request #3: t\n")


def test_vendor_review_instructions_name_the_head_and_the_review_file_and_its_shape() -> None:
    text = prompts.vendor_review_instructions(Path("/w/head"), Path("/w/base/review.json"))
    assert "read-only at /w/head ($OPTIO_PR_HEAD_DIR)" in text
    assert "review.json in your working directory (/w/base/review.json" in text
    assert '"verdict": "approve" or "request_changes"' in text and '"comments": [{"path"' in text
    assert "never approves" in text


def test_review_comment_carries_optio_s_note_only_when_there_is_one() -> None:
    assert prompts.review_comment("looks fine", None) == "looks fine"
    assert prompts.review_comment("", "no verdict") == "optio: no verdict"
    assert prompts.review_comment("looks fine", "no verdict") == "looks fine\n\noptio: no verdict"


def test_the_script_verdict_wrapper_turns_the_exit_code_into_the_verdict(tmp_path: Path) -> None:
    verdict = tmp_path / "verdict"
    for command, expected, code in (("true", "approve", 0), ("exit 3", "request_changes", 3)):
        env = {"PATH": "/usr/bin:/bin", "OPTIO_REVIEW_COMMAND": command, "OPTIO_REVIEW_VERDICT_FILE": str(verdict)}
        done = subprocess.run(["/bin/sh", "-c", prompts.SCRIPT_VERDICT_WRAPPER], env=env, check=False)
        assert done.returncode == code
        assert verdict.read_text() == expected + "\n"


def test_the_domain_package_imports_only_the_standard_library_and_itself() -> None:
    """The import contract names the packages it forbids; this catches any other one as well."""
    outside: list[str] = []
    for path in sorted(DOMAIN.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and not name.startswith("optio.domain"):
                    outside.append(f"{path.name}: {name}")
    assert outside == []
