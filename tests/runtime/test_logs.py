"""An attempt's output is kept once on the host, uploaded a new piece at a time, and shown by
``gridbridge logs`` part by part: a 64 MiB log prints whole within 100 MB of memory."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gridbridge.logparts import iter_log, part_url
from gridbridge.logview import escaped
from gridbridge.views import escape_controls
from gridbridge.wire import Record, load_log, put_bytes
from tests.support.serving import cheap_and_steady_config

MIB = 1024 * 1024
LINES = 65536
"""A job that prints LINES lines of 1 KiB: 64 MiB of output."""
BIG_JOB = ("import sys\n"
           f"for i in range({LINES}): sys.stdout.write(f'{{i:07d}}' + 'x' * 1016 + '\\n')\n")


def gb(config: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="400")
    env.pop("GRIDBRIDGE_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", "--config", str(config),
                           *args], env=env, text=True, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def big_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A finished local job that printed 64 MiB; (config, job id)."""
    tmp = tmp_path_factory.mktemp("big")
    config = cheap_and_steady_config(tmp, options={"grace_s": 1})
    done = gb(config, "submit", "--wait", "--site", "cheap", "--", sys.executable, "-c",
              BIG_JOB, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return config, done.stdout.split()[0]


def test_a_64_mib_log_is_shown_whole_within_100_mb(big_job: tuple[Path, str],
                                                   tmp_path: Path) -> None:
    config, job = big_job
    shown = tmp_path / "shown.txt"
    # the logs command alone, in a process of its own: its peak RSS is the child's maxrss
    measure = ("import resource, subprocess, sys\n"
               "with open(sys.argv[1], 'wb') as out:\n"
               "    rc = subprocess.run(sys.argv[2:], stdout=out).returncode\n"
               "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    env = dict(os.environ)
    env.pop("GRIDBRIDGE_CONFIG", None)
    out = subprocess.run([sys.executable, "-c", measure, str(shown), sys.executable, "-m",
                          "gridbridge.cli", "--config", str(config), "logs", job],
                         env=env, capture_output=True, text=True, timeout=300, check=True)
    rc, maxrss_kib = map(int, out.stdout.split())
    assert rc == 0, out.stderr
    assert maxrss_kib < 100 * 1000 * 1000 / 1024, f"peak RSS {maxrss_kib} KiB"
    lines = 0
    with shown.open() as f:
        for line in f:
            if len(line) == 1024 and line.endswith("x\n"):
                assert int(line[:7]) == lines, "every line, in order"
                lines += 1
    assert lines == LINES, "the whole log was shown"


def test_a_local_job_keeps_one_copy_of_its_output_on_the_host(big_job: tuple[Path, str]) -> None:
    config, _ = big_job
    [folder] = (config.parent / "run" / "local" / "cheap").iterdir()
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    held = sum(p.stat().st_size for p in files)
    assert held <= 32 * MIB + 64 * 1024, {p.name: p.stat().st_size for p in files}
    assert (folder / "output.log").resolve() == (folder / "attempt.log").resolve()


# the upload ----------------------------------------------------------------------------------

@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (name, size) the heartbeat writes to storage."""
    from gridbridge.runtime import _heartbeat

    puts: list[tuple[str, int]] = []

    def put(url: str, data: bytes) -> None:
        puts.append((url.rsplit("/", 1)[1], len(data)))
        put_bytes(url, data)

    monkeypatch.setattr(_heartbeat, "put_bytes", put)
    return puts


def beacon(tmp_path: Path, log: Path) -> object:
    """A heartbeat's log upload, driven by the test alone: it uploads once, as a runtime's
    first heartbeat does, and then only when the test says (no thread, so nothing races the
    test's renames however loaded the machine is)."""
    from gridbridge.runtime._heartbeat import LogUpload

    class Driven:
        def __init__(self) -> None:
            self.upload = LogUpload(log, (tmp_path / "store").as_uri())

        def upload_log(self) -> None:
            self.upload.upload()

    made = Driven()
    made.upload_log()
    return made


def test_each_heartbeat_uploads_only_what_the_log_gained(
    tmp_path: Path, counted: list[tuple[str, int]],
) -> None:
    log = tmp_path / "attempt.log"
    log.write_bytes(b"")
    made = beacon(tmp_path, log)
    counted.clear()
    written = bytearray()
    for beat in range(8):
        grown = (b"%d" % beat) * MIB
        written += grown
        with log.open("ab") as f:
            f.write(grown)
        made.upload_log()  # type: ignore[attr-defined]
    uploaded = sum(size for name, size in counted if name.startswith(Record.OUTPUT_LOG))
    assert uploaded <= len(written) + MIB, (uploaded, counted)  # the whole tail: 36 MiB
    assert (load_log((tmp_path / "store").as_uri()) or "").encode() == bytes(written)


def test_a_rotated_segment_is_uploaded_then_removed_and_lost_bytes_are_marked(
    tmp_path: Path, counted: list[tuple[str, int]],
) -> None:
    log = tmp_path / "attempt.log"
    log.write_bytes(b"one\n")
    made = beacon(tmp_path, log)
    log.rename(tmp_path / "attempt.log.1")  # rotated: the rest of "one" is in the old segment
    log.write_bytes(b"two\n")
    made.upload_log()  # type: ignore[attr-defined]
    assert not (tmp_path / "attempt.log.1").exists(), "uploaded, so no longer on the host"
    log.rename(tmp_path / "attempt.log.1")  # rotated twice before an upload: "two" is lost
    (tmp_path / "attempt.log.1").unlink()
    log.write_bytes(b"three\n")
    log.rename(tmp_path / "attempt.log.1")
    log.write_bytes(b"four\n")
    made.upload_log()  # type: ignore[attr-defined]
    text = load_log((tmp_path / "store").as_uri()) or ""
    assert text.startswith("one\ntwo\n\n[gridbridge: output dropped here")
    assert text.endswith("]\nthree\nfour\n")


# reading ---------------------------------------------------------------------------------------

def test_an_old_attempts_single_output_log_still_reads(tmp_path: Path) -> None:
    url = (tmp_path / "old").as_uri()
    put_bytes(f"{url}/{Record.OUTPUT_LOG}", b"caf\xc3\xa9 \xff\r\nend\n")
    assert load_log(url) == "caf\u00e9 \ufffd\nend\n"
    pieces = iter_log(url)
    assert pieces is not None and "".join(pieces) == load_log(url)
    assert iter_log((tmp_path / "none").as_uri()) is None


def test_parts_are_read_in_order_across_a_character_split_between_them(tmp_path: Path) -> None:
    url = (tmp_path / "new").as_uri()
    text = "é" * 300_000 + "end"
    data = text.encode()
    for n, start in enumerate(range(0, len(data), 100_001)):  # odd sizes split each é
        put_bytes(part_url(url, n), data[start:start + 100_001])
    pieces = iter_log(url)
    assert pieces is not None
    assert "".join(pieces) == text


def _split(text: str, size: int) -> Iterator[str]:
    return (text[i:i + size] for i in range(0, len(text), size))


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_escaping_piece_by_piece_is_escaping_the_whole(size: int) -> None:
    text = "a\x1b[2Jb\r\nc\rd\te\u202ef\x1b]0;x\x07\r\n\r"
    assert "".join(escaped(_split(text, size))) == escape_controls(text)


def test_the_runtime_keeps_its_host_copy_in_two_segments_at_most(tmp_path: Path) -> None:
    """A job that prints more than two segments between beats: the host holds at most two, the
    tee waiting for the upload to take the older, and storage gets every byte."""
    log = tmp_path / "attempt.log"
    code = ("import os, pathlib\nfrom gridbridge.runtime import _tee\n"
            f"tee = _tee.Tee(pathlib.Path({str(log)!r}), segment_bytes={MIB}, upload_wait_s=0)\n"
            "for i in range(40): os.write(1, b'y' * 65536)\n"
            "tee.drain(); tee.close()\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   stdout=subprocess.DEVNULL, timeout=60)
    time.sleep(0.1)
    sizes = [p.stat().st_size for p in tmp_path.iterdir()]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt.log", "attempt.log.1"]
    assert sum(sizes) <= 2 * 1024 * 1024 + 65536
