"""The units and words every part of gridbridge shares, each defined once: names and labels,
memory, durations, money and time as people read them, and what may be shown of a URL or
handed on of an environment.

Memory is GiB everywhere (``memory_gb`` is a number of GiB, as Slurm's ``--mem=4G`` and PBS's
``mem=4gb`` are): :data:`GIB` bytes. Durations in batch schedulers' words
(``[D-]HH:MM:SS``) are read by :func:`parse_duration`, the one parser. Standard library only:
the in-job runtime imports this without loading pydantic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

__all__ = [
    "ENV_NAME_PATTERN",
    "GIB",
    "LABEL_PATTERN",
    "NAME_PATTERN",
    "PROCESS_ENV",
    "PROCESS_ENV_PREFIXES",
    "TIME_FORMAT",
    "fmt_duration",
    "fmt_money",
    "fmt_time",
    "gib",
    "parse_duration",
    "parse_memory",
    "process_env",
    "redact_url",
    "redact_urls",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""Job and site names: what is safe as a Slurm job name, an EC2 tag, a path component."""

LABEL_PATTERN = r"^[A-Za-z0-9_.:/-]{1,64}$"
"""What a label's key or value may look like, on a job's constraints and on a site's hosts
alike (``zone/a``, ``gpu:a100``)."""

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
"""An environment variable's name a job may set or a site may pass on."""

GIB = 2**30
"""Bytes in the unit of every ``memory_gb`` (a GiB, as Slurm and PBS count a ``G``)."""

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
"""Every time gridbridge prints, in tables, CSV, JSON and reports alike: UTC, ISO 8601, to
the second."""


def gib(n_bytes: float) -> float:
    """``n_bytes`` in GiB."""
    return n_bytes / GIB


_MEMORY_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6,
                 "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
                 "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_memory(value: str | float) -> int:
    """An amount of memory in bytes: a number of bytes, or a string with a unit as dask writes
    them (``'4GiB'``, ``'109 GB'``, ``'500MB'``: decimal and binary units, any case).
    Raises ValueError naming the units it knows."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*", str(value))
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _MEMORY_UNITS:
        units = ", ".join(u for u in _MEMORY_UNITS if u)
        raise ValueError(f"{value!r} is not an amount of memory like '109 GB' or '4 GiB' "
                         f"(units: {units})")
    return math.ceil(float(m.group(1)) * _MEMORY_UNITS[unit])


_DURATION = re.compile(r"(?:(\d+)-)?(\d+(?::\d+){0,2})")


def parse_duration(text: str | float, *, bare: float = 60.0) -> float | None:
    """A batch scheduler's duration in seconds, None when it is not one.

    Colons read as Slurm and PBS write them: ``MM:SS``, ``HH:MM:SS``; with days
    ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``. A number alone counts ``bare`` seconds each:
    minutes for Slurm and dask-jobqueue (the default), seconds for PBS (``bare=1``)."""
    m = _DURATION.fullmatch(str(text).strip())
    if m is None:
        return None
    days, rest = m.group(1), [int(x) for x in m.group(2).split(":")]
    if days is not None:
        h, mi, sec = [*rest, 0, 0][:3]
        return float(int(days) * 86400 + h * 3600 + mi * 60 + sec)
    if len(rest) == 1:
        return float(rest[0] * bare)
    h, mi, sec = [0, *rest][-3:]
    return float(h * 3600 + mi * 60 + sec)


def fmt_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``1h02m``, ``2d03h`` (rounded up to the unit shown)."""
    s = math.ceil(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        m = math.ceil(s / 60)
        return f"{m // 60}h{m % 60:02d}m"
    h = math.ceil(s / 3600)
    return f"{h // 24}d{h % 24:02d}h"


def fmt_money(x: float | Decimal | None, *, readable: bool = False, sign: str = "$") -> str:
    """Dollars. In columns (default), to the cent from $1 and to a millionth of a dollar
    below, so small amounts can be compared: ``$1,234.50``, ``$0.002014``. ``readable``, for
    sentences: two significant digits below 10 cents, ``$3.10``, ``$0.012``, ``$0.00042``.
    ``sign=""`` leaves out the dollar sign. None is ""."""
    if x is None:
        return ""
    size = abs(float(x))
    if readable:
        if size == 0 or size >= 0.1:
            return f"{sign}{x:,.2f}"
        digits = max(3, 1 - math.floor(math.log10(size)))
        return f"{sign}{x:.{digits}f}"
    return f"{sign}{x:,.6f}" if size < 1 else f"{sign}{x:,.2f}"


def fmt_time(ts: float | None) -> str:
    """``2026-11-27T01:20:00Z`` for a Unix time; "" for None."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime(TIME_FORMAT)


# What may be shown of a URL -------------------------------------------------------------------

_USERINFO_END = re.compile(r"[/?#]")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` fit to print: without ``user:password@`` and, for http(s), without the query
    and fragment (a presigned URL's signature is a secret). The one way every error, log line
    and table shows a URL.

    A URL should percent-encode ``/`` and ``@`` in a password, but SQLAlchemy's parser lets a
    password hold ``/``, ``?`` or ``#``: an authority with a ``:`` and no ``@``, and an ``@``
    later, is taken to be ``user:pass/word@host``; a path with an ``@`` after a ``host:port``
    is then cut short, which is safer than showing a password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = _USERINFO_END.search(rest)
    authority = rest[: end.start()] if end else rest
    if "@" in authority:
        rest = rest[authority.rindex("@") + 1:]
    elif ":" in authority and "@" in rest:
        rest = rest[rest.index("@") + 1:]
    if scheme.lower() in ("http", "https"):
        rest = rest.split("?", 1)[0].split("#", 1)[0]
    return f"{scheme}://{rest}"


def redact_urls(text: str) -> str:
    """``text`` (a library's error message) with every URL in it as :func:`redact_url`
    shows it."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


# What a process is handed of its parent's environment ----------------------------------------

PROCESS_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
               "TERM", "PYTHONPATH", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES")
"""What a process started on this host needs of its parent's environment to run as the
parent would (find programs, a home, a locale, a temporary folder, the same Python packages and
devices), and nothing that authenticates: with :data:`PROCESS_ENV_PREFIXES` these are all a job
inherits from a control plane, besides the names a site lists in ``runtime.env_names``."""

PROCESS_ENV_PREFIXES = ("LC_", "OMP_", "OPENBLAS_", "MKL_", "NVPL_")
"""The locale's parts and the numeric libraries' settings (threads, kernels): a job's numbers
come out bit for bit as its parent's would."""


def process_env(environ: Mapping[str, str], names: Iterable[str] = ()) -> dict[str, str]:
    """The part of ``environ`` a child process is handed: :data:`PROCESS_ENV`, the variables
    named by :data:`PROCESS_ENV_PREFIXES` and ``names`` (a site's ``runtime.env_names``), where
    ``environ`` has them."""
    wanted = {*PROCESS_ENV, *names}
    return {k: v for k, v in environ.items()
            if k in wanted or k.startswith(PROCESS_ENV_PREFIXES)}
