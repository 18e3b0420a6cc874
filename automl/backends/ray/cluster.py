"""Where a Ray search runs, checked before anything starts: the algorithm is offered on Ray, the
cluster is local or remote, the storage every node must reach, each trial's resources. No Ray call.
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from automl.trials.records import SearchSetup
from automl.errors import AutomlError
from automl.trials.algorithms import RAY, check_backend


#: the run folder's backend-storage entry for this backend
STORAGE_DIR = "ray"


#: filesystems that every node of a cluster can mount (shared storage)
SHARED_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs",
                      "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.juicefs",
                      "fuse.ceph", "wekafs", "panfs", "9p", "virtiofs")


def check_algorithm(algorithm: str) -> None:
    check_backend(algorithm, RAY)
    if algorithm == "bohb":
        try:
            import ConfigSpace  # noqa: F401
            import hpbandster  # noqa: F401
        except ImportError:
            raise AutomlError("--algorithm bohb with --backend ray needs Ray Tune's TuneBOHB, which needs "
                              "`pip install hpbandster ConfigSpace` (not installed); use --algorithm asha or "
                              "hyperband, or --backend optuna for bohb") from None


def is_uri(path: str | None) -> bool:
    return bool(path) and "://" in str(path) and not str(path).startswith("file://")


def local_addresses() -> set[str]:
    addrs = {"127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname()}
    with contextlib.suppress(OSError):
        addrs.update(socket.gethostbyname_ex(socket.gethostname())[2])
    with contextlib.suppress(Exception):
        import psutil

        for entries in psutil.net_if_addrs().values():
            addrs.update(e.address.split("%")[0] for e in entries)
    return addrs


def address_is_remote(address: str | None) -> bool:
    """True when ``--address`` names a Ray head on another host (``auto``/None are local)."""
    if not address or address in ("auto", "local"):
        return False
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    if host in local_addresses() or host.startswith("127."):
        return False
    with contextlib.suppress(OSError):
        if socket.gethostbyname(host) in local_addresses():
            return False
    return True


def filesystem_type(path: Path) -> str:
    """The fstype of the mount that holds ``path`` (from /proc/mounts; "" if unknown)."""
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    best, fstype = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                mount = parts[1].replace("\\040", " ")
                if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                    best, fstype = mount, parts[2]
    return fstype


def is_shared_path(path: str | Path) -> bool:
    return is_uri(str(path)) or filesystem_type(Path(path)) in SHARED_FILESYSTEMS


def check_storage(run_dir: Path, storage: str | None, remote: bool) -> None:
    """With a cluster on other hosts, trials run elsewhere: refuse local paths at once."""
    if not remote:
        return
    bad = []
    if storage is None or not is_shared_path(storage):
        bad.append(f"Ray storage {storage or Path(run_dir) / STORAGE_DIR}")
    if not is_shared_path(run_dir):
        bad.append(f"run folder {run_dir}")
    if bad:
        raise AutomlError(
            f"--backend ray on a remote cluster needs storage every node can reach, but the {' and the '.join(bad)} "
            "is on this machine's local disk; pass --storage on a shared filesystem mounted on every node "
            "(NFS, e.g. --storage /mnt/nfs/automl) or an object-store URI (e.g. --storage s3://bucket/automl), "
            "and --output on the shared filesystem")


def storage_location(setup: SearchSetup) -> tuple[str, str]:
    """(storage_path, experiment name) for ``tune.RunConfig``."""
    if setup.storage:
        if is_uri(setup.storage):
            return setup.storage, setup.name
        return str(Path(setup.storage.removeprefix("file://")).expanduser().resolve()), setup.name
    return str(Path(setup.run_dir).resolve()), STORAGE_DIR


def trial_resources(setup: SearchSetup, cluster_gpus: float, cpus_per_trial: float = 1.0) -> dict[str, float]:
    """Ray resources of one trial: CPUs, and GPUs (``--gpus-per-trial`` G, or 1/K for ``--trials-per-gpu``
    K) when the cluster has GPUs. Ray sets ``CUDA_VISIBLE_DEVICES`` to the GPUs it grants; a trial with
    several GPUs runs the trainer's DDP over them."""
    res = {"cpu": float(cpus_per_trial)}
    if cluster_gpus > 0 and setup.gpus_per_trial > 0:
        if setup.gpus_per_trial > 1:
            if setup.trials_per_gpu > 1:
                raise AutomlError("--gpus-per-trial > 1 and --trials-per-gpu > 1 exclude each other")
            res["gpu"] = float(setup.gpus_per_trial)
        else:
            res["gpu"] = 1.0 / max(1, setup.trials_per_gpu)
    return res
