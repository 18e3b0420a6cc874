"""A real ``mlflow server`` process for tests: SQLite backend store and a local artifact root in a tmp
folder, a free localhost port, started and waited for until ``/health`` answers.

    with MlflowServer(tmp_path) as server:
        tracker = create_tracker(run_dir, server.url)
        server.stop(); ...; server.start()   # same store and port: an outage
"""

from __future__ import annotations

from pathlib import Path

from automl.tracking import server as mlflow_server


class MlflowServer:
    def __init__(self, root: Path, port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or mlflow_server.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store_uri = f"sqlite:///{self.root / 'server.db'}"
        self.artifacts = self.root / "server-artifacts"
        self.log = self.root / "server.log"
        self.proc = None

    def start(self, timeout: float = 120.0) -> MlflowServer:
        self.proc = mlflow_server.start_server(self.store_uri, self.artifacts, "127.0.0.1", self.port, self.log)
        try:
            mlflow_server.wait_healthy(self.url, self.proc, timeout)
        except Exception:
            self.stop()
            raise RuntimeError(f"mlflow server did not start; its log:\n{self.log.read_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            mlflow_server.stop_server(self.proc)
            self.proc = None

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
