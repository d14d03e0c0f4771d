"""The compare-and-set on object stores (the fence's ``If-Match`` update): a lost race is
retried after a jittered pause that grows up to a cap, within a bounded time; an I/O error is
never taken for a lost race: it is raised after a few tries, naming the URL without secrets."""

from __future__ import annotations

import errno
import hashlib
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import fsspec
import pytest

from gridbridge.checkpoint._backend import Backend
from gridbridge.checkpoint._retry import RetryPolicy, is_conflict
from tests.support.memfs import fresh_memory_prefix

PRECONDITION = "At least one of the pre-conditions you specified did not hold"
"""What S3 says when an ``If-Match`` fails; s3fs raises it as ``OSError(EINVAL, ...)``."""


class _ClientError(Exception):
    """Shaped like botocore's ``ClientError``: the parsed answer in ``response``."""

    def __init__(self, code: str) -> None:
        super().__init__(f"An error occurred ({code})")
        self.response = {"Error": {"Code": code, "Message": "..."}}


class _StoreFS:
    """A memory filesystem that speaks like an object store: ``info`` gives an ETag, and the
    conditional writes (``IfMatch``) fail with the queued errors, one per write, first."""

    def __init__(self, failures: list[BaseException] | None = None,
                 read_failures: list[BaseException] | None = None) -> None:
        self.inner = fsspec.filesystem("memory")
        self.failures = list(failures or [])
        self.read_failures = list(read_failures or [])
        self.writes = 0
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def info(self, path: str, **kw: Any) -> dict[str, Any]:
        self.reads += 1
        if self.read_failures:
            raise self.read_failures.pop(0)
        info = dict(self.inner.info(path, **kw))
        info["ETag"] = hashlib.md5(self.inner.cat_file(path)).hexdigest()  # as S3 names a version
        return info

    def pipe_file(self, path: str, data: bytes, mode: str = "overwrite", **kw: Any) -> None:
        if "IfMatch" in kw:
            self.writes += 1
            if self.failures:
                raise self.failures.pop(0)
            kw.pop("IfMatch")
        self.inner.pipe_file(path, data, mode=mode, **kw)


class _SecretURLFS(_StoreFS):
    """The same, addressed by a URL that carries credentials and a signature."""

    def unstrip_protocol(self, path: str) -> str:
        return f"https://key:SECRET@store.example{path}?X-Amz-Signature=SIGNATURE"


@pytest.fixture
def root() -> Iterator[str]:
    with fresh_memory_prefix("cas") as name:
        yield name


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every pause the code under test asks for (recorded; nothing sleeps)."""
    asked: list[float] = []
    monkeypatch.setattr(time, "sleep", asked.append)
    return asked


def _backend(fs: _StoreFS, root: str) -> tuple[Backend, str]:
    path = f"{root}/fence.json"
    fs.inner.pipe_file(path, json.dumps({"token": 1}).encode())
    return Backend(fs, root), path


def _bump(current: dict[str, Any] | None) -> dict[str, Any]:
    return {"token": int((current or {}).get("token", 0)) + 1}


def test_an_io_error_is_raised_naming_the_url_not_retried_as_a_conflict(
    root: str, pauses: list[float],
) -> None:
    fs = _StoreFS([OSError(errno.EIO, "connection reset by peer")] * 60)
    backend, path = _backend(fs, root)
    with pytest.raises(OSError, match="could not update") as raised:
        backend.compare_and_set(path, _bump)
    assert not isinstance(raised.value, TimeoutError)
    assert "contention" not in str(raised.value)
    assert f"memory://{path}" in str(raised.value) and "connection reset" in str(raised.value)
    assert 1 < fs.writes <= RetryPolicy().io_errors  # a few tries, not fifty
    assert len(pauses) == fs.writes - 1


def test_an_io_error_reading_the_object_is_retried_then_raised_naming_the_url(
    root: str, pauses: list[float],
) -> None:
    fs = _StoreFS(read_failures=[OSError(errno.EIO, "connection reset by peer")] * 60)
    backend, path = _backend(fs, root)
    with pytest.raises(OSError, match=f"could not update memory://{path}"):
        backend.compare_and_set(path, _bump)
    assert 1 < fs.reads <= RetryPolicy().io_errors and fs.writes == 0


def test_a_passing_io_error_is_retried_and_the_update_lands(
    root: str, pauses: list[float],
) -> None:
    fs = _StoreFS([OSError(errno.EIO, "connection reset by peer")])
    backend, path = _backend(fs, root)
    assert backend.compare_and_set(path, _bump) == {"token": 2}
    assert json.loads(fs.inner.cat_file(path)) == {"token": 2}
    assert len(pauses) == 1


def test_the_error_names_the_url_without_its_secrets(root: str, pauses: list[float]) -> None:
    fs = _SecretURLFS([PermissionError(errno.EACCES, "Access Denied")] * 10)
    backend, path = _backend(fs, root)
    with pytest.raises(OSError) as raised:
        backend.compare_and_set(path, _bump)
    message = str(raised.value)
    assert f"https://store.example{path}" in message
    assert "SECRET" not in message and "SIGNATURE" not in message and "key:" not in message


def test_a_denied_store_is_raised_at_once_as_a_permission_error(
    root: str, pauses: list[float],
) -> None:
    fs = _StoreFS([PermissionError(errno.EACCES, "Access Denied")] * 10)
    backend, path = _backend(fs, root)
    with pytest.raises(PermissionError, match=f"could not update memory://{path}"):
        backend.compare_and_set(path, _bump)
    assert fs.writes == 1 and pauses == []  # another try cannot mend it
    fs = _StoreFS(read_failures=[PermissionError(errno.EACCES, "denied")] * 10)
    backend, path = _backend(fs, root)
    with pytest.raises(PermissionError):
        backend.compare_and_set(path, _bump)
    assert fs.reads == 1 and fs.writes == 0


@pytest.mark.parametrize("missing", [FileNotFoundError(errno.ENOENT, "NoSuchBucket"),
                                     NotADirectoryError(errno.ENOTDIR, "not a folder")])
def test_a_missing_bucket_or_folder_keeps_its_kind_and_is_not_retried(
    root: str, pauses: list[float], missing: OSError,
) -> None:
    fs = _StoreFS([missing] * 10)
    backend, path = _backend(fs, root)
    with pytest.raises(type(missing), match="could not update"):
        backend.compare_and_set(path, _bump)
    assert fs.writes == 1 and pauses == []


def test_a_flaky_store_error_keeps_its_kind_after_its_tries(
    root: str, pauses: list[float],
) -> None:
    fs = _StoreFS([ConnectionResetError(errno.ECONNRESET, "reset by peer")] * 10)
    backend, path = _backend(fs, root)
    with pytest.raises(ConnectionResetError, match="could not update"):
        backend.compare_and_set(path, _bump)
    assert fs.writes == RetryPolicy().io_errors


def test_a_url_in_the_librarys_own_message_loses_its_secrets(
    root: str, pauses: list[float],
) -> None:
    said = ("GET https://key:SECRET@store.example/b/fence.json?X-Amz-Signature=SIGNATURE "
            "failed: 503")
    fs = _StoreFS([OSError(errno.EIO, said)] * 10)
    backend, path = _backend(fs, root)
    with pytest.raises(OSError) as raised:
        backend.compare_and_set(path, _bump)
    message = str(raised.value)
    assert "https://store.example/b/fence.json failed: 503" in message
    assert "SECRET" not in message and "SIGNATURE" not in message


def test_a_lost_race_is_retried_after_pauses_with_jitter(root: str, pauses: list[float]) -> None:
    fs = _StoreFS([OSError(errno.EINVAL, PRECONDITION)] * 8)
    backend, path = _backend(fs, root)
    assert backend.compare_and_set(path, _bump) == {"token": 2}
    assert fs.writes == 9
    assert len(pauses) == 8  # one pause before each retry, none before the first try
    policy = RetryPolicy()
    assert all(0 <= p <= policy.window(i) for i, p in enumerate(pauses))
    assert len(set(pauses)) > 1  # jitter: racing writers do not retry in lockstep


def test_the_pause_window_doubles_up_to_a_cap(
    root: str, pauses: list[float], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(random, "random", lambda: 1.0)  # every pause at its window's top
    fs = _StoreFS([OSError(errno.EINVAL, PRECONDITION)] * 12)
    backend, path = _backend(fs, root)
    backend.retry = RetryPolicy(base_s=0.01, cap_s=0.16)
    backend.compare_and_set(path, _bump)
    assert pauses == pytest.approx([0.01, 0.02, 0.04, 0.08] + [0.16] * 8)


def test_contention_gives_up_within_its_time_budget(root: str) -> None:
    fs = _StoreFS([OSError(errno.EINVAL, PRECONDITION)] * 1000)
    backend, path = _backend(fs, root)
    backend.retry = RetryPolicy(conflicts=1000, base_s=0.02, cap_s=0.05, budget_s=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="too much contention"):
        backend.compare_and_set(path, _bump)
    assert time.monotonic() - started < 1.0
    assert 2 < fs.writes < 1000  # it paused between tries and stopped at the budget


def test_contention_gives_up_after_its_tries(root: str, pauses: list[float]) -> None:
    fs = _StoreFS([OSError(errno.EINVAL, PRECONDITION)] * 1000)
    backend, path = _backend(fs, root)
    with pytest.raises(TimeoutError, match=f"could not update memory://{path}"):
        backend.compare_and_set(path, _bump)
    assert fs.writes == RetryPolicy().conflicts
    assert 0 < sum(pauses) <= RetryPolicy().budget_s


@pytest.mark.parametrize("exc", [
    OSError(errno.EINVAL, PRECONDITION),
    FileExistsError("the object exists"),
    _ClientError("PreconditionFailed"),
    _ClientError("ConditionalRequestConflict"),
])
def test_these_say_another_writer_won(exc: BaseException) -> None:
    wrapped = OSError(errno.EINVAL, "Bad Request")
    wrapped.__cause__ = exc
    assert is_conflict(exc) and is_conflict(wrapped)


@pytest.mark.parametrize("exc", [
    OSError(errno.EIO, "connection reset by peer"),
    PermissionError(errno.EACCES, "Access Denied"),
    OSError(errno.EINVAL, "Bad Request"),
    _ClientError("SlowDown"),
    TimeoutError("read timed out"),
])
def test_these_are_io_errors(exc: BaseException) -> None:
    assert not is_conflict(exc)
