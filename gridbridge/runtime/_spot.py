"""The spot notice: a cloud's warning that it will take the instance back is a stop request.

Invariant: with ``--imds`` the runtime polls the EC2 instance metadata service; a spot
interruption notice sends this process the same SIGTERM a site's own stop sends, so the job
checkpoints and exits ``PREEMPTED_EXIT_CODE`` before the deadline. An unreachable service is
reported once and never ends the attempt::

    every interval_s:  PUT /latest/api/token (renewed before it expires)
                       GET /latest/meta-data/spot/instance-action
                         404 ──> no interruption planned: poll again
                         200 ──> on_notice(action, deadline) once, stop polling
                         401 ──> the token expired early: get another
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from gridbridge.wire import SPOT_NOTICE

__all__ = ["IMDS_ENDPOINT_ENV", "SpotWatch", "spot_notice"]

IMDS_ENDPOINT_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
"""The AWS SDKs' setting for where the instance metadata service is; it wins over ``--imds``."""


class SpotWatch:
    """Polls the EC2 instance metadata service (IMDSv2) for a spot interruption notice.

    Every ``interval_s``: a session token (``PUT /latest/api/token``, renewed before it expires),
    then ``GET /latest/meta-data/spot/instance-action``: 404 while no interruption is planned,
    else ``{"action": "terminate", "time": "2026-11-26T22:40:00Z"}``. On a notice it calls
    ``on_notice(action, deadline)`` once and stops. An unreachable service is reported once and
    polled again: it never ends the attempt."""

    def __init__(self, endpoint: str, on_notice: Callable[[str, str], Any],
                 interval_s: float = 5.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.interval_s = interval_s
        self.on_notice = on_notice
        self.notice: dict[str, Any] | None = None
        self._token: tuple[str, float] | None = None
        self._complained = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gridbridge-imds", daemon=True)

    def start(self) -> SpotWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        url = f"{self.endpoint}{path}"
        if not url.startswith(("http://", "https://")):
            raise OSError(f"not an http(s) endpoint: {self.endpoint!r}")
        req = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=2.0) as answer:  # noqa: S310
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), b""

    def _session(self) -> str:
        if self._token is None or self._token[1] < time.monotonic():
            code, body = self._request("PUT", "/latest/api/token",
                                       {"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
            if code != 200:
                raise OSError(f"IMDS token request answered HTTP {code}")
            self._token = (body.decode().strip(), time.monotonic() + 21000)
        return self._token[0]

    def check(self) -> dict[str, Any] | None:
        """One poll: the notice, or None while no interruption is planned."""
        token = self._session()
        code, body = self._request("GET", "/latest/meta-data/spot/instance-action",
                                   {"X-aws-ec2-metadata-token": token})
        if code == 401:  # the token expired early (the service restarted): get another
            self._token = None
            return None
        if code == 404:
            return None
        if code != 200:
            raise OSError(f"IMDS spot/instance-action answered HTTP {code}")
        notice: dict[str, Any] = json.loads(body)
        return notice

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                notice = self.check()
            except (OSError, ValueError) as exc:
                if not self._complained:
                    print(f"gridbridge-run: the instance metadata service at {self.endpoint} "
                          f"does not answer ({exc}); still watching", file=sys.stderr,
                          flush=True)
                    self._complained = True
                notice = None
            if notice is not None:
                self.notice = notice
                self.on_notice(str(notice.get("action", "terminate")), str(notice.get("time")))
                return
            self._stop.wait(self.interval_s)


def spot_notice(action: str, deadline: str) -> None:
    """Turn a notice into a stop request: the same path as the site's own stop signal."""
    print(f"gridbridge-run: {SPOT_NOTICE}: {action} at {deadline}; asking the job "
          "to checkpoint and stop", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
