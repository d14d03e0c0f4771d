"""``gridbridge admin ...``: the service's API tokens and its audit.

Invariant: a token's secret is printed once, by ``token create``, and never again (the store
keeps its hash). On the store's own host (no ``--url``) these commands act on the configured
store as the operator running them, and audit themselves with source ``local``; with
``--url`` they go through the service, which lets only operators use them. Every user value
shown is plain text (``views.plain``)::

    admin token create --user U --team T --role R   ─> gb_<id>.<secret>  (stdout, once)
    admin token list [--format]                      ─> id, user, team, role, created, revoked
    admin token revoke ID
    admin audit [--limit N] [--format]               ─> newest first
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from gridbridge.scheduler._access import AuditRecord, Role
from gridbridge.units import fmt_time
from gridbridge.views import Format, emit, plain

from ._common import FormatOpt, client, console, err, remote
from ._shell import Group

__all__ = ["app"]

app = typer.Typer(cls=Group, help="The service's API tokens and audit (operators).",
                  no_args_is_help=True)
token_app = typer.Typer(cls=Group, help="Make, list and revoke API tokens.",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")


def _local_audit(ctx: typer.Context, verb: str, target: str, detail: str = "") -> None:
    """On the store's host, the command audits itself (through a service, the service does)."""
    if remote(ctx):
        return
    from gridbridge.client import _current_user

    client(ctx).store.record_audit(AuditRecord(
        at=time.time(), user=_current_user(), role=Role.OPERATOR.value, verb=verb,
        target=target, outcome="ok", source="local", detail=detail))


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="whom the token names (jobs are theirs)")],
    team: Annotated[str, typer.Option(help="the team their jobs are charged to")],
    role: Annotated[Role, typer.Option(case_sensitive=False,
                                       help="researcher, operator or finance")],
) -> None:
    """Make a token and print it, once: the store keeps only its hash. Hand it to its user
    as their GRIDBRIDGE_TOKEN."""
    from gridbridge.client import _current_user

    made = client(ctx)
    record, token = made.store.create_token(user, team, role, created_by=_current_user())
    _local_audit(ctx, "token create", f"token {record.id}",
                 f"user {record.user}, team {record.team}, role {record.role.value}")
    console.out(token, highlight=False)
    err.print(plain(f"token {record.id} for {record.user} ({record.team}, "
                    f"{record.role.value}); it is not shown again"),
              markup=False, highlight=False)


@token_app.command("list")
def token_list(ctx: typer.Context, fmt: FormatOpt = Format.TABLE) -> None:
    """Every token, oldest first, revoked ones too (never a secret)."""
    rows = [{"id": t.id, "user": t.user, "team": t.team, "role": t.role.value,
             "created": fmt_time(t.created_at), "created_by": t.created_by,
             "revoked": fmt_time(t.revoked_at) if t.revoked_at else ""}
            for t in client(ctx).store.tokens()]
    emit(console, "API tokens", ["id", "user", "team", "role", "created", "created_by",
                                 "revoked"], rows, fmt)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context,
                 token_id: Annotated[str, typer.Argument(help="the token's id (token list)")],
                 ) -> None:
    """Revoke a token: it never authenticates again."""
    record = client(ctx).store.revoke_token(token_id)
    _local_audit(ctx, "token revoke", f"token {record.id}")
    console.print(plain(f"token {record.id} ({record.user}) revoked"), markup=False,
                  highlight=False)


@app.command("audit")
def audit(
    ctx: typer.Context,
    fmt: FormatOpt = Format.TABLE,
    limit: Annotated[int, typer.Option(min=1, help="the newest N rows")] = 200,
) -> None:
    """Who did what, when and from where: every change and every refusal, newest first."""
    rows = [{"time": fmt_time(r.at), "user": r.user, "role": r.role, "verb": r.verb,
             "target": r.target, "outcome": r.outcome, "source": r.source,
             "detail": r.detail} for r in client(ctx).store.audit_records(limit)]
    emit(console, "audit", ["time", "user", "role", "verb", "target", "outcome", "source",
                            "detail"], rows, fmt)
