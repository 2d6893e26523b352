"""A nested .gitattributes rewritten for the root: the patterns must still mean what they meant below."""

from __future__ import annotations

from optio.forge.git import _rebase_attributes


def test_the_root_file_is_kept_as_it_is() -> None:
    text = "[attr]log merge=union\n*.md merge=union"
    assert _rebase_attributes(text, "") == text + "\n"


def test_nested_patterns_are_anchored_at_their_directory() -> None:
    text = "# comment\n\n*.log merge=union\n/top.txt -merge\nsub/x.dat binary\nCHANGES\tmerge=union\n"
    assert _rebase_attributes(text, "docs") == (
        "docs/**/*.log merge=union\n"
        "docs/top.txt -merge\n"
        "docs/sub/x.dat binary\n"
        "docs/**/CHANGES merge=union\n"
    )


def test_quoted_patterns_stay_quoted_and_macros_below_the_root_are_dropped() -> None:
    text = '"with space.txt" merge=union\n[attr]mine merge=union\n'
    assert _rebase_attributes(text, "a/b") == '"a/b/**/with space.txt" merge=union\n'
