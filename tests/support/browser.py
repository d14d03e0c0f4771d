"""Headless Chromium for the browser tests (the finance report, the dashboard): Debian's
Chromium and ChromeDriver, installed by ``deploy/dev/browser-install.sh`` when missing."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.paths import REPO


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """The browser's and the driver's paths."""
    pytest.importorskip("selenium", reason="selenium is in the dev extra")
    out = subprocess.run(["bash", str(REPO / "deploy" / "dev" / "browser-install.sh")],
                         capture_output=True, text=True, timeout=1200, check=False)
    if out.returncode != 0:
        pytest.skip(f"no Chromium here: {out.stderr.strip()[-400:]}")
    browser, driver = out.stdout.split()
    return browser, driver
