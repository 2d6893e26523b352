"""The log size cap: what fits is kept in order, everything after the first overflow is dropped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from optio.store.logs import within_cap

entries = st.lists(st.tuples(st.sampled_from(["stdout", "stderr", "event"]), st.text(max_size=40)), max_size=60)


@given(entries=entries, stored=st.integers(min_value=0, max_value=500), cap=st.integers(min_value=1, max_value=800),
       dropping=st.booleans())
def test_kept_is_a_prefix_within_the_cap(entries: list[tuple[str, str]], stored: int, cap: int,
                                         dropping: bool) -> None:
    kept, kept_bytes, dropped = within_cap(entries, stored_bytes=stored, cap=cap, dropping=dropping)
    sizes = [len(t.encode("utf-8", errors="replace")) + 1 for _, t in entries]
    assert kept == entries[: len(kept)]
    assert kept_bytes == sum(sizes[: len(kept)]) and dropped == sum(sizes[len(kept):])
    if dropping:
        assert kept == []
    elif kept:
        assert stored + kept_bytes <= cap
    if len(kept) < len(entries) and not dropping:
        assert stored + kept_bytes + sizes[len(kept)] > cap
