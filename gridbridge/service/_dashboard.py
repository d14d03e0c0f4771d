"""The dashboard ``serve --listen`` shows at ``/``: jobs, one job's story and log, sites and
this month's spend, as server-rendered HTML that refreshes itself.

Invariant: every page and fragment is answered for an identity, exactly as the API answers
it (:func:`._rights.check`, the same owner rules); the browser signs in once with an API token
(or, with ``server.oidc``, a JWT), kept in an HttpOnly, SameSite=Strict cookie, and a bearer
header works too. Every value shown is escaped. Nothing is fetched from outside the service:
the stylesheet and the script ship in the package (``ui/``), and the Content-Security-Policy
says so to the browser::

    /            -> /ui/jobs
    /ui/login    GET: the form; POST: token -> cookie
    /ui/jobs     ?state= &user= &team= &site= &page=    (50 a page; researchers: their own)
    /ui/jobs/ID  story, attempts, the last placement round, cost; /ui/jobs/ID/log (text)
    /ui/sites    health, drain, capacity, running attempts, price
    /ui/spend    this month per team against its budget, with the month's forecast
    any page with ?fragment=1: only its live part (what the script swaps in every 3 s)
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from gridbridge.scheduler._access import Role
from gridbridge.scheduler.records import JobNotFound
from gridbridge.states import JobState
from gridbridge.units import fmt_money, fmt_time

from ._app import Service
from ._rights import Identity, Refused, Verb, check

__all__ = ["routes"]

COOKIE = "gb_session"
PAGE = 50
"""Jobs on one page of the jobs list."""
LOG_TAIL = 256 * 1024
"""The most of a job's log the job page shows (its end)."""
_FORM_BYTES = 16 * 1024
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _asset(name: str) -> str:
    return resources.files("gridbridge.service").joinpath("ui", name).read_text("utf-8")


# who ----------------------------------------------------------------------------------------

def _who(service: Service, request: Request) -> Identity | None:
    """The identity the request's bearer header or session cookie names, or None."""
    header = request.headers.get("authorization")
    if not header and request.cookies.get(COOKIE):
        header = f"Bearer {request.cookies[COOKIE]}"
    peer = (request.client.host, request.client.port) if request.client else None
    try:
        return service.authenticate(header, peer)
    except Refused:
        return None


def _page(who: Identity | None, title: str, body: str, *, status: int = 200) -> Response:
    nav = ""
    if who is not None:
        nav = ("<nav><a href='/ui/jobs'>Jobs</a><a href='/ui/sites'>Sites</a>"
               "<a href='/ui/spend'>Spend</a><span class='who'>"
               f"{_e(who.user)} ({_e(who.team)}, {_e(who.role.value)})</span>"
               "<form method='post' action='/ui/logout'><button>Sign out</button></form></nav>")
    text = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_e(title)} - gridbridge</title>"
            "<link rel='icon' href='/ui/favicon.svg' type='image/svg+xml'>"
            "<link rel='stylesheet' href='/ui/app.css'><script src='/ui/app.js' defer></script>"
            f"</head><body><header><a class='brand' href='/ui/jobs'>gridbridge</a>{nav}</header>"
            f"<main><h1>{_e(title)}</h1>{body}</main></body></html>")
    return _secure(HTMLResponse(text, status))


def _secure(answer: Response) -> Response:
    answer.headers["content-security-policy"] = _CSP
    answer.headers["x-content-type-options"] = "nosniff"
    answer.headers["referrer-policy"] = "no-referrer"
    answer.headers["cache-control"] = "no-store"
    return answer


def _live(url: str, inner: str) -> str:
    """The part of a page the script fetches again (``url`` with ``fragment=1``)."""
    return f"<section data-refresh='{_e(url)}'>{inner}</section>"


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]], ident: str) -> str:
    """A table of already-escaped cells (``data-col`` names each, for tests and CSS)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td data-col='{_e(c)}'>{v}</td>"
                                    for c, v in zip(columns, row, strict=True)) + "</tr>"
                   for row in rows)
    return (f"<div class='scroll'><table id='{_e(ident)}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


# pages --------------------------------------------------------------------------------------

def _jobs(service: Service, who: Identity, request: Request) -> str:
    q = request.query_params
    check(who, Verb.READ)
    states = [JobState(s) for s in q.getlist("state") if s in JobState.__members__]
    match: dict[str, str | None] = {"user": q.get("user") or None,
                                    "team": q.get("team") or None}
    if who.role is Role.RESEARCHER:  # their own jobs, or their team's where the config says
        if service.made.config.server.team_read:
            match = {"user": match["user"], "team": who.team}
        else:
            match = {"user": who.user, "team": None}
    raw = q.get("page") or "0"
    page = int(raw) if re.fullmatch(r"[0-9]{1,6}", raw) else 0
    site = q.get("site") or None
    store = service.store
    jobs = store.jobs(states or None, PAGE + 1, offset=page * PAGE, site=site, **match)
    more, jobs = len(jobs) > PAGE, jobs[:PAGE]
    details = store.details([j.id for j in jobs])
    sites = store.last_sites([j.id for j in jobs])
    rows = [(f"<a href='/ui/jobs/{_e(j.id)}'>{_e(j.id)}</a>", _e(j.name),
             f"<span class='state {_e(j.state.value.lower())}'>{_e(j.state.value)}</span>",
             _e(sites.get(j.id, "")), _e(j.spec.owner.user), _e(j.spec.owner.team),
             _e(fmt_time(j.created_at)), _e(details.get(j.id, ""))) for j in jobs]
    keep = [(k, v) for k, v in q.multi_items() if k not in ("page", "fragment")]
    pager = ""
    if page:
        pager += f"<a href='?{_e(urlencode([*keep, ('page', page - 1)]))}'>newer</a>"
    if more:
        pager += f"<a href='?{_e(urlencode([*keep, ('page', page + 1)]))}'>older</a>"
    empty = "" if rows else "<p class='note'>No job matches.</p>"
    return (_table(["job", "name", "state", "site", "user", "team", "submitted", "why"], rows,
                   "jobs") + empty + f"<p class='pager'>page {page + 1} {pager}</p>")


def _filters(request: Request, service: Service) -> str:
    q = request.query_params
    chosen = set(q.getlist("state"))
    states = "".join(f"<option value='{s.value}'{' selected' if s.value in chosen else ''}>"
                     f"{s.value}</option>" for s in JobState)
    sites = "".join(f"<option value='{_e(s.name)}'"
                    f"{' selected' if q.get('site') == s.name else ''}>{_e(s.name)}</option>"
                    for s in service.made.config.sites)
    return ("<form class='filters' method='get' action='/ui/jobs'>"
            f"<label>state <select name='state'><option value=''>any</option>{states}"
            "</select></label>"
            f"<label>user <input name='user' value='{_e(q.get('user', ''))}'></label>"
            f"<label>team <input name='team' value='{_e(q.get('team', ''))}'></label>"
            f"<label>site <select name='site'><option value=''>any</option>{sites}</select>"
            "</label><button>Filter</button></form>")


def _job(service: Service, who: Identity, job_id: str) -> str:
    check(who, Verb.READ, target=f"job {job_id}")
    store = service.store
    job = store.job(job_id)
    check(who, Verb.READ, owner=job.spec.owner.user, target=f"job {job_id}",
          owner_team=job.spec.owner.team, team_read=service.made.config.server.team_read)
    # what a job cost is the books': its owner's, finance's and operators' (as the API's
    # ledger), not a teammate's who may only read it under team_read
    books = who.role is not Role.RESEARCHER or job.spec.owner.user == who.user
    spent = (fmt_money(sum(float(r["cost"]) for r in store.ledger_records(job_id)))
             if books else "")
    summary = _table(["state", "owner", "attempts", "cost so far", "submitted", "why"], [(
        f"<span class='state {_e(job.state.value.lower())}'>{_e(job.state.value)}</span>",
        _e(f"{job.spec.owner.user} ({job.spec.owner.team})"), _e(job.attempts),
        _e(spent), _e(fmt_time(job.created_at)), _e(store.detail(job_id)))],
        "summary")
    story = _table(["when", "what", "from", "to", "why", "by"], [
        (_e(fmt_time(ev.at)), _e(ev.kind), _e(ev.old), _e(ev.new), _e(ev.reason),
         _e(ev.actor)) for ev in store.events(job_id)], "story")
    attempts = _table(["attempt", "site", "offer", "state", "started", "ended", "last step",
                       "why"], [
        (_e(a.number), _e(a.site), _e(a.offer_key or ""), _e(a.state.value),
         _e(fmt_time(a.started_at)), _e(fmt_time(a.ended_at)),
         _e("" if a.last_step is None else a.last_step), _e(a.reason))
        for a in store.attempts(job_id)], "attempts")
    decisions = store.decisions(job_id)
    latest = [d for d in decisions if decisions and d.at == decisions[-1].at]
    placed = _table(["site", "offer", "chosen", "feasible", "expected cost", "why"], [
        (_e(d.site), _e(d.offer_key or ""), "yes" if d.chosen else "", "yes" if d.feasible
         else "no", _e("" if d.expected_cost is None else fmt_money(d.expected_cost)),
         _e(d.reason)) for d in latest], "decisions")
    return (f"{summary}<h2>Story</h2>{story}<h2>Attempts</h2>{attempts}"
            f"<h2>Last placement round</h2>{placed}")


def _log_panel(service: Service, who: Identity, job_id: str) -> str:
    try:
        job = service.store.job(job_id)
        check(who, Verb.LOGS, owner=job.spec.owner.user, target=f"job {job_id}",
              owner_team=job.spec.owner.team, team_read=service.made.config.server.team_read)
    except Refused as exc:
        return f"<h2>Log</h2><p class='note'>{_e(exc)}</p>"
    return (f"<h2>Log</h2><pre id='log' data-log='/ui/jobs/{_e(job_id)}/log'>"
            "</pre>")


def _log(service: Service, who: Identity, job_id: str) -> str:
    job = service.store.job(job_id)
    check(who, Verb.LOGS, owner=job.spec.owner.user, target=f"job {job_id}",
          owner_team=job.spec.owner.team, team_read=service.made.config.server.team_read)
    text = ""
    for piece in service.made.iter_logs(job_id):
        text = (text + piece)[-LOG_TAIL:]
    return text


def _sites(service: Service, who: Identity) -> str:
    check(who, Verb.READ)
    store, config = service.store, service.made.config
    health, drained, tallies = store.site_health(), store.drained_sites(), store.tallies()
    rows = []
    for s in config.sites:
        seen = health.get(s.name)
        up = seen is None or seen.healthy
        running = sum(n for (site, state), n in tallies.attempts.items()
                      if site == s.name and state == "RUNNING")
        state = ("<span class='state healthy'>healthy</span>" if up else
                 "<span class='state degraded'>degraded</span>")
        rows.append((_e(s.name), _e(s.tier.value), state,
                     "drained" if s.name in drained else "", _e(s.capacity.cpus),
                     _e(running), _e(fmt_money(s.price.per_core_hour)),
                     _e("" if up or seen is None else f"{seen.phase}: {seen.error}")))
    return _table(["site", "tier", "health", "drain", "cpus", "running", "per core-hour",
                   "last error"], rows, "sites")


def _spend(service: Service, who: Identity) -> str:
    if who.role is Role.RESEARCHER:
        raise Refused(f"refused: researcher {who.user} may not read every team's spend (rule: "
                      "a researcher's report holds their own rows: gridbridge report costs)")
    check(who, Verb.REPORT)
    config, store = service.made.config, service.store
    now = time.time()
    start = datetime.fromtimestamp(now, UTC).replace(day=1, hour=0, minute=0, second=0,
                                                     microsecond=0)
    after = (start.replace(year=start.year + 1, month=1) if start.month == 12
             else start.replace(month=start.month + 1))
    spent = store.spent_since(start.timestamp())
    budgets = config.budgets
    teams = sorted({k[5:] for k in spent if k.startswith("team:")} | set(budgets.teams))
    share = (now - start.timestamp()) / (after.timestamp() - start.timestamp())
    cur = budgets.currency
    rows = []
    # a team not named draws on the default pool, shared by all of them (its own row)
    pools = [(team, spent.get(f"team:{team}", 0.0), budgets.teams.get(team))
             for team in teams]
    if budgets.default is not None:
        pools.append(("(other teams: one shared pool)",
                      sum(used for t, used, _ in pools if t not in budgets.teams),
                      budgets.default))
    for team, used, budget in pools:
        forecast = used / share if share > 0 else used
        rows.append((_e(team), _e(f"{fmt_money(used)} {cur}"),
                     _e("" if budget is None else f"{fmt_money(budget)} {cur}"),
                     _e("" if budget is None else f"{fmt_money(budget - used)} {cur}"),
                     _e(f"{fmt_money(forecast)} {cur}"),
                     "over" if budget is not None and forecast > budget else ""))
    total = sum(spent.get(f"team:{t}", 0.0) for t in teams)
    return (f"<p class='note'>{_e(start.strftime('%B %Y'))}: {share:.0%} of the month gone; "
            f"spent <span data-tile='spent'>{_e(fmt_money(total))}</span> {_e(cur)}. "
            "The forecast runs this month's pace to its end.</p>"
            + _table(["team", "spent", "budget", "left", "forecast", "alert"], rows, "spend"))


# routing ------------------------------------------------------------------------------------

def _refused(service: Service, who: Identity, request: Request, exc: Refused) -> None:
    """A refusal is audited as the API's are (the verb names the page)."""
    service.audit(who, "dashboard", request.url.path[:128], "refused",
                  request.client.host if request.client else "", str(exc))


Render = Callable[[Service, Identity, Request], str]


def _guarded(service: Service, title: Callable[[Request], str], render: Render,
             live: bool = True, before: Callable[[Request], str] | None = None) -> Any:
    """A page: sign-in first, then ``render`` in the thread pool (store reads block); a
    refusal or an unknown job is a page saying so, with the API's status."""
    async def page(request: Request) -> Response:
        who = await run_in_threadpool(_who, service, request)
        if who is None:
            return RedirectResponse(f"/ui/login?{urlencode({'next': request.url.path})}", 303)
        try:
            inner = await run_in_threadpool(render, service, who, request)
        except Refused as exc:
            await run_in_threadpool(_refused, service, who, request, exc)
            return _page(who, "Refused", f"<p class='note'>{_e(exc)}</p>", status=exc.status)
        except JobNotFound as exc:
            return _page(who, "Not found", f"<p class='note'>{_e(exc)}</p>", status=404)
        if request.query_params.get("fragment") == "1":
            return _secure(HTMLResponse(inner))
        url = request.url.path + "?" + urlencode(
            [*request.query_params.multi_items(), ("fragment", "1")])
        body = (before(request) if before else "") + (_live(url, inner) if live else inner)
        return _page(who, title(request), body)

    return page


def routes(service: Service) -> list[Route]:
    """The dashboard's routes, over ``service``."""

    async def root(_request: Request) -> Response:
        return RedirectResponse("/ui/jobs", 303)

    async def login_form(request: Request) -> Response:
        nxt = request.query_params.get("next", "/ui/jobs")
        bad = request.query_params.get("bad")
        note = "<p class='note'>That token is unknown or revoked.</p>" if bad else ""
        return _page(None, "Sign in", f"{note}<form class='login' method='post' "
                     f"action='/ui/login'><input type='hidden' name='next' value='{_e(nxt)}'>"
                     "<label>API token <input name='token' type='password' "
                     "autocomplete='off' required></label><button>Sign in</button></form>"
                     "<p class='note'>An operator makes tokens: <code>gridbridge admin "
                     "token create</code>.</p>")

    async def login(request: Request) -> Response:
        body = bytearray()  # a urlencoded form of two short fields
        async for chunk in request.stream():
            body += chunk
            if len(body) > _FORM_BYTES:
                return PlainTextResponse("the form is too large", 413)
        form = parse_qs(bytes(body).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        nxt = (form.get("next") or ["/ui/jobs"])[0]
        if not nxt.startswith("/ui/") or "//" in nxt or "\\" in nxt:
            nxt = "/ui/jobs"  # no open redirect
        peer = (request.client.host, request.client.port) if request.client else None
        try:
            await run_in_threadpool(service.authenticate, f"Bearer {token}", peer)
        except Refused:
            return RedirectResponse(f"/ui/login?{urlencode({'bad': 1, 'next': nxt})}", 303)
        answer = RedirectResponse(nxt, 303)
        answer.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                          secure=request.url.scheme == "https", path="/")
        return answer

    async def logout(_request: Request) -> Response:
        answer = RedirectResponse("/ui/login", 303)
        answer.delete_cookie(COOKIE, path="/")
        return answer

    async def log(request: Request) -> Response:
        who = await run_in_threadpool(_who, service, request)
        if who is None:
            return PlainTextResponse("sign in first", 401)
        try:
            text = await run_in_threadpool(_log, service, who, request.path_params["job"])
        except Refused as exc:
            await run_in_threadpool(_refused, service, who, request, exc)
            return PlainTextResponse(str(exc), exc.status)
        except JobNotFound as exc:
            return PlainTextResponse(str(exc), 404)
        return _secure(PlainTextResponse(text))

    def asset(name: str, kind: str) -> Route:
        async def serve(_request: Request) -> Response:
            return _secure(Response(_asset(name), media_type=kind))

        return Route(f"/ui/{name}", serve, methods=["GET"])

    def job_page(s: Service, who: Identity, request: Request) -> str:
        return _job(s, who, request.path_params["job"])

    def job_title(request: Request) -> str:
        return f"Job {request.path_params['job']}"

    job_route = _guarded(service, job_title, job_page)

    async def job_with_log(request: Request) -> Response:
        answer: Response = await job_route(request)
        if request.query_params.get("fragment") == "1" or answer.status_code != 200:
            return answer
        who = await run_in_threadpool(_who, service, request)
        assert who is not None  # the page answered 200: signed in
        body = bytes(answer.body).replace(
            b"</main>", (await run_in_threadpool(
                _log_panel, service, who, request.path_params["job"])).encode() + b"</main>")
        return _secure(HTMLResponse(body))

    return [
        Route("/", root, methods=["GET"]),
        Route("/ui/login", login_form, methods=["GET"]),
        Route("/ui/login", login, methods=["POST"]),
        Route("/ui/logout", logout, methods=["POST"]),
        asset("app.css", "text/css"),
        asset("app.js", "text/javascript"),
        asset("favicon.svg", "image/svg+xml"),
        Route("/ui/jobs", _guarded(service, lambda r: "Jobs",
                                   lambda s, w, r: _jobs(s, w, r),
                                   before=lambda r: _filters(r, service)), methods=["GET"]),
        Route("/ui/jobs/{job}", job_with_log, methods=["GET"]),
        Route("/ui/jobs/{job}/log", log, methods=["GET"]),
        Route("/ui/sites", _guarded(service, lambda r: "Sites",
                                    lambda s, w, r: _sites(s, w)), methods=["GET"]),
        Route("/ui/spend", _guarded(service, lambda r: "Spend this month",
                                    lambda s, w, r: _spend(s, w)), methods=["GET"]),
    ]
