"""Periods as finance names them (a year, a month, a day, ``--since``/``--until``), each a
half-open window ``[since, until)`` of UNIX seconds in UTC, cut into calendar pieces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

__all__ = ["Every", "PeriodError", "Window", "parse_instant"]


class Every(StrEnum):
    """How a period is cut into rows: calendar days, ISO weeks (Monday first) or months, UTC."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class PeriodError(ValueError):
    """A period or date that cannot be read; the message says what is accepted."""


def _ts(d: datetime) -> float:
    return d.timestamp()


def _month_start(ts: float) -> datetime:
    d = datetime.fromtimestamp(ts, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def _next_month(d: datetime) -> datetime:
    return datetime(d.year + (d.month == 12), d.month % 12 + 1, 1, tzinfo=UTC)


def parse_instant(text: str, what: str) -> datetime:
    """A date (``2026-11-27``, midnight UTC) or an ISO 8601 time (UTC unless it says)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise PeriodError(f"{what}: {text!r} is not a date (2026-11-27) or an ISO 8601 time "
                          "(2026-11-27T13:00:00Z)") from e
    return d if d.tzinfo else d.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """A half-open span of time ``[since, until)`` in UNIX seconds, with a label."""

    since: float
    until: float
    label: str

    @classmethod
    def period(cls, text: str) -> Window:
        """``2026`` (a year), ``2026-11`` (a month) or ``2026-11-27`` (a day), UTC."""
        if m := re.fullmatch(r"(\d{4})", text):
            y = int(m[1])
            return cls(_ts(datetime(y, 1, 1, tzinfo=UTC)), _ts(datetime(y + 1, 1, 1, tzinfo=UTC)),
                       text)
        if m := re.fullmatch(r"(\d{4})-(\d{2})", text):
            y, mo = int(m[1]), int(m[2])
            if not 1 <= mo <= 12:
                raise PeriodError(f"--period: month {mo} of {text!r} is not 01..12")
            start = datetime(y, mo, 1, tzinfo=UTC)
            return cls(_ts(start), _ts(_next_month(start)), text)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            start = parse_instant(text, "--period")
            return cls(_ts(start), _ts(start + timedelta(days=1)), text)
        raise PeriodError(f"--period: {text!r} is not a year (2026), a month (2026-11) or a day "
                          "(2026-11-27)")

    @classmethod
    def between(cls, since: str | None, until: str | None, now: float) -> Window:
        """From ``since`` (default: the beginning of time) to ``until`` (default: now)."""
        lo = _ts(parse_instant(since, "--since")) if since else 0.0
        hi = _ts(parse_instant(until, "--until")) if until else now
        if hi <= lo:
            raise PeriodError(f"--until ({until or 'now'}) must come after --since ({since})")
        label = f"{since or 'start'}..{until or 'now'}"
        return cls(lo, hi, label)

    @classmethod
    def this_month(cls, now: float) -> Window:
        start = _month_start(now)
        return cls(_ts(start), _ts(_next_month(start)), start.strftime("%Y-%m"))

    def holds(self, ts: float) -> bool:
        return self.since <= ts < self.until

    def cut(self, every: Every | None) -> list[Window]:
        """The window as consecutive calendar pieces (itself when ``every`` is None)."""
        if every is None:
            return [self]
        out: list[Window] = []
        t = self.since
        while t < self.until:
            d = datetime.fromtimestamp(t, UTC)
            if every is Every.DAY:
                start = datetime(d.year, d.month, d.day, tzinfo=UTC)
                end, label = start + timedelta(days=1), start.strftime("%Y-%m-%d")
            elif every is Every.WEEK:
                start = datetime(d.year, d.month, d.day, tzinfo=UTC) - timedelta(days=d.weekday())
                iso = start.isocalendar()
                end, label = start + timedelta(days=7), f"{iso.year}-W{iso.week:02d}"
            else:
                start = datetime(d.year, d.month, 1, tzinfo=UTC)
                end, label = _next_month(start), start.strftime("%Y-%m")
            out.append(Window(max(t, _ts(start)), min(_ts(end), self.until), label))
            t = _ts(end)
        return out

    def months(self) -> list[Window]:
        """The calendar months this window touches, whole."""
        out = []
        start = _month_start(self.since)
        while _ts(start) < self.until:
            nxt = _next_month(start)
            out.append(Window(_ts(start), _ts(nxt), start.strftime("%Y-%m")))
            start = nxt
        return out
