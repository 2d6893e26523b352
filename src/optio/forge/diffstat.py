"""A pull request's diff summary from git itself: ``git diff --numstat`` and ``--name-status`` of base...head.

Both are read with ``-z`` (paths verbatim, no quoting) and rename detection on, in the same order, so the two
lists line up file by file. Three dots: what the head changes since it left the base, as a forge's PR shows it.
"""

from __future__ import annotations

from pathlib import Path

from optio.forge.base import DIFF_FILES_MAX, DiffFile, DiffSummary
from optio.forge.gitcmd import run_git

STATUSES = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "C": "added", "T": "modified"}


def _numstat(out: str) -> list[tuple[int, int, bool, str]]:
    tokens = out.split("\0")
    rows: list[tuple[int, int, bool, str]] = []
    i = 0
    while i < len(tokens) and tokens[i]:
        added, deleted, path = tokens[i].split("\t", 2)
        if not path:  # a rename or copy: the old and new paths follow as their own fields
            path = tokens[i + 2]
            i += 2
        binary = added == "-"
        rows.append((0 if binary else int(added), 0 if binary else int(deleted), binary, path))
        i += 1
    return rows


def _name_status(out: str) -> list[tuple[str, str, str | None]]:
    tokens = out.split("\0")
    rows: list[tuple[str, str, str | None]] = []
    i = 0
    while i < len(tokens) and tokens[i]:
        letter = tokens[i][0]
        if letter in "RC":
            rows.append((STATUSES[letter], tokens[i + 2], tokens[i + 1] if letter == "R" else None))
            i += 3
        else:
            rows.append((STATUSES.get(letter, "modified"), tokens[i + 1], None))
            i += 2
    return rows


def parse(numstat: str, name_status: str, *, limit: int = DIFF_FILES_MAX) -> DiffSummary:
    counts = _numstat(numstat)
    names = _name_status(name_status)
    files = tuple(DiffFile(path=path, status=status, additions=added, deletions=deleted, binary=binary,
                           old_path=old)
                  for (added, deleted, binary, _path), (status, path, old) in zip(counts, names, strict=True))
    return DiffSummary(files=files[:limit], truncated=len(files) > limit)


def summarize(git_dir: Path, base: str, head: str, *, limit: int = DIFF_FILES_MAX) -> DiffSummary:
    """The summary of ``base...head`` in the repository at ``git_dir`` (a bare cache is fine)."""
    common = ["diff", "-z", "-M", "--no-ext-diff", "--no-textconv", f"{base}...{head}"]
    numstat = run_git([*common[:1], "--numstat", *common[1:]], cwd=git_dir).stdout
    names = run_git([*common[:1], "--name-status", *common[1:]], cwd=git_dir).stdout
    return parse(numstat, names, limit=limit)
