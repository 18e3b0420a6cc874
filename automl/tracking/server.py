"""Starting and stopping an ``mlflow server`` process (``automl ui`` and the tests).

One worker and no job runner: a UI for one person's run folder needs neither, and MLflow's job runner
starts seven extra processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from automl.errors import AutomlError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_command(backend_store_uri: str, artifact_root: str | Path, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
            "--default-artifact-root", str(artifact_root), "--host", host, "--port", str(port), "--workers", "1"]


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    return env


def start_server(backend_store_uri: str, artifact_root: str | Path, host: str, port: int,
                 log_file: Path | None = None) -> subprocess.Popen:
    """Start the server in a process group of its own (so stopping it stops its workers)."""
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    return subprocess.Popen(server_command(backend_store_uri, artifact_root, host, port), env=server_env(),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AutomlError(f"mlflow server exited with status {proc.returncode} before it answered at {url}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise AutomlError(f"mlflow server did not answer at {url}/health within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    # Workers left behind in the group (uvicorn children) go too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
