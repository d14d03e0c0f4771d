"""The node scripts, read from the ``*.sh`` files beside this module (package data).

Each script runs as ``sh -c SCRIPT NAME ARGS...`` on a node that holds no file of ours, so a
script's ``. "${0%/*}/lib.sh"`` line (there for ``shellcheck`` and for running a file by hand)
is replaced by that file's text here: what a node runs is the file, its sources inlined, and
its header comment left out. Every value is a positional argument, never part of the text.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

__all__ = ["script"]

_SOURCE = re.compile(
    r'^(?:# shellcheck source=\S+\n)?\. "\$\{0%/\*\}/([a-z]+\.sh)"\n', re.MULTILINE)
"""A line that sources a sibling file, ``. "${0%/*}/lib.sh"``, with its directive."""
_HEADER = re.compile(r"\A(?:#[^\n]*\n)+\n*")
"""The shebang and the comment under it, up to the first blank line."""


@cache
def script(name: str) -> str:
    """The text of ``<name>`` (e.g. ``poll.sh``) as a node runs it."""
    text = files("gridbridge.adapters.edge").joinpath(name).read_text()
    text = _HEADER.sub("", text, count=1)
    return _SOURCE.sub(lambda m: script(m.group(1)), text)
