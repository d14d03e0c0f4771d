"""Where a site's commands run: this host or a login node over SSH, with one run folder and
one federation tag. Slurm, PBS and edge sites compose a :class:`SiteHost`; none rebuilds it.

Invariant: a site's run folder is made and made absolute (``realpath``) once per host before
any job path is built from it, and a site's federation tag is the configured one or
``sha256(resolved workdir)[:10]``, always matching :data:`FEDERATION_TAG_PATTERN`::

    HostOptions ──► SiteHost.for_site(options, workdir, kind=, site=, runner=)
                     ├─ runner      LocalRunner | SSHRunner(login) | the one given (tests)
                     ├─ remote_dir  remote_dir | <workdir>/<kind>/<site> | .gridbridge/<kind>/<site>
                     ├─ tag         federation_tag | sha256(resolved workdir)[:10]
                     ├─ cmd(name)   <bin_dir>/<name> | name
                     ├─ run(argv)   runner.run(argv, timeout=command_timeout_s)
                     └─ ensure_dir  mkdir -p -m 700; realpath; check; cache (once)

Every folder it makes for run data is its owner's alone (``mkdir -m 700``): a run folder holds
records and logs other users of a shared login host must not read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field

from gridbridge.adapter import SubmitRejected
from gridbridge.adapters._run import Completed, LocalRunner, Runner, SSHRunner, SSHTarget
from gridbridge.frozen import Frozen

__all__ = [
    "FEDERATION_TAG_PATTERN",
    "FederationTag",
    "HostOptions",
    "SiteHost",
    "default_remote_dir",
    "federation_tag",
    "private_mkdir",
]

FEDERATION_TAG_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
"""A federation tag: safe in a Slurm comment, a PBS ``-v`` variable, an EC2 tag, a path."""

FederationTag = Annotated[str, Field(pattern=FEDERATION_TAG_PATTERN)]
"""The type of every ``federation_tag`` option."""


def federation_tag(workdir: str | os.PathLike[str], given: str | None = None) -> str:
    """``given``, or the tag derived from the workdir: the first ten hex digits of the SHA-256
    of its resolved path, so two control planes sharing an account never sweep each other's
    jobs while one control plane restarted on the same workdir finds its own."""
    return given or hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:10]


def default_remote_dir(workdir: str | os.PathLike[str], *, kind: str, site: str,
                       over_ssh: bool) -> str:
    """``<workdir>/<kind>/<site>`` (resolved) on this host; ``.gridbridge/<kind>/<site>``,
    in the login user's home, over SSH."""
    if over_ssh:
        return f".gridbridge/{kind}/{site}"
    return str(Path(workdir).resolve() / kind / site)


def private_mkdir(folder: str) -> list[str]:
    """The argv that makes ``folder`` (and its parents) on a host, the folder itself readable
    by its owner only whatever the host's umask (the parents keep the umask's mode)."""
    return ["mkdir", "-p", "-m", "700", "--", folder]


class HostOptions(Frozen):
    """The options every site reached through a login host shares (``options:`` of Slurm and
    PBS sites subclass it)."""

    login: SSHTarget | None = None
    """Run the commands on this login node over SSH; None: on this host."""
    bin_dir: str | None = None
    """Where the scheduler's commands are on the login host; None: its PATH."""
    remote_dir: str | None = None
    """A folder the login host and the compute nodes share, for job output and run files;
    default ``<workdir>/<kind>/<site>`` when local, ``.gridbridge/<kind>/<site>`` (in the
    login user's home) over SSH."""
    command_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    federation_tag: FederationTag | None = None
    """Marks this federation's jobs so that two control planes sharing a cluster account
    never sweep each other's jobs; default: derived from the workdir."""


class SiteHost:
    """One site's login host: its runner, its run folder and its federation tag."""

    def __init__(self, options: HostOptions, runner: Runner, *, remote_dir: str,
                 tag: str) -> None:
        self.options = options
        self.runner = runner
        self.remote_dir = remote_dir
        """The run folder; absolute once :meth:`ensure_dir` has run."""
        self.tag = tag
        self._dir_made = False

    @classmethod
    def for_site(cls, options: HostOptions, workdir: str | os.PathLike[str], *, kind: str,
                 site: str, runner: Runner | None = None) -> SiteHost:
        """The host of site ``site`` of kind ``kind``: SSH to ``options.login`` when set,
        else this host (``runner``, when given, wins: tests script it)."""
        over_ssh = options.login is not None
        chosen = runner or (SSHRunner(options.login) if options.login else LocalRunner())
        folder = options.remote_dir or default_remote_dir(workdir, kind=kind, site=site,
                                                          over_ssh=over_ssh)
        return cls(options, chosen, remote_dir=folder,
                   tag=federation_tag(workdir, options.federation_tag))

    def cmd(self, name: str) -> str:
        """The path of the scheduler command ``name`` on the login host."""
        return f"{self.options.bin_dir.rstrip('/')}/{name}" if self.options.bin_dir else name

    def run(self, argv: Sequence[str], *, input: str | None = None,
            env: Mapping[str, str] | None = None, timeout: float | None = None) -> Completed:
        """``argv`` on the login host, within ``timeout`` (default ``command_timeout_s``)."""
        return self.runner.run(argv, input=input, env=env,
                               timeout=self.options.command_timeout_s if timeout is None
                               else timeout)

    def ensure_dir(self, usable: Callable[[str], bool], why: str) -> str:
        """Create the run folder once and make :attr:`remote_dir` absolute (a relative path
        over SSH is the login home's). Raises :class:`SubmitRejected` naming ``why`` when the
        absolute path is not ``usable`` for the scheduler."""
        if not self._dir_made:
            self.run(private_mkdir(self.remote_dir)).check("mkdir of the run folder")
            real = self.run(["realpath", "--", self.remote_dir]).check("realpath").strip()
            if not real.startswith("/") or not usable(real):
                raise SubmitRejected(f"unusable run folder {real!r}: {why}")
            self.remote_dir = real
            self._dir_made = True
        return self.remote_dir
