"""The run state machine: exactly the table, nothing else."""

from __future__ import annotations

import pickle

import pytest

from backup import TERMINAL, TRANSITIONS, InvalidTransition, RunState, is_terminal, transition

S = RunState
LEGAL = {
    (S.SCHEDULED, S.RUNNING),
    (S.SCHEDULED, S.FAILED),  # could not start (source gone, policy suspended)
    (S.SCHEDULED, S.MISSED),  # its time passed unclaimed: recorded, never dropped
    (S.RUNNING, S.UPLOADED),
    (S.RUNNING, S.FAILED),  # killed, restic error
    (S.UPLOADED, S.VERIFIED),
    (S.UPLOADED, S.FAILED),  # not listed at the DR site, or the check failed
    (S.UPLOADED, S.PARTIALLY_FAILED),  # verified, but some source files were unreadable
}


@pytest.mark.parametrize("current", list(S))
@pytest.mark.parametrize("target", list(S))
def test_transition_allows_exactly_the_table(current: RunState, target: RunState) -> None:
    if (current, target) in LEGAL:
        assert transition(current, target) is target
        assert transition(current.value, target.value) is target  # rows store strings
    else:
        with pytest.raises(InvalidTransition) as caught:
            transition(current, target)
        assert (caught.value.current, caught.value.target) == (current.value, target.value)
        assert str(caught.value) == f"a backup run cannot go from {current.value!r} to {target.value!r}"


def test_the_table_is_the_documented_machine() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL
    assert {S.VERIFIED, S.FAILED, S.PARTIALLY_FAILED, S.MISSED} == TERMINAL
    assert [is_terminal(s) for s in S] == [s in TERMINAL for s in S]
    assert is_terminal("verified") and not is_terminal("uploaded")


def test_unknown_states_are_an_invalid_transition() -> None:
    with pytest.raises(InvalidTransition, match="'bogus'"):
        transition("bogus", S.RUNNING)
    with pytest.raises(InvalidTransition, match="'done'"):
        transition(S.RUNNING, "done")


def test_the_error_survives_pickling() -> None:  # task queues pickle exceptions
    error = pickle.loads(pickle.dumps(InvalidTransition("verified", "running")))  # noqa: S301 (our own bytes)
    assert (error.current, error.target) == ("verified", "running")
