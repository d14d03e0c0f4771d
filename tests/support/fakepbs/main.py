"""A fake OpenPBS: ``qsub``, ``qstat``, ``qdel`` and ``pbsnodes``, chosen by the name it is
called by (``argv[0]``), or ``main.py NAME ARGS...``.

This is an EMULATION of a peer that cannot run on a developer machine or a CI runner (a PBS
server needs root, its own daemons and a licensed or built-from-source install). It imitates
what OpenPBS documents and prints, not what would suit the adapter:

* ``qsub [-N name] [-q queue] [-A account] [-l res=val[,..]]... [-o [host:]path] [-e path]
  [-j oe|eo|n] [-k ...] [-r y|n] [-v NAME[=value],...] [script]``: the script comes from the
  file or, with none, from stdin; the job id ``<seq>.<server>`` is printed on stdout. An
  unknown queue is refused (``qsub: Unknown queue``, exit 170 = PBSE_UNKQUE 15018 mod 256).
* ``qstat -f -F json [-x] [-u user[@host][,..]] [ids]``: OpenPBS's JSON shape
  (``timestamp``, ``pbs_version``, ``pbs_server``, ``Jobs``; no ``Jobs`` key when there are
  none), values that look numeric printed without quotes as OpenPBS does (also inside
  ``Variable_List``). Unknown ids:
  ``qstat: Unknown Job Id ID`` on stderr, exit 153 (PBSE_UNKJOBID 15001 mod 256); a finished
  job without ``-x``: exit 35 (PBSE_HISTJOBID 15139 mod 256). The known jobs still print.
  ``-u`` keeps the jobs whose ``Job_Owner`` is one of the users.
* ``qdel ids``: SIGTERM to the job's session, SIGKILL ``FAKEPBS_KILL_DELAY`` seconds (2)
  later (PBS's ``kill_delay``); a job deleted while queued never starts.
* ``pbsnodes -a -F json``: one node, ``FAKEPBS_NCPUS`` (8) cpus, ``FAKEPBS_MEM_KB`` memory,
  ``FAKEPBS_NGPUS`` (0) gpus, less what running jobs were assigned.

Faults, for the tests: ``FAKEPBS_USER`` submits as that user (another user's jobs);
``FAKEPBS_DOWN=cmd[,cmd..]`` makes those commands fail as when the server cannot be reached
(``Connection refused`` / ``cmd: cannot connect to server S (errno=15010)``, exit 1, nothing
printed on stdout); ``FAKEPBS_DOWN=qsub-after-queuing`` makes qsub fail that way after it
queued the job (the reply lost on the way back).

Each job really runs: a small detached supervisor (the "mom", ``main.py pbs_mom SEQ``) waits
a scheduling cycle (Q), runs ``bash SCRIPT`` in its own session with PBS's job environment
(``PBS_JOBID``, ``PBS_O_*``, the ``-v`` variables, a default PATH: not the submitter's
environment), output written straight to ``Output_Path`` (``-k doe``), enforces the walltime
like a mom (``=>> PBS: job killed: walltime X exceeded limit Y`` on the job's stderr, SIGTERM,
SIGKILL after the kill delay, ``Exit_status`` -29 = JOB_EXEC_KILL_WALLTIME), records how it
ended (E), and marks it finished (F) a moment later. A job killed by signal N exits 256 + N.

Not imitated: ``#PBS`` directives in the script, routing queues, holds, arrays, reruns,
several nodes, resource limits other than walltime, accounting, the timing of a real
scheduler (it starts a job ~0.1 s after qsub) and the coarse walltime checks of a real mom.
Sources: OpenPBS ``src/include/job.h`` (JOB_EXEC_* codes), the PBS Professional Reference
Guide (job states, qsub/qstat/qdel/pbsnodes options), recorded ``-F json`` output in
``tests/data/pbs/`` (see its README.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

VERSION = "23.06.06"
PBSE_UNKJOBID = 153
PBSE_HISTJOBID = 35
PBSE_UNKQUE = 170
JOB_EXEC_KILL_WALLTIME = -29
SUBSTATES = {"Q": 10, "R": 42, "E": 50, "F": 92}
SUBSTATE_TERMINATED = 91
_NUMERIC = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _home() -> Path:
    return Path(os.environ["FAKEPBS_HOME"])


def _server() -> str:
    return os.environ.get("FAKEPBS_SERVER", "fakepbs")


def _user() -> str:
    return os.environ.get("FAKEPBS_USER") or getpass.getuser()


def _down(name: str) -> bool:
    """Whether ``FAKEPBS_DOWN`` names this command: then it cannot reach the server."""
    if name not in os.environ.get("FAKEPBS_DOWN", "").split(","):
        return False
    print(f"Connection refused\n{name.partition('-')[0]}: cannot connect to server "
          f"{_server()} (errno=15010)", file=sys.stderr)
    return True


def _kill_delay() -> float:
    return float(os.environ.get("FAKEPBS_KILL_DELAY", "2"))


def _ncpus() -> int:
    return int(os.environ.get("FAKEPBS_NCPUS", "8"))


# storage: one folder per job, files replaced atomically -----------------------------------

def _job_dir(seq: int) -> Path:
    return _home() / "jobs" / str(seq)


def _write(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with open(_home() / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _next_seq() -> int:
    with _locked():
        counter = _home() / "counter"
        seq = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(seq))
    return seq


def _seq_of(job_id: str) -> int | None:
    head, _, server = job_id.partition(".")
    if not head.isdigit() or (server and server != _server()):
        return None
    return int(head) if _job_dir(int(head)).is_dir() else None


def _all_seqs() -> list[int]:
    jobs = _home() / "jobs"
    return sorted(int(p.name) for p in jobs.iterdir() if p.name.isdigit()) if jobs.is_dir() else []


def _options(command: str, args: list[str], spec: str,
             usage: str = "") -> tuple[list[tuple[str, str]], list[str]] | None:
    """``getopt`` of ``args``; None (after saying why on stderr, as PBS does) when they do
    not parse."""
    import getopt

    try:
        return getopt.getopt(args, spec)
    except getopt.GetoptError as exc:
        print(f"{command}: {exc}" + (f"\n{usage}" if usage else ""), file=sys.stderr)
        return None


# qsub -------------------------------------------------------------------------------------

def qsub(args: list[str]) -> int:
    """Queue a job; print its id."""
    parsed = _options("qsub", args, "N:q:A:l:o:e:j:k:r:v:W:V",
                      "usage: qsub [-N name] [-q queue] ... [script]")
    if parsed is None:
        return 2
    opts, rest = parsed
    queues = os.environ.get("FAKEPBS_QUEUES", "workq").split(",")
    job: dict[str, Any] = {"queue": queues[0], "resources": {}, "variables": {},
                           "join": "n", "keep": "n", "rerunable": "True"}
    for flag, value in opts:
        if flag == "-N":
            if not value or len(value) > 236 or re.search(r"[\s\x00-\x1f]", value):
                print(f"qsub: illegal -N value {value!r}", file=sys.stderr)
                return 2
            job["name"] = value
        elif flag == "-q":
            job["queue"] = value
        elif flag == "-A":
            job["account"] = value
        elif flag == "-l":
            for item in value.split(","):
                name, sep, val = item.partition("=")
                if not sep or not val:
                    print(f"qsub: illegal -l value {item!r}", file=sys.stderr)
                    return 2
                job["resources"][name] = val
        elif flag == "-v":
            for item in value.split(","):
                name, sep, val = item.partition("=")
                job["variables"][name] = val if sep else os.environ.get(name, "")
        elif flag in ("-o", "-e"):
            job["output" if flag == "-o" else "error"] = value
        elif flag == "-j":
            job["join"] = value
        elif flag == "-k":
            job["keep"] = value
        elif flag == "-r":
            job["rerunable"] = "True" if value == "y" else "False"
    if job["queue"].partition("@")[0] not in queues:
        print("qsub: Unknown queue", file=sys.stderr)
        return PBSE_UNKQUE
    walltime = _seconds(job["resources"].get("walltime", "01:00:00"))
    if walltime is None:
        print("qsub: Illegal attribute or resource value Resource_List.walltime",
              file=sys.stderr)
        return 2
    script = Path(rest[0]).read_text() if rest else sys.stdin.read()
    if not script.strip():
        print("qsub: script file is empty", file=sys.stderr)
        return 2
    seq = _next_seq()
    folder = _job_dir(seq)
    folder.mkdir(parents=True)
    (folder / "script").write_text(script)
    host = socket.gethostname()
    name = job.setdefault("name", Path(rest[0]).name if rest else "STDIN")
    cwd = os.getcwd()
    job["output"] = _with_host(job.get("output") or f"{cwd}/{name}.o{seq}", host)
    job["error"] = _with_host(job.get("error") or f"{cwd}/{name}.e{seq}", host)
    job.update(id=f"{seq}.{_server()}", seq=seq, owner=f"{_user()}@{host}",
               host=host, cwd=cwd, ctime=time.time(), walltime_s=walltime,
               args=" ".join(args))
    env = os.environ
    job["variables"] = {
        "PBS_O_HOME": env.get("HOME", "/"), "PBS_O_LOGNAME": getpass.getuser(),
        "PBS_O_PATH": env.get("PATH", ""), "PBS_O_SHELL": env.get("SHELL", "/bin/sh"),
        "PBS_O_HOST": host, "PBS_O_WORKDIR": cwd, "PBS_O_SYSTEM": "Linux",
        "PBS_O_QUEUE": job["queue"], **job["variables"],
    }
    _write(folder / "job.json", job)
    with open(folder / "mom.log", "ab") as log:
        subprocess.Popen(  # the job's supervisor, detached: it outlives this qsub
            [sys.executable, str(Path(__file__).resolve()), "pbs_mom", str(seq)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True, close_fds=True,
        )
    if _down("qsub-after-queuing"):
        return 1
    print(job["id"])
    return 0


def _with_host(path: str, host: str) -> str:
    return path if ":" in path else f"{host}:{path}"


def _seconds(value: str) -> int | None:
    try:
        parts = [int(p) for p in value.split(":")]
    except ValueError:
        return None
    total = 0
    for part in parts:
        total = total * 60 + part
    return total if len(parts) <= 3 else None


# the supervisor ---------------------------------------------------------------------------

def pbs_mom(args: list[str]) -> int:
    """Run one job: Q for a scheduling cycle, then R, then E and F."""
    seq = int(args[0])
    folder = _job_dir(seq)
    job = _read(folder / "job.json")
    if job is None:
        return 1
    time.sleep(0.1)  # the scheduler's cycle
    if (folder / "qdel").exists():
        _write(folder / "exit.json", {"state": "F", "substate": SUBSTATE_TERMINATED,
                                      "end": time.time()})
        return 0
    output = Path(job["output"].partition(":")[2])
    error = output if job["join"] in ("oe", "eo") else Path(job["error"].partition(":")[2])
    with open(output, "ab") as out, open(error, "ab") as err:
        child = subprocess.Popen(
            ["/bin/bash", str(folder / "script")], env=_job_env(job, folder),
            cwd=os.environ.get("HOME", "/"), stdin=subprocess.DEVNULL, stdout=out,
            stderr=out if error == output else err, start_new_session=True,
        )
    _write(folder / "run.json", {"pid": child.pid, "start": time.time()})
    code, reason = _supervise(child, folder, job, error)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)  # nothing of a finished job keeps running
    status = code if code >= 0 else 256 - code
    if reason == "walltime":
        status = JOB_EXEC_KILL_WALLTIME
    end = {"Exit_status": status, "end": time.time(), "reason": reason}
    _write(folder / "exit.json", {**end, "state": "E", "substate": SUBSTATES["E"]})
    time.sleep(0.1)  # obit, file staging, epilogue
    substate = SUBSTATE_TERMINATED if reason == "qdel" else SUBSTATES["F"]
    _write(folder / "exit.json", {**end, "state": "F", "substate": substate})
    return 0


def _supervise(child: subprocess.Popen[bytes], folder: Path, job: Mapping[str, Any],
               error: Path) -> tuple[int, str]:
    """Wait for the job, stopping it at its walltime or on qdel: SIGTERM, then SIGKILL."""
    start, reason, kill_at = time.monotonic(), "", 0.0
    while (code := child.poll()) is None:
        now = time.monotonic()
        if not reason and now - start > float(job["walltime_s"]):
            with open(error, "a") as err:
                err.write(f"=>> PBS: job killed: walltime {int(now - start)} exceeded limit "
                          f"{job['walltime_s']}\n")
            reason = "walltime"
        elif not reason and (folder / "qdel").exists():
            reason = "qdel"
        if reason and not kill_at:
            kill_at = now + _kill_delay()
            _killpg(child.pid, signal.SIGTERM)
        elif kill_at and now >= kill_at:
            _killpg(child.pid, signal.SIGKILL)
        time.sleep(0.05)
    return code, reason


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _job_env(job: Mapping[str, Any], folder: Path) -> dict[str, str]:
    """What PBS gives a job: its own variables, not the submitter's environment."""
    home = os.environ.get("HOME", "/")
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    nodefile = folder / "nodefile"
    nodefile.write_text("fakenode\n")
    ncpus = str(job["resources"].get("ncpus") or _select(job).get("ncpus", "1"))
    return {
        "HOME": home, "USER": getpass.getuser(), "LOGNAME": getpass.getuser(),
        "SHELL": "/bin/bash", "PATH": "/bin:/usr/bin", "LANG": "C.UTF-8",
        **{k: str(v) for k, v in job["variables"].items()},
        "PBS_JOBID": job["id"], "PBS_JOBNAME": job["name"], "PBS_QUEUE": job["queue"],
        "PBS_ENVIRONMENT": "PBS_BATCH", "PBS_NODEFILE": str(nodefile), "PBS_JOBDIR": home,
        "PBS_O_QUEUE": job["queue"], "TMPDIR": str(tmp), "NCPUS": ncpus,
        "OMP_NUM_THREADS": ncpus,
    }


def _select(job: Mapping[str, Any]) -> dict[str, str]:
    chunk = str(job["resources"].get("select", "1")).split("+")[0]
    return dict(p.partition("=")[::2] for p in chunk.split(":")[1:])


# qstat ------------------------------------------------------------------------------------

def _state(seq: int) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    folder = _job_dir(seq)
    ended, run = _read(folder / "exit.json"), _read(folder / "run.json")
    if ended is not None:
        return str(ended["state"]), run, ended
    return ("R" if run is not None else "Q"), run, None


def _attributes(seq: int) -> tuple[str, dict[str, Any]]:
    """A job as ``qstat -f`` shows it, attribute names and order as OpenPBS prints them."""
    job = _read(_job_dir(seq) / "job.json") or {}
    state, run, ended = _state(seq)
    select = job["resources"].get("select", "1:ncpus=1")
    chunk = _select(job)
    ncpus = chunk.get("ncpus", "1")
    resources = {k: v for k, v in (("mem", chunk.get("mem")), ("ncpus", ncpus),
                                   ("ngpus", chunk.get("ngpus"))) if v is not None}
    attrs: dict[str, Any] = {"Job_Name": job["name"], "Job_Owner": job["owner"]}
    if run is not None:
        used = int((ended or {}).get("end", time.time()) - run["start"])
        attrs["resources_used"] = {"cpupercent": 0, "cput": "00:00:00", "mem": "0kb",
                                   "ncpus": ncpus, "vmem": "0kb", "walltime": _hms(used)}
    attrs.update(job_state=state, queue=job["queue"].partition("@")[0], server=_server())
    if "account" in job:
        attrs["Account_Name"] = job["account"]
    attrs.update(Checkpoint="u", ctime=time.ctime(job["ctime"]), Error_Path=job["error"])
    if run is not None:
        attrs.update(exec_host="fakenode/0", exec_vnode=f"(fakenode:ncpus={ncpus})")
    attrs.update(Hold_Types="n", Join_Path=job["join"], Keep_Files=job["keep"],
                 Mail_Points="a", mtime=time.ctime(), Output_Path=job["output"], Priority=0,
                 qtime=time.ctime(job["ctime"]), Rerunable=job["rerunable"],
                 Resource_List={**resources, "nodect": 1, "place": "pack", "select": select,
                                "walltime": _hms(int(job["walltime_s"]))})
    if run is not None:
        attrs.update(stime=time.ctime(run["start"]), session_id=run["pid"],
                     jobdir=os.environ.get("HOME", "/"))
    attrs["substate"] = (ended or {}).get("substate") or SUBSTATES["R" if run else "Q"]
    attrs["Variable_List"] = job["variables"]
    if run is not None:
        ran = time.strftime("%a %b %d at %H:%M", time.localtime(run["start"]))
        done = " and finished" if state == "F" else ""
        attrs["comment"] = f"Job run at {ran} on (fakenode:ncpus={ncpus}){done}"
    attrs.update(etime=time.ctime(job["ctime"]), run_count=1 if run else 0)
    if ended is not None and "Exit_status" in ended:
        attrs["Exit_status"] = ended["Exit_status"]
    attrs.update(Submit_arguments=job["args"], project="_pbs_project_default",
                 Submit_Host=job["host"])
    return state, attrs


def _hms(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def qstat(args: list[str]) -> int:
    """``qstat -f -F json [-x] [-u users] [ids]``."""
    parsed = _options("qstat", args, "fF:xu:")
    if parsed is None:
        return 2
    opts, ids = parsed
    flags = dict(opts)
    if "-f" not in flags or flags.get("-F") != "json":
        print("fakepbs: only 'qstat -f -F json [-x] [-u users] [ids]' is emulated",
              file=sys.stderr)
        return 2
    users = {u.partition("@")[0] for u in flags["-u"].split(",")} if "-u" in flags else None
    history, code, jobs = "-x" in flags, 0, {}
    for job_id in ids or [f"{s}.{_server()}" for s in _all_seqs()]:
        seq = _seq_of(job_id)
        if seq is None:
            print(f"qstat: Unknown Job Id {job_id}", file=sys.stderr)
            code = PBSE_UNKJOBID
            continue
        state, attrs = _attributes(seq)
        if users is not None and attrs["Job_Owner"].partition("@")[0] not in users:
            continue
        if state == "F" and not history:
            if ids:
                print(f"qstat: {job_id} Job has finished, use -x or -H to obtain historical "
                      "job information", file=sys.stderr)
                code = PBSE_HISTJOBID
            continue
        jobs[f"{seq}.{_server()}"] = attrs
    head: dict[str, Any] = {"timestamp": int(time.time()), "pbs_version": VERSION,
                            "pbs_server": _server()}
    if jobs:
        head["Jobs"] = jobs
    print(_json(head))
    return code


def _json(value: Any, depth: int = 0) -> str:
    """JSON as OpenPBS's qstat writes it: tab-indented, numeric-looking strings unquoted."""
    pad = "\t" * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{\n" + "\t" * depth + "}"
        items = [f"{pad}{json.dumps(str(k))}:\t{_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "\t" * depth + "}"
    if isinstance(value, list):
        return "[\n" + ",\n".join(pad + _json(v, depth + 1) for v in value) + "\n" + \
            "\t" * depth + "]"
    text = str(value)
    return text if _NUMERIC.fullmatch(text) else json.dumps(text)


# qdel and pbsnodes ------------------------------------------------------------------------

def qdel(args: list[str]) -> int:
    """Delete jobs: the supervisor sends SIGTERM, then SIGKILL after the kill delay."""
    code = 0
    for job_id in (a for a in args if not a.startswith("-")):
        seq = _seq_of(job_id)
        if seq is None:
            print(f"qdel: Unknown Job Id {job_id}", file=sys.stderr)
            code = PBSE_UNKJOBID
        elif _state(seq)[0] == "F":
            print(f"qdel: Job {job_id} has finished", file=sys.stderr)
            code = PBSE_HISTJOBID
        else:
            marker = _job_dir(seq) / "qdel"
            if not marker.exists():
                marker.write_text(f"{time.time()}\n")
    return code


def pbsnodes(args: list[str]) -> int:
    """``pbsnodes -a -F json``: one node, less what running jobs were assigned."""
    if "-a" not in args or "json" not in args:
        print("fakepbs: only 'pbsnodes -a -F json' is emulated", file=sys.stderr)
        return 2
    ncpus, mem_kb = _ncpus(), int(os.environ.get("FAKEPBS_MEM_KB", str(16 << 20)))
    ngpus = int(os.environ.get("FAKEPBS_NGPUS", "0"))
    used = {"ncpus": 0, "mem": 0, "ngpus": 0}
    running = []
    for seq in _all_seqs():
        state, _, _ = _state(seq)
        if state in ("R", "E"):
            job = _read(_job_dir(seq) / "job.json") or {}
            chunk = _select(job)
            used["ncpus"] += int(chunk.get("ncpus", "1"))
            used["mem"] += int(chunk.get("mem", "0mb").removesuffix("mb") or 0) * 1024
            used["ngpus"] += int(chunk.get("ngpus", "0"))
            running.append(f"{seq}.{_server()}")
    available: dict[str, Any] = {"arch": "linux", "host": "fakenode",
                                 "mem": f"{mem_kb}kb", "ncpus": ncpus}
    if ngpus:
        available["ngpus"] = ngpus
    available["vnode"] = "fakenode"
    node: dict[str, Any] = {"Mom": socket.gethostname(), "ntype": "PBS",
                            "state": "job-busy" if used["ncpus"] >= ncpus else "free",
                            "pcpus": ncpus}
    if running:
        node["jobs"] = running
    assigned: dict[str, Any] = {"mem": f"{used['mem']}kb", "ncpus": used["ncpus"]}
    if ngpus:
        assigned["ngpus"] = used["ngpus"]
    node.update(resources_available=available, resources_assigned=assigned,
                resv_enable="True", sharing="default_shared", license="l",
                last_state_change_time=int(time.time()))
    print(_json({"timestamp": int(time.time()), "pbs_version": VERSION,
                 "pbs_server": _server(), "nodes": {"fakenode": node}}))
    return 0


COMMANDS = {"qsub": qsub, "qstat": qstat, "qdel": qdel, "pbsnodes": pbsnodes,
            "pbs_mom": pbs_mom}


def main(argv: list[str]) -> int:
    """Dispatch on the name this was called by."""
    name, args = Path(argv[0]).name, argv[1:]
    if name not in COMMANDS and args:
        name, args = args[0], args[1:]
    if name not in COMMANDS:
        print(f"fakepbs: unknown command {name!r}", file=sys.stderr)
        return 2
    (_home() / "jobs").mkdir(parents=True, exist_ok=True)
    if _down(name):
        return 1
    return COMMANDS[name](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
