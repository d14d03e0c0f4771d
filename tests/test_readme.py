"""The README's snippets run as written: every ```sh or ```bash block with ``bash -euo
pipefail`` (a line that fails fails the test), every ```python block with this interpreter
(an exception fails it), each in a fresh folder on a fresh embedded default.

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


def shell_snippets(text: str, kinds: frozenset[str] = frozenset({"sh", "bash"})) -> list[Snippet]:
    """The blocks of ``text`` of these ``kinds`` (default ```sh and ```bash), each with its
    line and its ``## `` section."""
    found = []
    for block in _FENCE.finditer(text):
        if block.group(1) not in kinds:
            continue
        above = text[:block.start()]
        headings = re.findall(r"^## (.+)$", above, re.MULTILINE)
        found.append(Snippet(above.count("\n") + 1, headings[-1] if headings else "",
                             block.group(2)))
    return found


SNIPPETS = shell_snippets(README.read_text(encoding="utf-8"))
PYTHON = shell_snippets(README.read_text(encoding="utf-8"), frozenset({"python"}))


def test_the_readme_has_shell_snippets_that_run_here() -> None:
    runnable = [s for s in SNIPPETS if s.needs is None]
    assert any("gridbridge config check" in s.code for s in runnable)
    assert any("gridbridge report costs" in s.code for s in runnable)


def test_a_needs_line_marks_a_snippet_and_only_at_its_top() -> None:
    text = "## A\n```sh\n# needs: a service\ngridbridge serve\n```\n```bash\necho # needs: x\n```\n"
    first, second = shell_snippets(text)
    assert (first.line, first.section, first.needs) == (2, "A", "a service")
    assert second.needs is None


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GRIDBRIDGE_") and k != "VIRTUAL_ENV"}
    return env | {"GRIDBRIDGE_HOME": str(tmp_path / "home"), "COLUMNS": "100",
                  "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}


@pytest.mark.slow
@pytest.mark.parametrize("snippet", SNIPPETS, ids=[f"line{s.line}" for s in SNIPPETS])
def test_readme_shell_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.needs is not None:
        pytest.skip(f"README line {snippet.line} needs: {snippet.needs}")
    ran = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet.code], cwd=tmp_path,
                         env=_fresh_env(tmp_path), capture_output=True, text=True, timeout=300,
                         check=False)
    assert ran.returncode == 0, (f"README line {snippet.line} exited {ran.returncode}:\n"
                                 f"{snippet.code}\n--- stdout\n{ran.stdout}\n"
                                 f"--- stderr\n{ran.stderr}")


def test_the_readme_has_python_snippets_that_run_here() -> None:
    runnable = [s for s in PYTHON if s.needs is None]
    assert any("gridbridge.Client()" in s.code for s in runnable)
    assert any("ctx.checkpoint.save" in s.code for s in runnable)


@pytest.mark.slow
@pytest.mark.parametrize("snippet", PYTHON, ids=[f"line{s.line}" for s in PYTHON])
def test_readme_python_snippet_runs(snippet: Snippet, tmp_path: Path) -> None:
    if snippet.needs is not None:
        pytest.skip(f"README line {snippet.line} needs: {snippet.needs}")
    (tmp_path / "snippet.py").write_text(snippet.code)  # a file: cloudpickle needs its source
    ran = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=_fresh_env(tmp_path),
                         capture_output=True, text=True, timeout=300, check=False)
    assert ran.returncode == 0, (f"README line {snippet.line} exited {ran.returncode}:\n"
                                 f"{snippet.code}\n--- stdout\n{ran.stdout}\n"
                                 f"--- stderr\n{ran.stderr}")
