"""Headless Chromium (the Debian package; ``scripts/setup.sh`` installs it when it can) for looking at
pages as a person would: the DOM after the page's scripts ran, and a screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

#: no host name resolves: a page that needs the internet (a CDN) cannot get it; 127.0.0.1 still works
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(url: str, action: list[str], offline: bool, budget_ms: int) -> subprocess.CompletedProcess:
    # A fresh profile each time: a saved runs-table view in local storage would change what the page shows.
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   f"--user-data-dir={profile}", "--window-size=1400,1000", f"--virtual-time-budget={budget_ms}",
                   *(OFFLINE if offline else []), *action, url]
        return subprocess.run(command, capture_output=True, text=True, timeout=180)


def look(url: str, screenshot: Path, offline: bool = False, budget_ms: int = 30000) -> str:
    """The page's DOM once its scripts settled (``budget_ms`` of virtual time), and a screenshot."""
    out = _run(url, ["--dump-dom"], offline, budget_ms)
    assert out.returncode == 0, out.stderr[-2000:]
    shot = _run(url, [f"--screenshot={screenshot}"], offline, budget_ms)
    assert shot.returncode == 0 and Path(screenshot).is_file(), shot.stderr[-2000:]
    return out.stdout
