"""The README's shell snippets run as written: every ```sh or ```bash block, in a fresh folder
on a fresh embedded default, with ``bash -euo pipefail`` (a line that fails fails the test).

The convention, visible in the README: a block that needs what a test machine lacks (a
running service, TLS files, the traces of ../shared/data, minutes) opens with a comment line
``# needs: WHAT``, and only those are left out, each as a skipped test naming WHAT.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_NEEDS = re.compile(r"\A# needs: (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Snippet:
    line: int
    section: str
    code: str

    @property
    def needs(self) -> str | None:
        found = _NEEDS.match(self.code)
        return found.group(1) if found else None


def shell_snippets(text: str) -> list[Snippet]:
    """The ```sh and ```bash blocks of ``text``, each with its line and its ``## `` section."""
    found = []
    for block in _FENCE.finditer(text):
        if block.group(1) not in {"sh", "bash"}:
            continue
        above = text[:block.start()]
        headings = re.findall(r"^## (.+)$", above, re.MULTILINE)
        found.append(Snippet(above.count("\n") + 1, headings[-1] if headings else "",
                             block.group(2)))
    return found


SNIPPETS = shell_snippets(README.read_text(encoding="utf-8"))


def test_the_readme_has_shell_snippets_that_run_here() -> None:
    runnable = [s for s in SNIPPETS if s.needs is None]
    assert any("gridbridge config check" in s.code for s in runnable)
    assert any("gridbridge report costs" in s.code for s in runnable)


def test_a_needs_line_marks_a_snippet_and_only_at_its_top() -> None:
    text = "## A\n```sh\n# needs: a service\ngridbridge serve\n```\n```bash\necho # needs: x\n```\n"
    first, second = shell_snippets(text)
    assert (first.line, first.section, first.needs) == (2, "A", "a service")
    assert second.needs is None


@pytest.mark.slow
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"line{s.line}" for s in SNIPPETS])
def test_readme_shell_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.needs is not None:
        pytest.skip(f"README line {snippet.line} needs: {snippet.needs}")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GRIDBRIDGE_") and k != "VIRTUAL_ENV"}
    env |= {"GRIDBRIDGE_HOME": str(tmp_path / "home"), "COLUMNS": "100",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet.code], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert ran.returncode == 0, (f"README line {snippet.line} exited {ran.returncode}:\n"
                                 f"{snippet.code}\n--- stdout\n{ran.stdout}\n"
                                 f"--- stderr\n{ran.stderr}")
