"""The API in TLS with a certificate the test makes, and plain HTTP refused off loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import free_port, serving
from tests.support.serving import two_site_config


def _certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _gridbridge(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBRIDGE_")}
    return subprocess.run([sys.executable, "-m", "gridbridge.cli", *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_plain_http_off_loopback_is_refused(tmp_path: Path) -> None:
    config = two_site_config(tmp_path)
    run = _gridbridge("--config", str(config), "serve", "--listen", "0.0.0.0:8765")
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    assert "tls-cert" in line and line.startswith("error: ")


@pytest.mark.slow
def test_the_api_in_tls(tmp_path: Path) -> None:
    config = two_site_config(tmp_path)
    cert, key = _certificate(tmp_path)
    made = _gridbridge("--config", str(config), "admin", "token", "create", "--user", "alice",
                       "--team", "phys", "--role", "researcher")
    token = made.stdout.strip()
    url = f"https://127.0.0.1:{free_port()}"
    with serving(config, url, tmp_path / "serve.log", "--tls-cert", str(cert),
                 "--tls-key", str(key)):
        run = _gridbridge("--url", url, "status", GRIDBRIDGE_TOKEN=token,
                          SSL_CERT_FILE=str(cert))
        assert run.returncode == 0, run.stderr
        untrusted = _gridbridge("--url", url, "status", GRIDBRIDGE_TOKEN=token)
        assert untrusted.returncode == 3 and "cannot reach" in untrusted.stderr
        with pytest.raises(httpx.TransportError):  # no plain HTTP on the TLS port
            httpx.get(url.replace("https", "http") + "/v1/health", timeout=2)
