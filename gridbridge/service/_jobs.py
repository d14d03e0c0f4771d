"""The job endpoints: submit, list, read, cancel, preempt, logs, results.

Invariant: a job-scoped verb reads the job's owner from the store and checks it before it
reads or changes anything else; a submitted job's owner is the caller (a spec naming another
user or team is refused); a function job's payload arrives with its spec and is pinned by
the service, never by the caller.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from gridbridge.config import explain_errors
from gridbridge.scheduler._access import Role
from gridbridge.scheduler.records import Job, JobNotFound
from gridbridge.spec import JobSpec
from gridbridge.states import JobState
from gridbridge.views import plain

from ._app import Call, Endpoint, Service
from ._codec import DIGEST_HEADER, encode
from ._rights import Identity, Refused, Verb, check

__all__ = ["ENDPOINTS", "body_json"]


def body_json(call: Call) -> Any:
    try:
        return json.loads(call.body or b"{}")
    except ValueError:
        raise ValueError("the request body is not JSON") from None


def owned_job(service: Service, call: Call, verb: Verb, job_id: str) -> Job:
    """The job ``job_id``, once ``call``'s caller may use ``verb`` on it."""
    check(call.who, verb, target=f"job {job_id}")  # a role that may not: before any read
    job = service.store.job(job_id)
    check(call.who, verb, owner=job.spec.owner.user, target=f"job {job_id}",
          owner_team=job.spec.owner.team, team_read=_team_read(service))
    return job


def _team_read(service: Service) -> bool:
    return service.made.config.server.team_read


def _owned_ids(service: Service, who: Identity, ids: list[str]) -> list[str]:
    """Those of ``ids`` the caller may read (a researcher: their own, and their team's where
    the config says so)."""
    if who.role is not Role.RESEARCHER:
        return ids
    team = _team_read(service)
    mine = []
    for job_id in ids:
        with contextlib.suppress(JobNotFound):
            owner = service.store.job(job_id).spec.owner
            if owner.user == who.user or (team and owner.team == who.team):
                mine.append(job_id)
    return mine


# submit -------------------------------------------------------------------------------------

def _spec_of(who: Identity, item: dict[str, Any]) -> tuple[JobSpec, bytes | None]:
    """The spec and payload of one submitted job, its owner checked against the caller."""
    try:
        spec = JobSpec.model_validate(item.get("spec"))
    except ValidationError as exc:
        raise ValueError(explain_errors(exc, "invalid job option", JobSpec)) from None
    if (spec.owner.user, spec.owner.team) != (who.user, who.team):
        raise Refused(f"refused: {who.user} may not submit a job owned by "
                      f"{spec.owner.user!r} of team {spec.owner.team!r} (rule: a job's owner "
                      "is the identity that submits it)")
    payload = item.get("payload")
    return spec, None if payload is None else base64.b64decode(payload, validate=True)


def _submit(service: Service, call: Call) -> Any:
    check(call.who, Verb.SUBMIT)
    body = body_json(call)
    spec, payload = _spec_of(call.who, body)
    job_id = service.made.submit_spec(spec, payload, admit=bool(body.get("admit", True))).job_id
    call.target, call.detail = f"job {job_id}", f"name {spec.name}"
    return {"job_id": job_id}


def _submit_many(service: Service, call: Call) -> Any:
    """Many jobs in one request (what ``map()`` sends): all checked before any is made,
    then recorded in one transaction; the first is checked for admission when ``admit``."""
    check(call.who, Verb.SUBMIT)
    body = body_json(call)
    jobs = [_spec_of(call.who, item) for item in body.get("jobs", [])]
    made = service.made.submit_specs(jobs, admit=bool(body.get("admit", True)))
    ids = [future.job_id for future in made]
    call.target = f"job {ids[0]}" if ids else ""
    call.detail = f"{len(ids)} jobs" + (f", {ids[0]}..{ids[-1]}" if ids else "")
    return {"job_ids": ids}


# reads ----------------------------------------------------------------------------------------

def _match(service: Service, call: Call) -> dict[str, Any]:
    """The listing's filters; a researcher's listing is always of their own jobs, or, where
    the config lets researchers read their team's, of their team's (``--user`` narrows it)."""
    match = {k: call.query.get(k) for k in ("user", "team", "name")}
    who = call.who
    if who.role is Role.RESEARCHER and _team_read(service):
        if match["team"] not in (None, who.team):
            raise Refused(f"refused: {who.user} may not list team {match['team']}'s jobs "
                          "(rule: researchers read their own team's jobs only)")
        match["team"] = who.team
    elif who.role is Role.RESEARCHER:
        if match["user"] not in (None, who.user):
            raise Refused(f"refused: {who.user} may not list {match['user']}'s jobs "
                          "(rule: researchers see their own jobs only)")
        match["user"] = who.user
    states = [JobState(s) for s in call.lists.get("state", [])] or None
    return {"states": states, **match}


def _jobs(service: Service, call: Call) -> Any:
    check(call.who, Verb.READ)
    limit = int(call.query["limit"]) if "limit" in call.query else None
    return encode(service.store.jobs(limit=limit, **_match(service, call)))


def _count(service: Service, call: Call) -> Any:
    check(call.who, Verb.READ)
    return service.store.count_jobs(**_match(service, call))


def _by_ids(method: str) -> Any:
    def handler(service: Service, call: Call) -> Any:
        check(call.who, Verb.READ)
        ids = _owned_ids(service, call.who, list(body_json(call).get("ids", [])))
        return {"details": service.store.details, "last_sites": service.store.last_sites,
                "job_names": service.store.job_names}[method](ids)
    return handler


def _job(service: Service, call: Call) -> Any:
    return encode(owned_job(service, call, Verb.READ, call.path["job"]))


def _job_part(part: str) -> Any:
    def handler(service: Service, call: Call) -> Any:
        job_id = call.path["job"]
        owned_job(service, call, Verb.READ, job_id)
        reads = {"events": service.store.events, "attempts": service.store.attempts,
                 "decisions": service.store.decisions, "detail": service.store.detail}
        answer = reads[part](job_id)
        return answer if isinstance(answer, str) else encode(answer)
    return handler


def _attempt(service: Service, call: Call) -> Any:
    attempt = service.store.attempt(call.path["attempt"])
    owned_job(service, call, Verb.READ, attempt.job_id)
    return encode(attempt)


# changes --------------------------------------------------------------------------------------

def _cancel(service: Service, call: Call) -> Any:
    job_id = call.path["job"]
    call.target = f"job {job_id}"
    owned_job(service, call, Verb.CANCEL, job_id)
    reason = body_json(call).get("reason")
    return encode(service.store.request_cancel(
        job_id, actor=call.who.user, reason=plain(reason) if isinstance(reason, str) else None))


def _preempt(service: Service, call: Call) -> Any:
    attempt_id = call.path["attempt"]
    call.target = f"attempt {attempt_id}"
    owned_job(service, call, Verb.PREEMPT, service.store.attempt(attempt_id).job_id)
    return encode(service.made.preempt_running(attempt_id))


def _logs(service: Service, call: Call) -> Any:
    job_id = call.path["job"]
    owned_job(service, call, Verb.LOGS, job_id)
    follow = call.query.get("follow", "") in {"1", "true"}
    if follow and not _FOLLOWERS.acquire(blocking=False):
        raise RuntimeError(f"{FOLLOWERS} logs are followed already, the most this service "
                           "streams at once (each holds a worker thread); try again later")
    pieces = service.made.iter_logs(job_id, follow=follow)  # read part by part as sent
    if follow:
        pieces = _released(pieces)
    return StreamingResponse((p.encode() for p in pieces),
                             media_type="text/plain; charset=utf-8")


FOLLOWERS = 16
"""How many ``logs --follow`` streams the service serves at once: each holds one of the
server's worker threads for as long as it runs, and the API needs the others."""
_FOLLOWERS = threading.BoundedSemaphore(FOLLOWERS)


def _released(pieces: Iterator[str]) -> Iterator[str]:
    try:
        yield from pieces
    finally:
        _FOLLOWERS.release()


def _result(service: Service, call: Call) -> Any:
    job_id = call.path["job"]
    job = owned_job(service, call, Verb.RESULT, job_id)
    if job.state is not JobState.SUCCEEDED or job.spec.callable_ref is None:
        raise RuntimeError(f"job {job_id} has no return value ({job.state.value})")
    data, digest = service.made.return_value(job_id)
    return Response(data, media_type="application/octet-stream",
                    headers={DIGEST_HEADER: digest or ""})


def _lease(service: Service, call: Call) -> Any:
    check(call.who, Verb.READ)
    return service.store.lease_holder(call.path["name"])


ENDPOINTS = [
    Endpoint("POST", "/v1/jobs", "submit", True, _submit),
    Endpoint("POST", "/v1/jobs/batch", "submit", True, _submit_many),
    Endpoint("GET", "/v1/jobs", "list jobs", False, _jobs),
    Endpoint("GET", "/v1/jobs/count", "list jobs", False, _count),
    Endpoint("POST", "/v1/jobs/details", "list jobs", False, _by_ids("details")),
    Endpoint("POST", "/v1/jobs/last-sites", "list jobs", False, _by_ids("last_sites")),
    Endpoint("POST", "/v1/jobs/names", "list jobs", False, _by_ids("job_names")),
    Endpoint("GET", "/v1/jobs/{job}", "status", False, _job),
    Endpoint("GET", "/v1/jobs/{job}/events", "status", False, _job_part("events")),
    Endpoint("GET", "/v1/jobs/{job}/attempts", "status", False, _job_part("attempts")),
    Endpoint("GET", "/v1/jobs/{job}/decisions", "explain", False, _job_part("decisions")),
    Endpoint("GET", "/v1/jobs/{job}/detail", "status", False, _job_part("detail")),
    Endpoint("POST", "/v1/jobs/{job}/cancel", "cancel", True, _cancel),
    Endpoint("GET", "/v1/jobs/{job}/logs", "logs", False, _logs),
    Endpoint("GET", "/v1/jobs/{job}/result", "result", False, _result),
    Endpoint("GET", "/v1/attempts/{attempt}", "status", False, _attempt),
    Endpoint("POST", "/v1/attempts/{attempt}/preempt", "preempt", True, _preempt),
    Endpoint("GET", "/v1/leases/{name}", "status", False, _lease),
]
