"""The lifecycle tables are the whole truth: every pair of states is checked against them."""

from __future__ import annotations

import itertools

import pytest

from gridbridge.states import (
    ATTEMPT_TRANSITIONS,
    JOB_TRANSITIONS,
    AttemptState,
    IllegalTransition,
    JobState,
    check_attempt_transition,
    check_job_transition,
)


def test_tables_cover_every_state() -> None:
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(ATTEMPT_TRANSITIONS) == set(AttemptState)
    for targets in JOB_TRANSITIONS.values():
        assert targets <= set(JobState)
    for targets in ATTEMPT_TRANSITIONS.values():
        assert targets <= set(AttemptState)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(JobState, JobState)))
def test_job_pair_follows_table(old: JobState, new: JobState) -> None:
    if new in JOB_TRANSITIONS[old]:
        check_job_transition(old, new)
    else:
        with pytest.raises(IllegalTransition):
            check_job_transition(old, new)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(AttemptState, AttemptState)))
def test_attempt_pair_follows_table(old: AttemptState, new: AttemptState) -> None:
    if new in ATTEMPT_TRANSITIONS[old]:
        check_attempt_transition(old, new)
    else:
        with pytest.raises(IllegalTransition):
            check_attempt_transition(old, new)


def test_no_self_loops() -> None:
    for s in JobState:
        assert s not in JOB_TRANSITIONS[s]
    for a in AttemptState:
        assert a not in ATTEMPT_TRANSITIONS[a]


def test_terminal_states_have_no_exits_and_others_do() -> None:
    for s in JobState:
        assert (len(JOB_TRANSITIONS[s]) == 0) == s.terminal, s
    for a in AttemptState:
        assert (len(ATTEMPT_TRANSITIONS[a]) == 0) == a.terminal, a
        assert a.active == (not a.terminal)
    assert {s for s in JobState if s.terminal} == {
        JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT,
    }


def test_every_state_reachable_from_the_start() -> None:
    def reachable(start, table):  # type: ignore[no-untyped-def]
        seen, todo = {start}, [start]
        while todo:
            for nxt in table[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reachable(JobState.PENDING, JOB_TRANSITIONS) == set(JobState)
    assert reachable(AttemptState.SUBMITTING, ATTEMPT_TRANSITIONS) == set(AttemptState)


def test_preempted_and_lost_are_not_failed() -> None:
    distinct = {AttemptState.PREEMPTED, AttemptState.LOST, AttemptState.FAILED}
    assert len(distinct) == 3
    assert len({s.value for s in distinct}) == 3
    for s in (AttemptState.PREEMPTED, AttemptState.LOST):
        assert s != AttemptState.FAILED
        assert s.terminal
        # every live attempt can end either way, independently of FAILED
        for live in (AttemptState.SUBMITTED, AttemptState.RUNNING):
            assert s in ATTEMPT_TRANSITIONS[live]
    # a preempted or lost attempt puts its job back to PENDING, which FAILED jobs never leave
    assert JobState.PENDING in JOB_TRANSITIONS[JobState.RUNNING]
    assert JOB_TRANSITIONS[JobState.FAILED] == frozenset()


@pytest.mark.parametrize("old", list(JobState))
def test_job_message_names_allowed_moves(old: JobState) -> None:
    illegal = [n for n in JobState if n not in JOB_TRANSITIONS[old]]
    new = illegal[0]
    with pytest.raises(IllegalTransition) as info:
        check_job_transition(old, new)
    msg = str(info.value)
    assert f"{old.value} -> {new.value}" in msg
    for allowed in JOB_TRANSITIONS[old]:
        assert allowed.value in msg.split("allowed from", 1)[1]
    if not JOB_TRANSITIONS[old]:
        assert "terminal" in msg


@pytest.mark.parametrize("old", list(AttemptState))
def test_attempt_message_names_allowed_moves(old: AttemptState) -> None:
    new = next(n for n in AttemptState if n not in ATTEMPT_TRANSITIONS[old])
    with pytest.raises(IllegalTransition) as info:
        check_attempt_transition(old, new)
    msg = str(info.value)
    assert f"{old.value} -> {new.value}" in msg
    tail = msg.split("allowed from", 1)[1]
    for allowed in ATTEMPT_TRANSITIONS[old]:
        assert allowed.value in tail
    if not ATTEMPT_TRANSITIONS[old]:
        assert "terminal" in tail


def test_illegal_transition_is_a_runtime_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)


def test_states_are_plain_strings() -> None:
    for s in [*JobState, *AttemptState]:
        assert str(s) == s.value
        assert type(s)(s.value) is s
