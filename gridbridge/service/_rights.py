"""Rights by role: which verbs a role may use, and on whose jobs.

Invariant: every request the service answers passes :func:`check` first; a refusal is one
line naming the rule it broke (:class:`Refused`), and nothing has been read or changed for it.
A job's owner is the identity that submitted it, never what the request says.

    verb          researcher        operator   finance
    submit        as themselves     yes        no
    read          own jobs          every job  every job
    cancel        own jobs          every job  no
    preempt       own jobs          every job  no
    logs/result   own jobs          every job  no
    report        own ledger rows   yes        yes
    admin         no                yes        no        (tokens, the audit, sites)
    metrics       no                yes        yes       (/metrics: every team's books)

A researcher sees only their own jobs, unless the config's ``server.team_read`` lets them
also read (``read`` only: status, story, explain) the jobs of their own team.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gridbridge.scheduler._access import Role

__all__ = ["Identity", "Refused", "Verb", "check"]


class Refused(PermissionError):
    """A request the service will not serve; ``status`` is the HTTP status (401: who you
    are is unknown, 403: you may not). The message is one line naming the rule."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status


class Verb(StrEnum):
    SUBMIT = "submit"
    READ = "read"
    CANCEL = "cancel"
    PREEMPT = "preempt"
    LOGS = "logs"
    RESULT = "result"
    REPORT = "report"
    ADMIN = "admin"
    METRICS = "metrics"


@dataclass(frozen=True)
class Identity:
    """Who a request comes from, as its token says."""

    user: str
    team: str
    role: Role
    token_id: str = ""


_OWN_JOBS = frozenset({Verb.READ, Verb.CANCEL, Verb.PREEMPT, Verb.LOGS, Verb.RESULT})
_ALLOWED: dict[Role, frozenset[Verb]] = {
    Role.OPERATOR: frozenset(Verb),
    Role.RESEARCHER: frozenset({Verb.SUBMIT, Verb.REPORT}) | _OWN_JOBS,
    Role.FINANCE: frozenset({Verb.READ, Verb.REPORT, Verb.METRICS}),
}
_WHY = {
    Verb.SUBMIT: "only researchers and operators submit jobs",
    Verb.CANCEL: "only a job's owner or an operator cancels it",
    Verb.PREEMPT: "only a job's owner or an operator preempts it",
    Verb.LOGS: "finance reads no logs",
    Verb.RESULT: "finance reads no results or payloads",
    Verb.ADMIN: "only operators manage tokens, sites and the audit",
    Verb.METRICS: "only operators and finance scrape metrics, which cover every team",
}


def check(who: Identity, verb: Verb, owner: str | None = None, target: str = "", *,
          owner_team: str | None = None, team_read: bool = False) -> None:
    """Raise :class:`Refused` unless ``who`` may use ``verb`` (on a job owned by the user
    ``owner`` of the team ``owner_team``, when the verb is about one job; ``team_read``: the
    config lets researchers read their team's jobs)."""
    if verb not in _ALLOWED[who.role]:
        raise Refused(f"refused: {who.role.value} {who.user} may not {verb.value}"
                      f"{' ' + target if target else ''} (rule: {_WHY.get(verb, verb.value)})")
    if (owner is not None and who.role is Role.RESEARCHER and verb in _OWN_JOBS
            and owner != who.user
            and not (team_read and verb is Verb.READ and owner_team == who.team)):
        if team_read and verb is Verb.READ:
            raise Refused(f"refused: {who.user} may not {verb.value} {target or 'this job'}, "
                          "which is another team's (rule: researchers read their own team's "
                          "jobs only)")
        raise Refused(f"refused: {who.user} may not {verb.value} {target or 'this job'}, "
                      "which is another user's (rule: researchers act on their own jobs only)")
