"""What the batch-scheduler adapters (Slurm, PBS) share: attempt-id checks, the runtime's
command line, and the job script, rendered from structured data with every value quoted.

The script a batch system runs is tiny and holds no job value unquoted::

    #!/bin/bash
    #<directives the adapter adds, values already validated>
    exec /venv/bin/python -m gridbridge.runtime --launch 's3://b/at/x.1/launch.json' --scratch ...

With a prologue (the operator's trusted lines) the runtime's argv travels as arguments of
``bash -c PROLOGUE gridbridge-run ARGV...``; it never enters the prologue's text. The job's own
command and environment are not in the script at all: they are in the launch record.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from gridbridge.adapter import SubmitRejected
from gridbridge.config import SiteConfig, prologue_script
from gridbridge.units import ENV_NAME_PATTERN
from gridbridge.wire import ALREADY_RAN_EXIT_CODE, PREEMPTED_EXIT_CODE

__all__ = [
    "ALREADY_RAN_EXIT_CODE",
    "ATTEMPT_ID",
    "PREEMPTED_EXIT_CODE",
    "check_attempt_id",
    "job_command",
    "job_script",
    "runtime_argv",
    "safe_job_name",
]

_ENV_NAME = re.compile(ENV_NAME_PATTERN)
ATTEMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
"""What an attempt id may look like on a site: it names folders and goes into job comments."""


def check_attempt_id(attempt_id: str) -> None:
    """:class:`SubmitRejected` unless ``attempt_id`` is safe as a file name and a comment."""
    if not ATTEMPT_ID.fullmatch(attempt_id) or ".." in attempt_id:
        raise SubmitRejected(f"not a valid attempt id: {attempt_id!r}")


def safe_job_name(name: str, attempt_id: str, limit: int = 64) -> str:
    """A native job name from the job's name: letters, digits, ``._-`` only (what every batch
    system accepts unquoted), prefixed ``gb-`` and ending with the attempt number."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name)[: limit - 12] or "job"
    return f"gb-{cleaned}.{attempt_id.rpartition('.')[2]}"[:limit]


def runtime_argv(site: SiteConfig, launch_url: str, scratch: str,
                 default_python: str = "python3") -> list[str]:
    """The argv that runs the attempt on the site's host."""
    python = site.runtime.python or default_python
    return [python, "-m", "gridbridge.runtime", "--launch", launch_url, "--scratch", scratch]


def job_script(site: SiteConfig, argv: Sequence[str], directives: Sequence[str] = (),
               comment: str = "", env: Mapping[str, str] | None = None) -> str:
    """The batch script: ``#!/bin/bash``, the directives (already rendered and quoted by the
    adapter), ``export`` of ``env`` (names checked, values quoted), then ``exec`` of the
    runtime so that the batch system's signals reach it."""
    lines = ["#!/bin/bash", *directives]
    if comment:
        lines.append("# " + comment.replace("\n", " "))
    return "\n".join([*lines, job_command(site, argv, env)]) + "\n"


def job_command(site: SiteConfig, argv: Sequence[str],
                env: Mapping[str, str] | None = None) -> str:
    """The body of the job script, POSIX ``sh``: ``export`` of ``env`` (names checked, values
    quoted), then ``exec`` of the runtime (through the prologue, if any). Usable as
    ``sbatch --wrap``, which saves sbatch reading a script from its stdin."""
    lines = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"not an environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    if site.runtime.prologue:
        command = ["bash", "-c", prologue_script(site.runtime.prologue), "gridbridge-run", *argv]
    else:
        command = list(argv)
    lines.append("exec " + shlex.join(command))
    return "\n".join(lines)
