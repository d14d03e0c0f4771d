"""The client side of the service: ``Client(url=..., token=...)`` over HTTP.

Invariant: a remote client talks to the service's API only. It opens no database, starts no
reconciler and reads no storage; it sends what it submits (a function job's pickled call
included) and unpickles a result only after its bytes match the digest the service's control
plane recorded. :class:`RemoteStore` answers the subset of ``StateStore`` the commands read,
with the same records and the same errors (``JobNotFound`` ...), so a command runs unchanged
over a service; the rights are checked on the service::

    command ─> made.store.jobs(...) ─> RemoteStore ─ GET /v1/jobs ─> service ─> StateStore
    Client.submit(fn) ─> RemoteClient.submit_spec ─ POST /v1/jobs {spec, payload} ─┘
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from gridbridge.client import Client, JobFuture
from gridbridge.scheduler._access import AuditRecord, Role, TokenRecord
from gridbridge.scheduler._db import StoreUnavailable
from gridbridge.scheduler.records import Attempt, Event, Job, SiteHealth
from gridbridge.scheduler.tables import DecisionRow
from gridbridge.states import JobState
from gridbridge.units import redact_url

from ._codec import DIGEST_HEADER, decode, raise_error
from ._rights import Refused

if TYPE_CHECKING:
    from gridbridge.config import GridConfig
    from gridbridge.registry import Registry
    from gridbridge.spec import JobSpec

__all__ = ["BATCH", "RemoteClient", "RemoteStore"]

BATCH = 1000
"""Jobs per request when ``map()`` submits through the service."""


class RemoteStore:
    """The ``StateStore`` reads and writes the commands make, as calls of the service."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        if url.startswith("unix://"):  # serve --socket: the kernel says who we are, no token
            self._http = httpx.Client(base_url="http://gridbridge", timeout=60.0,
                                      transport=httpx.HTTPTransport(
                                          uds=url.removeprefix("unix://")))
        else:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=60.0)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, json: Any = None,
             params: Any = None) -> httpx.Response:
        """One request; an error answer is raised as the service's error."""
        try:
            answer = self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach the gridbridge service at "
                                   f"{redact_url(self.url)} ({type(exc).__name__})") from None
        if answer.status_code >= 400:
            raise_error(answer.status_code, _body(answer))
        return answer

    def _get(self, path: str, **params: Any) -> Any:
        return self.call("GET", path, params={k: v for k, v in params.items()
                                              if v is not None}).json()

    def _post(self, path: str, body: Any = None) -> Any:
        return self.call("POST", path, json=body or {}).json()

    # jobs --------------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return decode(Job, self._get(f"/v1/jobs/{_quote(job_id)}"))  # type: ignore[no-any-return]

    def jobs(self, states: Iterable[JobState] | None = None, limit: int | None = None,
             **match: str | None) -> list[Job]:
        data = self._get("/v1/jobs", limit=limit, state=_states(states), **match)
        return [decode(Job, d) for d in data]

    def count_jobs(self, states: Iterable[JobState] | None = None, **match: str | None) -> int:
        return int(self._get("/v1/jobs/count", state=_states(states), **match))

    def details(self, job_ids: Iterable[str]) -> dict[str, str]:
        return dict(self._post("/v1/jobs/details", {"ids": list(job_ids)}))

    def last_sites(self, job_ids: Iterable[str]) -> dict[str, str]:
        return dict(self._post("/v1/jobs/last-sites", {"ids": list(job_ids)}))

    def job_names(self, job_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        data = self._post("/v1/jobs/names", {"ids": list(job_ids)})
        return {k: (v[0], v[1]) for k, v in data.items()}

    def events(self, job_id: str) -> list[Event]:
        return [decode(Event, d) for d in self._get(f"/v1/jobs/{_quote(job_id)}/events")]

    def attempts(self, job_id: str) -> list[Attempt]:
        return [decode(Attempt, d) for d in self._get(f"/v1/jobs/{_quote(job_id)}/attempts")]

    def decisions(self, job_id: str) -> list[DecisionRow]:
        return [decode(DecisionRow, d)
                for d in self._get(f"/v1/jobs/{_quote(job_id)}/decisions")]

    def detail(self, job_id: str) -> str:
        return str(self._get(f"/v1/jobs/{_quote(job_id)}/detail"))

    def attempt(self, attempt_id: str) -> Attempt:
        return decode(Attempt, self._get(  # type: ignore[no-any-return]
            f"/v1/attempts/{_quote(attempt_id)}"))

    def request_cancel(self, job_id: str, actor: str = "", reason: str | None = None) -> Job:
        """Cancel as the token's user (the service records who; ``actor`` is not sent)."""
        return decode(Job, self._post(  # type: ignore[no-any-return]
            f"/v1/jobs/{_quote(job_id)}/cancel", {"reason": reason} if reason else None))

    def lease_holder(self, name: str) -> tuple[str, float] | None:
        held = self._get(f"/v1/leases/{_quote(name)}")
        return None if held is None else (str(held[0]), float(held[1]))

    # books, sites, access ----------------------------------------------------------------

    def ledger_records(self, job_id: str | None = None) -> list[dict[str, Any]]:
        return list(self._get("/v1/ledger", job_id=job_id))

    def decision_records(self, since: float, until: float) -> list[dict[str, Any]]:
        return list(self._get("/v1/decisions", since=since, until=until))

    def books(self) -> dict[str, Any]:
        """Budgets, currency and allocations, as ``service._books.books_of`` reads them."""
        return dict(self._get("/v1/books"))

    def whoami(self) -> dict[str, str]:
        return dict(self._get("/v1/whoami"))

    def create_token(self, user: str, team: str, role: Role | str,
                     created_by: str = "") -> tuple[TokenRecord, str]:
        data = self._post("/v1/tokens", {"user": user, "team": team, "role": str(role)})
        return decode(TokenRecord, data["record"]), str(data["token"])

    def tokens(self) -> list[TokenRecord]:
        return [decode(TokenRecord, d) for d in self._get("/v1/tokens")]

    def revoke_token(self, token_id: str) -> TokenRecord:
        return decode(TokenRecord, self._post(  # type: ignore[no-any-return]
            f"/v1/tokens/{_quote(token_id)}/revoke"))

    def site_health(self) -> dict[str, SiteHealth]:
        """How each site's calls went, as the service's reconciler last saw them."""
        return {name: SiteHealth(**h) for name, h in self._get("/v1/sites/health").items()}

    def drain_site(self, site: str, drained: bool, actor: str = "", reason: str = "") -> bool:
        """Drain or reopen ``site`` as the token's user (``actor`` is the service's to say)."""
        answer = self._post(f"/v1/sites/{_quote(site)}/drain",
                            {"drained": drained, "reason": reason})
        return bool(answer["changed"])

    def audit_records(self, limit: int | None = None) -> list[AuditRecord]:
        return [decode(AuditRecord, d) for d in self._get("/v1/audit", limit=limit)]


def _body(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def _quote(part: str) -> str:
    """A path segment: an id with a slash or '..' cannot reach another route."""
    from urllib.parse import quote

    return quote(part, safe="")


def _states(states: Iterable[JobState] | None) -> list[str] | None:
    return None if states is None else [s.value for s in states]


class RemoteClient(Client):
    """A :class:`Client` of a gridbridge service (what ``Client(url=...)`` makes)."""

    def __init__(self, config: str | os.PathLike[str] | GridConfig | None = None, *,
                 start: bool = True, registry: Registry | None = None,
                 url: str | None = None, token: str | None = None) -> None:
        url = url or os.environ.get("GRIDBRIDGE_URL", "")
        token = token if token is not None else os.environ.get("GRIDBRIDGE_TOKEN")
        if not url.startswith(("http://", "https://", "unix:///")):
            raise ValueError(f"service URL {redact_url(url)!r}: give http(s)://HOST:PORT or "
                             "unix:///PATH (a socket of serve --socket)")
        self.url = url
        self.store = RemoteStore(url, token)  # type: ignore[assignment]
        self.adapters = {}
        self._remote: RemoteStore = self.store  # type: ignore[assignment]
        self._who: dict[str, str] | None = None

    @property
    def config(self) -> GridConfig:  # type: ignore[override]
        raise ValueError("this needs the federation's configuration, which only the service "
                         "reads: run it on the service's host (without --url)")

    def start(self) -> None:
        """A remote client runs no reconciler: the service does."""

    def _await_change(self, delay: float) -> None:
        time.sleep(delay)

    def close(self) -> None:
        self._remote.close()

    def whoami(self) -> dict[str, str]:
        """The token's user, team and role (asked once)."""
        if self._who is None:
            self._who = self._remote.whoami()
        return self._who

    def _default_owner(self) -> dict[str, str]:
        who = self.whoami()
        return {"user": who["user"], "team": who["team"]}

    def _admit(self, spec: JobSpec) -> None:
        """The service checks admission when it receives the job."""

    def submit_spec(self, spec: JobSpec, payload: bytes | None = None, *,
                    admit: bool = True) -> JobFuture:
        answer = self._remote._post("/v1/jobs", _item(spec, payload) | {"admit": admit})
        return JobFuture(self, str(answer["job_id"]))

    def map(self, fn: Callable[..., Any], items: Iterable[Any], **options: Any) -> list[JobFuture]:
        """Submit ``fn(item)`` for each item, :data:`BATCH` jobs a request."""
        futures: list[JobFuture] = []
        batch: list[dict[str, Any]] = []
        for item in [*items, _END]:
            if item is not _END:
                batch.append(_item(*self._fn_spec(fn, (item,), None, dict(options))))
            if batch and (len(batch) == BATCH or item is _END):
                answer = self._remote._post("/v1/jobs/batch",
                                            {"jobs": batch, "admit": not futures})
                futures += [JobFuture(self, j) for j in answer["job_ids"]]
                batch = []
        return futures

    def return_value(self, job_id: str) -> tuple[bytes, str | None]:
        answer = self._remote.call("GET", f"/v1/jobs/{_quote(job_id)}/result")
        return answer.content, answer.headers.get(DIGEST_HEADER) or None

    def iter_logs(self, job_id: str, *, follow: bool = False) -> Iterator[str]:
        """The job's output as the service streams it (after a rights check there);
        ``follow``: the stream goes on until the job ends, however long it is quiet."""
        path = f"/v1/jobs/{_quote(job_id)}/logs"
        params, timeout = {}, self._remote._http.timeout
        if follow:
            params, timeout = {"follow": "1"}, httpx.Timeout(timeout.connect, read=None)
        try:
            with self._remote._http.stream("GET", path, params=params,
                                           timeout=timeout) as answer:
                if answer.status_code >= 400:
                    answer.read()
                    raise_error(answer.status_code, _body(answer))
                yield from answer.iter_text()
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"cannot reach the gridbridge service at "
                                   f"{redact_url(self.url)} ({type(exc).__name__})") from None

    def preempt(self, job_id: str, *, wait: bool = False) -> str:
        active = [a for a in self.store.attempts(job_id) if a.state.active and a.native_id]
        if not active:
            raise RuntimeError(f"job {job_id} has no running attempt to preempt")
        return self.preempt_running(active[-1].id).id

    def preempt_running(self, attempt_id: str) -> Attempt:
        return decode(Attempt, self._remote._post(  # type: ignore[no-any-return]
            f"/v1/attempts/{_quote(attempt_id)}/preempt"))

    def preempt_attempt(self, site: str, native_id: str, *, wait: bool = False) -> None:
        raise Refused("refused: a native job is preempted on the service's host (rule: "
                      "clients act on attempts, by id)")


_END = object()


def _item(spec: JobSpec, payload: bytes | None) -> dict[str, Any]:
    return {"spec": spec.model_dump(mode="json"),
            "payload": None if payload is None else base64.b64encode(payload).decode()}
