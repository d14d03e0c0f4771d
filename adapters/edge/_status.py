"""A poll line of a node (``poll.sh``: ``id TAB word TAB markers TAB result.json``, or for
``gone`` the runtime's last words) as an
:class:`~gridbridge.adapter.AttemptStatus`.

What the site did (the markers ``cancelled``, ``preempted``, ``walltime``) outranks how the
process ended, unless it succeeded; a second launch of an attempt (exit 76) is LOST::

    unknown ─► LOST          starting ─► SUBMITTED        running ─► RUNNING
    gone ────► CANCELLED | PREEMPTED | LOST (by marker)
    result ──► result.json's reason ─► CANCELLED | PREEMPTED (by marker, unless it succeeded)
"""

from __future__ import annotations

from gridbridge.adapter import AttemptStatus
from gridbridge.adapters._rundir import RunFile, result_of, vanished
from gridbridge.states import AttemptState
from gridbridge.wire import ALREADY_RAN_EXIT_CODE

__all__ = ["status"]


def status(node: str, word: str, marks: set[str], result: str) -> AttemptStatus:
    """One line of the poll script, translated."""
    if word == "unknown":
        return AttemptStatus(state=AttemptState.LOST, native_state="unknown",
                             reason=f"no such attempt on node {node}")
    if word == "running":
        return AttemptStatus(state=AttemptState.RUNNING, native_state="running")
    if word == "starting":
        return AttemptStatus(state=AttemptState.SUBMITTED, native_state="starting")
    if word != "result":
        return _gone(marks, result)
    walltime = RunFile.WALLTIME in marks
    try:
        code, state, data = result_of(result)
    except (ValueError, KeyError, TypeError) as exc:
        return AttemptStatus(state=AttemptState.FAILED, native_state="bad-result",
                             reason=f"unreadable result record: {exc!r}"[:500])
    reason = str(data.get("error") or "")
    if code == ALREADY_RAN_EXIT_CODE:
        state, reason = AttemptState.LOST, "a second launch of the attempt"
    elif state is not AttemptState.SUCCEEDED and RunFile.CANCELLED in marks:
        state = AttemptState.CANCELLED
    elif state is not AttemptState.SUCCEEDED and RunFile.PREEMPTED in marks:
        state = AttemptState.PREEMPTED
        reason = "walltime reached" if walltime else reason
    return AttemptStatus(state=state, native_state=f"exited:{code}", exit_code=code,
                         reason=reason[:2000], walltime=walltime)


def _gone(marks: set[str], words: str = "") -> AttemptStatus:
    """The runtime is gone and left no result: what the site did says why, else its last
    words (:func:`gridbridge.adapters._rundir.vanished`)."""
    walltime = RunFile.WALLTIME in marks
    if RunFile.CANCELLED in marks:
        return AttemptStatus(state=AttemptState.CANCELLED, native_state="gone",
                             reason="killed on cancel")
    if RunFile.PREEMPTED in marks:
        return AttemptStatus(state=AttemptState.PREEMPTED, native_state="gone",
                             reason="walltime reached" if walltime else
                             "killed after the preemption grace period", walltime=walltime)
    return AttemptStatus(state=AttemptState.LOST, native_state="gone",
                         reason=vanished(words.strip()))
