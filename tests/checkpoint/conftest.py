"""Fixtures of the checkpoint tests: unique prefixes on file:// and memory://, and a SeaweedFS
S3 gateway for the ``s3`` tests, started once per session through ``deploy/dev/s3-start.sh``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.memfs import fresh_memory_prefix

REPO = Path(__file__).resolve().parents[2]
S3_DIR = REPO / ".peers" / "s3"
BUCKET = "gridbridge-tests"


@pytest.fixture(params=["file", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh job prefix on file:// or memory:// (memory is process-global: unique names)."""
    if request.param == "file":
        yield f"file://{tmp_path}/job"
        return
    with fresh_memory_prefix("ckpt") as name:
        yield f"memory://{name}/job"


@pytest.fixture
def file_url(tmp_path: Path) -> str:
    return f"file://{tmp_path}/job"


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def _ensure_bucket(endpoint: str, key: str, secret: str, bucket: str) -> None:
    """Make the test bucket with boto3's synchronous client, closed at once. (The s3fs
    session used here before is asyncio's; twice in CI, on a fresh clone, a socket of it was
    collected unclosed in this fixture's setup, a ResourceWarning the run counts as an
    error. Not reproduced on a warm machine.)"""
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                          aws_secret_access_key=secret, region_name="us-east-1")
    try:
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            client.create_bucket(Bucket=bucket)
    finally:
        client.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """The SeaweedFS endpoint and storage options; stopped at the end only if we started it."""
    pidfile = S3_DIR / "s3.pid"
    was_running = pidfile.exists() and _pid_alive(pidfile)
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        [str(REPO / "deploy" / "dev" / "s3-start.sh"), str(S3_DIR)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"SeaweedFS did not start: {proc.stderr[-2000:]}")
    endpoint = proc.stdout.strip().splitlines()[-1]
    options = {"endpoint_url": endpoint, "key": "gridbridge", "secret": "gridbridge"}
    _ensure_bucket(endpoint, "gridbridge", "gridbridge", BUCKET)
    yield {"endpoint": endpoint, "storage_options": options, "bucket": BUCKET}
    if not was_running:
        subprocess.run(
            [str(REPO / "deploy" / "dev" / "s3-stop.sh"), str(S3_DIR)],
            capture_output=True, timeout=60, check=False,
        )


@pytest.fixture
def s3_url(s3_server: dict[str, Any]) -> str:
    """A fresh job prefix in the test bucket."""
    return f"s3://{s3_server['bucket']}/t-{uuid.uuid4().hex[:12]}/job"
