from __future__ import annotations

from itertools import product

import pytest

from optio.domain.states import (
    TERMINAL,
    TRANSITIONS,
    AgentState,
    InvalidTransition,
    JobRunState,
    PrReviewState,
    RepoTaskState,
    RunKind,
    can_transition,
    check_transition,
    is_terminal,
    states_of,
)

STATE_ENUMS = {
    RunKind.REPO_TASK: RepoTaskState,
    RunKind.JOB_RUN: JobRunState,
    RunKind.PR_REVIEW: PrReviewState,
    RunKind.AGENT: AgentState,
}

ALL_PAIRS = [
    (kind, src, dst) for kind, enum in STATE_ENUMS.items() for src, dst in product([s.value for s in enum], repeat=2)
]


def _pair_id(pair: tuple[RunKind, str, str]) -> str:
    kind, src, dst = pair
    return f"{kind.value}:{src}->{dst}"


@pytest.mark.parametrize("pair", ALL_PAIRS, ids=[_pair_id(p) for p in ALL_PAIRS])
def test_check_transition_raises_exactly_when_not_allowed(pair: tuple[RunKind, str, str]) -> None:
    kind, src, dst = pair
    allowed = dst in TRANSITIONS[kind][src]
    assert can_transition(kind, src, dst) is allowed
    if allowed:
        check_transition(kind, src, dst)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition(kind, src, dst)
        message = str(info.value)
        assert repr(src) in message
        assert repr(dst) in message
        assert kind.value in message
        assert (info.value.kind, info.value.from_state, info.value.to_state) == (kind, src, dst)


def test_every_kind_has_a_table_and_a_terminal_set() -> None:
    assert set(TRANSITIONS) == set(RunKind)
    assert set(TERMINAL) == set(RunKind)


@pytest.mark.parametrize("kind", list(RunKind))
def test_table_covers_exactly_the_enum_states(kind: RunKind) -> None:
    values = {s.value for s in STATE_ENUMS[kind]}
    assert states_of(kind) == values
    for src, targets in TRANSITIONS[kind].items():
        assert targets <= values, f"{kind.value}:{src} leads to unknown states {targets - values}"
        assert src not in targets, f"{kind.value}:{src} has a self loop"


@pytest.mark.parametrize("kind", list(RunKind))
def test_terminal_sets_are_consistent(kind: RunKind) -> None:
    terminal = TERMINAL[kind]
    assert terminal <= states_of(kind)
    assert terminal, "every kind has a way to end"
    for state in states_of(kind):
        assert is_terminal(kind, state) is (state in terminal)
        if not TRANSITIONS[kind][state]:
            assert state in terminal, f"{kind.value}:{state} is a dead end but not terminal"
    for state in terminal:
        # A terminal run only moves again when a person retries it, which always re-queues it.
        assert TRANSITIONS[kind][state] <= {"queued"}


@pytest.mark.parametrize("kind", list(RunKind))
def test_every_non_terminal_state_can_reach_a_terminal_state(kind: RunKind) -> None:
    table = TRANSITIONS[kind]
    for start in states_of(kind) - TERMINAL[kind]:
        seen = {start}
        frontier = [start]
        while frontier:
            for nxt in table[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL[kind], f"{kind.value}:{start} can never end"


def test_completed_is_final_for_runs_with_a_result() -> None:
    for kind in (RunKind.REPO_TASK, RunKind.JOB_RUN, RunKind.PR_REVIEW):
        assert TRANSITIONS[kind]["completed"] == frozenset()
    assert TRANSITIONS[RunKind.AGENT]["archived"] == frozenset()


@pytest.mark.parametrize("kind", list(RunKind))
def test_unknown_from_state_is_rejected_with_a_clear_message(kind: RunKind) -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(kind, "bogus", "queued")
    assert "'bogus'" in str(info.value)
    assert "'queued'" in str(info.value)
    assert "none (terminal)" in str(info.value)
    assert not can_transition(kind, "bogus", "queued")


def test_message_lists_the_allowed_targets() -> None:
    with pytest.raises(InvalidTransition) as info:
        check_transition(RunKind.JOB_RUN, "queued", "completed")
    assert "allowed from 'queued': cancelled, failed, running" in str(info.value)


def test_invalid_transition_is_a_value_error() -> None:
    assert issubclass(InvalidTransition, ValueError)
