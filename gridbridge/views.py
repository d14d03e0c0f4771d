"""Rows to rich tables, CSV or JSON: one helper for every listing the CLI prints.

Machines read ``--format csv|json``; people read the table. Secrets never reach a view: only
fields listed in ``columns`` are printed.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Format", "emit", "fmt_money", "fmt_time", "render"]


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_money(x: float | None) -> str:
    if x is None:
        return ""
    return f"${x:,.6f}" if abs(x) < 1 else f"${x:,.2f}"


def render(title: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def emit(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    fmt: Format = Format.TABLE,
) -> None:
    """Print rows as a table, CSV or JSON (only the listed columns)."""
    if fmt is Format.TABLE:
        console.print(render(title, columns, rows))
        return
    picked = [{c: row.get(c) for c in columns} for row in rows]
    if fmt is Format.JSON:
        console.file.write(json.dumps(picked, indent=2, default=str) + "\n")
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(picked)
    console.file.write(buf.getvalue())
