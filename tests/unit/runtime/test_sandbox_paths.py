"""Which paths the sandbox counts as inside a root: the check that keeps Optio's data dir out of every bind.

Compared as text for speed; it must still mean "is the root or below it", never "starts with the same letters".
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from optio.runtime.sandbox import _under_any, _within

SEGMENT = st.sampled_from(["usr", "usr2", "lib", "opt", "optio", "data", "a", "a.b", "-"])
PATHS = st.lists(SEGMENT, max_size=5).map(lambda parts: Path("/", *parts))


def test_a_sibling_with_the_same_prefix_is_not_inside() -> None:
    assert _within(Path("/usr/lib"), Path("/usr"))
    assert _within(Path("/usr"), Path("/usr"))
    assert not _within(Path("/usr2/lib"), Path("/usr"))
    assert not _within(Path("/opt/optio-data"), Path("/opt/optio"))
    assert _within(Path("/anything"), Path("/"))
    assert _under_any(Path("/usr/bin/git"), ["/usr", "/etc"])
    assert not _under_any(Path("/usrlocal/bin"), ["/usr", "/etc"])


@given(PATHS, PATHS)
def test_inside_means_the_root_or_one_of_its_parents(path: Path, root: Path) -> None:
    assert _within(path, root) == (path == root or root in path.parents)
