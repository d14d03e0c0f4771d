"""Small SVG charts drawn by hand: stacked bars, lines, curves and horizontal bars.

The one SVG drawer and the one palette of gridbridge: the finance report and the simulators'
plots both draw here, with no chart library to ship or fetch. Each function returns one
self-contained ``<svg>`` element (text escaped) that a browser draws as it is. Values are
floats; labels are strings.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

from gridbridge.units import fmt_money

__all__ = ["PALETTE", "bars", "curves", "hbars", "lines"]


def _amount(v: float) -> str:
    """A value in a tooltip as people read it: cents from ten cents up, two significant
    digits below (``83.27``, ``0.0042``), never six places of zeros."""
    return fmt_money(v, readable=True, sign="")

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
_W, _H = 640, 300
_L, _R, _T, _B = 64, 150, 34, 46  # margins: left axis, right legend, title, bottom labels


def _nice_top(hi: float) -> float:
    """A round number at or above ``hi`` (1, 2, 2.5 or 5 times a power of ten)."""
    if hi <= 0:
        return 1.0
    p = 10.0 ** math.floor(math.log10(hi))
    return float(next(m * p for m in (1, 2, 2.5, 5, 10) if m * p >= hi))


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    return f"{v:.2g}"


def _open(title: str, kind: str, width: int = _W, height: int = _H) -> list[str]:
    return [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-kind="{kind}" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            'font-family="sans-serif" font-size="11" role="img">',
            f"<title>{html.escape(title)}</title>",
            f'<text x="{width / 2:.0f}" y="18" text-anchor="middle" font-size="14" '
            f'font-weight="bold">{html.escape(title)}</text>']


def _axes(top: float, unit: str) -> list[str]:
    out = []
    plot_h = _H - _T - _B
    for i in range(5):
        v = top * i / 4
        y = _H - _B - plot_h * i / 4
        out.append(f'<line x1="{_L}" x2="{_W - _R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    out.append(f'<line x1="{_L}" x2="{_L}" y1="{_T}" y2="{_H - _B}" stroke="#333"/>')
    out.append(f'<line x1="{_L}" x2="{_W - _R}" y1="{_H - _B}" y2="{_H - _B}" stroke="#333"/>')
    out.append(f'<text x="14" y="{(_T + _H - _B) / 2:.0f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {(_T + _H - _B) / 2:.0f})">{html.escape(unit)}</text>')
    return out


def _legend(names: Sequence[str], colours: Sequence[str]) -> list[str]:
    out = []
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        y = _T + 6 + 16 * i
        out.append(f'<rect x="{_W - _R + 12}" y="{y}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{_W - _R + 27}" y="{y + 9}">{html.escape(name[:20])}</text>')
    return out


def _x_labels(labels: Sequence[str], xs: Sequence[float]) -> list[str]:
    step = max(1, math.ceil(len(labels) / 8))
    return [f'<text x="{x:.1f}" y="{_H - _B + 16}" text-anchor="middle">{html.escape(lab)}</text>'
            for i, (lab, x) in enumerate(zip(labels, xs, strict=True)) if i % step == 0]


def _empty(out: list[str]) -> str:
    out.append(f'<text x="{_W / 2:.0f}" y="{_H / 2:.0f}" text-anchor="middle" fill="#777">'
               "nothing in this period</text>")
    return "\n".join([*out, "</svg>"])


def bars(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]],
         unit: str, colours: Mapping[str, str] | None = None) -> str:
    """Stacked vertical bars: one bar per label, one coloured part per series."""
    out = _open(title, "bars")
    names = [n for n, vs in series.items() if any(v > 0 for v in vs)]
    if not labels or not names:
        return _empty(out)
    totals = [sum(max(series[n][i], 0.0) for n in names) for i in range(len(labels))]
    top = _nice_top(max(totals))
    out += _axes(top, unit)
    plot_w, plot_h = _W - _L - _R, _H - _T - _B
    slot = plot_w / len(labels)
    width = max(slot * 0.75, 1.0)
    cols = [(colours or {}).get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
    xs = []
    for i, label in enumerate(labels):
        x = _L + slot * i + (slot - width) / 2
        xs.append(x + width / 2)
        base = 0.0
        for name, colour in zip(names, cols, strict=True):
            v = max(series[name][i], 0.0)
            if v <= 0:
                continue
            h = plot_h * v / top
            y = _H - _B - plot_h * base / top - h
            out.append(f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                       f'height="{max(h, 0.5):.1f}" fill="{colour}">'
                       f"<title>{html.escape(f'{label} {name}: {_amount(v)} {unit}')}"
                       "</title></rect>")
            base += v
    out += _x_labels(labels, xs)
    out += _legend(names, cols)
    return "\n".join([*out, "</svg>"])


def lines(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]],
          unit: str, levels: Mapping[str, float] | None = None) -> str:
    """One line per series over the labels; ``levels`` draws dashed horizontal lines (a
    budget) in the colour of the series of the same name."""
    out = _open(title, "lines")
    levels = dict(levels or {})
    if not labels or not series:
        return _empty(out)
    hi = max([*(max(vs, default=0.0) for vs in series.values()), *levels.values(), 0.0])
    top = _nice_top(hi)
    out += _axes(top, unit)
    plot_w, plot_h = _W - _L - _R, _H - _T - _B
    n = len(labels)
    xs = [_L + plot_w * (i + 0.5) / n for i in range(n)]
    names = list(series)
    cols = [PALETTE[i % len(PALETTE)] for i in range(len(names))]
    for name, colour in zip(names, cols, strict=True):
        pts = " ".join(f"{x:.1f},{_H - _B - plot_h * v / top:.1f}"
                       for x, v in zip(xs, series[name], strict=True))
        out.append(f'<polyline class="mark" fill="none" stroke="{colour}" stroke-width="2" '
                   f'points="{pts}"><title>{html.escape(name)}</title></polyline>')
        step = max(1, math.ceil(n / 62))  # a dot per point (a one-day line is a dot)
        out += [f'<circle class="mark" cx="{x:.1f}" cy="{_H - _B - plot_h * v / top:.1f}" '
                f'r="2.5" fill="{colour}"><title>{html.escape(f"{lab} {name}: {_amount(v)}")}'
                "</title></circle>"
                for i, (x, v, lab) in enumerate(zip(xs, series[name], labels, strict=True))
                if i % step == 0 or i == n - 1]
        if name in levels:
            y = _H - _B - plot_h * levels[name] / top
            out.append(f'<line class="level" x1="{_L}" x2="{_W - _R}" y1="{y:.1f}" '
                       f'y2="{y:.1f}" stroke="{colour}" stroke-dasharray="6 4">'
                       f"<title>{html.escape(f'{name} budget {levels[name]:,.2f}')}</title>"
                       "</line>")
    out += _x_labels(labels, xs)
    out += _legend(names, cols)
    return "\n".join([*out, "</svg>"])


def curves(title: str, series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
           axes: tuple[str, str], x_top: float | None = None) -> str:
    """One line per series through its own ``(xs, ys)`` points on numeric axes from 0:
    ``axes`` names them (x, y); ``x_top`` ends the x axis (default: a round number above the
    largest x). For curves whose points do not share the x of :func:`lines`' labels."""
    out = _open(title, "curves")
    names = [n for n, (xs, _) in series.items() if len(xs)]
    if not names:
        return _empty(out)
    xlabel, unit = axes
    top = _nice_top(max(max(series[n][1]) for n in names))
    right = x_top if x_top is not None and x_top > 0 else _nice_top(
        max(max(series[n][0]) for n in names))
    out += _axes(top, unit)
    plot_w, plot_h = _W - _L - _R, _H - _T - _B
    ticks = [right * i / 4 for i in range(5)]
    out += _x_labels([_fmt(v) for v in ticks], [_L + plot_w * v / right for v in ticks])
    out.append(f'<text x="{(_L + _W - _R) / 2:.0f}" y="{_H - 10}" text-anchor="middle">'
               f"{html.escape(xlabel)}</text>")
    cols = [PALETTE[i % len(PALETTE)] for i in range(len(names))]
    for name, colour in zip(names, cols, strict=True):
        xs, ys = series[name]
        pts = " ".join(f"{_L + plot_w * x / right:.1f},{_H - _B - plot_h * y / top:.1f}"
                       for x, y in zip(xs, ys, strict=True))
        out.append(f'<polyline class="mark" fill="none" stroke="{colour}" stroke-width="1.5" '
                   f'points="{pts}"><title>{html.escape(name)}</title></polyline>')
    out += _legend(names, cols)
    return "\n".join([*out, "</svg>"])


def hbars(title: str, labels: Sequence[str], values: Sequence[float], unit: str) -> str:
    """Horizontal bars, one per label, longest first as given."""
    height = max(_H, _T + 24 * len(labels) + 30)
    out = _open(title, "hbars", height=height)
    if not labels:
        return _empty(out)
    left, right = 170, 90
    top = _nice_top(max(values))
    plot_w = _W - left - right
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = _T + 10 + 24 * i
        w = max(plot_w * max(v, 0.0) / top, 0.5)
        out.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">'
                   f"{html.escape(label[:28])}</text>")
        out.append(f'<rect class="mark" x="{left}" y="{y}" width="{w:.1f}" height="18" '
                   f'fill="{PALETTE[0]}"><title>{html.escape(f"{label}: {_amount(v)} {unit}")}'
                   "</title></rect>")
        out.append(f'<text x="{left + w + 4:.1f}" y="{y + 13}">{_fmt(v)}</text>')
    return "\n".join([*out, "</svg>"])
