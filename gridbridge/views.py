"""Rows to rich tables, CSV or JSON: one helper for every listing the CLI prints.

Machines read ``--format csv|json``; people read the table. Secrets never reach a view: only
fields listed in ``columns`` are printed. Times and money are written as
:mod:`gridbridge.units` writes them (``TIME_FORMAT``, ``fmt_time`` and ``fmt_money`` are
re-exported from there for the code that imports them from here).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

from gridbridge.units import TIME_FORMAT, fmt_money, fmt_time

__all__ = ["TIME_FORMAT", "Format", "emit", "fmt_money", "fmt_time", "render"]


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def render(title: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
           *, compact: bool = False) -> Table:
    """A rich table; a column of numbers (or money, or times) is never wrapped, so a narrow
    terminal squeezes the text columns instead of breaking a number across lines; a header
    wider than its numbers breaks at its underscores.
    ``compact``: no vertical rules, so a wide table of amounts fits 80 columns."""
    table = (Table(title=title, title_justify="left", box=None, pad_edge=False)
             if compact else Table(title=title, title_justify="left"))
    for i, col in enumerate(columns):
        atomic = bool(rows) and all(_atomic(row.get(col)) for row in rows)
        widest = max((len(_cell(row.get(col))) for row in rows), default=0)
        if compact and i == 0 and not atomic:  # the row's name: shortened, never squeezed out
            table.add_column(col, no_wrap=True, overflow="ellipsis",
                             min_width=min(max(widest, len(col)), 16))
            continue
        # a header wider than its numbers goes on several lines, at its underscores
        header = col.replace("_", "_\n") if atomic and len(col) > widest else col
        table.add_column(header, overflow="fold", no_wrap=atomic,
                         min_width=widest if atomic else None,
                         justify="right" if atomic and _numeric(rows, col) else "left")
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    return table


_ATOMIC = re.compile(r"^(-?\$?-?[\d,]+(\.\d+)?([eE][-+]?\d+)?|\d{4}-\d\d-\d\dT[\d:]+Z|)$")
"""A number, an amount of money or a time: what must stay on one line."""


def _atomic(value: Any) -> bool:
    return value is None or isinstance(value, int | float) or bool(_ATOMIC.match(str(value)))


def _numeric(rows: Sequence[Mapping[str, Any]], col: str) -> bool:
    return any(isinstance(r.get(col), int | float) and not isinstance(r.get(col), bool)
               for r in rows)


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
