"""A real two-node Ray cluster on this machine, for the Ray backend's tests.

``ray start --head`` plus a second ``ray start --address`` (two raylets, one GCS), each node with one
CPU and a custom resource naming it (``automl_node_head`` / ``automl_node_worker``), so a test can tell
which node a trial ran on. The dashboard is off and the session lives in a private ``--temp-dir``.

Ray >= 2.5x enables token authentication when a token file exists (and a local ``ray.init()`` writes
``~/.ray/auth_token``), but a node joining with ``ray start --address`` does not pick the file up by
itself. So the cluster runs with token auth on explicitly, with its own token in its temp dir;
``cluster.env`` holds the variables every process that talks to it (drivers, ``automl run``) needs.

Teardown: ``ray stop --force`` would kill every Ray process on the machine, including other people's
clusters, so the fixture kills only the process groups it started (each ``ray start`` daemonises its
processes into one group, found through the private temp dir in their command lines) and then checks
that none of them is left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
HEAD_RESOURCE = "automl_node_head"
WORKER_RESOURCE = "automl_node_worker"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RayCluster:
    """``with RayCluster() as cluster: ... cluster.address ...``"""

    def __init__(self, num_cpus: int = 1):
        self.num_cpus = num_cpus
        self.port = free_port()
        # Short path: Ray's unix socket names must stay under 107 characters.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="automl-ray-", dir="/tmp"))
        self.address = f"127.0.0.1:{self.port}"
        token = self.temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        #: environment for any process that connects to this cluster
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> RayCluster:
        common = ["--num-cpus", str(self.num_cpus), "--num-gpus", "0", "--temp-dir", str(self.temp_dir),
                  "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
                  "--object-store-memory", str(200 * 1024 * 1024)]
        env = {**os.environ, **self.env}
        try:
            self._ray(["start", "--head", "--port", str(self.port), "--include-dashboard=false",
                       "--resources", json.dumps({HEAD_RESOURCE: 1}), *common], env)
            self._ray(["start", "--address", self.address,
                       "--resources", json.dumps({WORKER_RESOURCE: 1}), *common], env)
            self.wait_for_nodes(2)
        except BaseException:
            self.stop()
            raise
        return self

    def _ray(self, args: list[str], env: dict[str, str]) -> None:
        # A new session per `ray start`: its daemons form one process group of their own, which
        # stop() can kill without touching anything else.
        proc = subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=120,
                              start_new_session=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args[:2])} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def nodes(self) -> list[dict]:
        """The alive nodes as ``ray list nodes`` would show them, read in a short-lived process so the
        test process itself never connects to Ray."""
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False);"
                "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']} "
                "for n in ray.nodes() if n['Alive']]))" % self.address)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **self.env})
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    def wait_for_nodes(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.time() + timeout
        while True:
            nodes = self.nodes()
            if len(nodes) >= count or time.time() > deadline:
                return nodes
            time.sleep(1)

    def node_of(self, resource: str) -> str:
        """The node id of the node that carries ``resource``."""
        return next(n["id"] for n in self.nodes() if resource in n["resources"])

    def _process_groups(self) -> set[int]:
        groups = set()
        marker = str(self.temp_dir)
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
                if marker in cmdline:
                    groups.add(os.getpgid(int(pid)))
            except (OSError, ProcessLookupError):
                continue
        groups.discard(os.getpgid(0))  # never our own group
        return groups

    def stop(self) -> None:
        for _ in range(3):
            groups = self._process_groups()
            if not groups:
                break
            for pgid in groups:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
