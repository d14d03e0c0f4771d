"""Rows to rich tables, CSV or JSON: one helper for every listing the CLI prints.

Invariant: what a user typed is shown as text. A cell is a :class:`rich.text.Text`, never
markup (``[link=...]`` prints as those characters); no view prints a control character or
escape sequence a user supplied (:func:`plain` removes them; :func:`escape_controls` shows
them, for logs); and no CSV cell is one a spreadsheet would run as a formula
(:func:`csv_text`, the one CSV writer of the CLI and the reports).

Machines read ``--format csv|json``; people read the table. CSV and JSON write every amount
as plain decimal text (:func:`decimal_text`: ``0.000002``, never ``2e-06``), a
:class:`~decimal.Decimal` exactly. Secrets never reach a view: only fields listed in
``columns`` are printed. Times and money are written as
:mod:`gridbridge.units` writes them (``TIME_FORMAT``, ``fmt_time`` and ``fmt_money`` are
re-exported from there for the code that imports them from here).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from gridbridge.units import TIME_FORMAT, fmt_money, fmt_time

__all__ = ["TIME_FORMAT", "Format", "csv_text", "decimal_text", "emit", "escape_controls", "fit",
           "fmt_money", "fmt_time", "json_text", "left_out", "plain", "render"]


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


# text ----------------------------------------------------------------------------------------

_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"              # CSI: colours, cursor moves, erasing the screen
    r"|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"  # OSC: window titles, hyperlinks
    r"|\x1b[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)"  # DCS, SOS, PM, APC: up to the terminator
    r"|\x1b[ -/]*[0-~]?"                    # any other escape
    r"|\x9b[0-?]*[ -/]*[@-~]"               # the same as single C1 bytes
    r"|[\x9d\x90\x98\x9e\x9f][^\x07\x1b\x9c]*(?:\x07|\x9c)")
"""A terminal escape sequence, whole: stripping only its ESC would leave ``]0;title``. A
string sequence with no terminator loses only its introducer, so no text after it is lost."""

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""A C0 or C1 control character other than tab and newline (which move no cursor back and
retitle nothing), and the bidirectional controls that make text read in another order than
it is stored."""


def plain(text: str) -> str:
    """``text`` without escape sequences and control characters: what a view shows of a
    value a user supplied."""
    if text.isprintable():  # the usual case: nothing to look for
        return text
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


def escape_controls(text: str) -> str:
    """``text`` with every control character shown as its Python escape (``\\x1b``): what
    ``gridbridge logs`` prints unless ``--raw``. A line ending ``\\r\\n`` stays a line ending.
    Character by character, so it can be applied to any piece of a stream."""
    return _CONTROL.sub(_escaped, text.replace("\r\n", "\n"))


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return repr(char)[1:-1] if ord(char) < 0x100 else f"\\u{ord(char):04x}"


_FORMULA = ("=", "+", "-", "@", "\t", "\r")
"""How a cell that a spreadsheet would run as a formula starts."""


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as CSV: amounts as their exact decimal text, None as nothing, text :func:`plain`,
    and a text cell that a spreadsheet would run as a formula (a team named
    ``=HYPERLINK(...)``) prefixed with ``'`` so that it stays text. Numbers are never touched
    (a saving may be negative)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if _decimal(value):
        return decimal_text(value)
    if not isinstance(value, str):
        return str(value)
    text = plain(value)
    return "'" + text if text.startswith(_FORMULA) else text


def json_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows as a JSON array of objects with only ``columns``, laid out as ``json.dumps(...,
    indent=2)`` lays it out: text :func:`plain`, numbers as numbers, and every float or
    Decimal written by :func:`decimal_text` (``json`` would write ``2e-06``, and a Decimal
    through a float loses its exactness). One JSON writer for the CLI and the reports."""
    objects = ["  {\n" + ",\n".join(f"    {json.dumps(c)}: {_json_cell(row.get(c))}"
                                     for c in columns) + "\n  }" if columns else "  {}"
               for row in rows]
    return "[\n" + ",\n".join(objects) + "\n]\n" if objects else "[]\n"


def _json_cell(value: Any) -> str:
    if _decimal(value):
        return decimal_text(value)
    return json.dumps(plain(value) if isinstance(value, str) else value, default=str)


def decimal_text(value: float | Decimal) -> str:
    """A finite number as plain decimal text, never in exponent notation: ``2e-06`` is
    ``0.000002``; a float is written with the digits of its ``repr``, a Decimal exactly."""
    return format(value if isinstance(value, Decimal) else Decimal(repr(value)), "f")


def _decimal(value: Any) -> bool:
    """``value`` is a finite float or Decimal (not a bool, not an int)."""
    return isinstance(value, float | Decimal) and math.isfinite(value)


# views ---------------------------------------------------------------------------------------

def render(title: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]],
           *, compact: bool = False) -> Table:
    """A rich table in which a word is never broken: the first column (what names the row),
    numbers, money, times, ids and states keep one line each, and only text with spaces
    wraps, never narrower than :data:`TEXT_MIN` columns; a header wider than its words
    breaks at its underscores. :func:`fit` says which columns a width holds.
    ``compact``: no vertical rules, so a wide table of amounts fits 80 columns.
    The title, headers and cells are text, never markup."""
    heading = Text(plain(title))
    table = (Table(title=heading, title_justify="left", box=None, pad_edge=False)
             if compact else Table(title=heading, title_justify="left"))
    for i, col in enumerate(columns):
        whole = i == 0 or _words(rows, col)
        widest = max((len(_cell(row.get(col))) for row in rows), default=0)
        header = col.replace("_", "_\n") if whole and len(col) > widest else col
        table.add_column(Text(header), overflow="fold", no_wrap=whole,
                         min_width=_need(col, rows, whole),
                         justify="right" if whole and _numeric(rows, col) else "left")
    for row in rows:
        table.add_row(*[Text(_cell(row.get(c))) for c in columns])
    return table


TEXT_MIN = 12
"""The narrowest a column of text with spaces (a reason, an error) is made before columns
are left out: narrower, a sentence turns into a column of syllables."""

_WORD_MAX = 40
"""A cell without spaces up to this long is one word (an id, a state, a site or offer name,
a time): it is never broken across lines."""


def fit(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], width: int, *,
        drop: Sequence[str] = (), compact: bool = False) -> list[str]:
    """The columns a table ``width`` wide shows whole: all of them when they fit; otherwise
    columns are left out, those named in ``drop`` first (in that order), then from the
    right. The first column, which names the row, is never left out; the order of the rest
    is kept. One rule for every listing, so no view squeezes a column to nothing."""
    shown = list(columns)
    victims = [c for c in drop if c in shown[1:]]
    victims += [c for c in reversed(shown[1:]) if c not in victims]
    for victim in victims:
        if _width(shown, rows, compact) <= width:
            break
        shown.remove(victim)
    return shown


def _width(columns: Sequence[str], rows: Sequence[Mapping[str, Any]], compact: bool) -> int:
    """How wide a table of ``columns`` is at its narrowest: each column's need, plus two
    spaces between columns (compact) or a rule and a space each side (boxed)."""
    needs = sum(_need(c, rows, i == 0 or _words(rows, c)) for i, c in enumerate(columns))
    chrome = 2 * (len(columns) - 1) if compact else 3 * len(columns) + 1
    return needs + chrome


def _need(col: str, rows: Sequence[Mapping[str, Any]], whole: bool) -> int:
    """The narrowest ``col`` may be: its longest cell when its cells are words (and the
    longest piece of its header, which breaks at underscores), else up to :data:`TEXT_MIN`."""
    widest = max((len(_cell(row.get(col))) for row in rows), default=0)
    if whole:
        return max(widest, *(len(part) + 1 for part in col.split("_")))
    return max(min(widest, TEXT_MIN), min(len(col), TEXT_MIN))


def _words(rows: Sequence[Mapping[str, Any]], col: str) -> bool:
    """Every cell of ``col`` is a number, an amount, a time or one word."""
    return bool(rows) and all(_word(row.get(col)) for row in rows)


_ATOMIC = re.compile(r"^(-?\$?-?[\d,]+(\.\d+)?([eE][-+]?\d+)?|\d{4}-\d\d-\d\dT[\d:]+Z|)$")
"""A number, an amount of money or a time: what must stay on one line."""


def _word(value: Any) -> bool:
    if value is None or isinstance(value, int | float):
        return True
    text = _cell(value)
    return bool(_ATOMIC.match(text)) or (len(text) <= _WORD_MAX and not any(
        ch.isspace() for ch in text))


def _numeric(rows: Sequence[Mapping[str, Any]], col: str) -> bool:
    return any(isinstance(r.get(col), int | float) and not isinstance(r.get(col), bool)
               for r in rows)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return plain(str(value))


def emit(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    fmt: Format = Format.TABLE,
    *,
    drop: Sequence[str] = (),
    notes: Console | None = None,
) -> None:
    """Print rows as a table, CSV or JSON (only the listed columns; text :func:`plain`).
    A table keeps the columns the console's width holds (:func:`fit`, leaving out ``drop``
    first) and says on ``notes`` (stderr) which it left out; CSV and JSON have them all."""
    if fmt is Format.TABLE:
        shown = fit(columns, rows, console.width, drop=drop)
        console.print(render(title, shown, rows))
        left_out(notes, columns, shown, console.width)
        return
    if fmt is Format.JSON:
        console.file.write(json_text(columns, rows))
        return
    console.file.write(csv_text(columns, rows))


def left_out(notes: Console | None, columns: Sequence[str], shown: Sequence[str],
             width: int) -> None:
    """Say on ``notes`` which of ``columns`` a table of ``width`` left out, if any."""
    missing = [c for c in columns if c not in shown]
    if notes is not None and missing:
        notes.print(f"({', '.join(missing)} left out at {width} columns; --format csv or "
                    "json has every column)", highlight=False, markup=False, soft_wrap=True)
