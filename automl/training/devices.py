"""Map a spec's GPU settings to Lightning's ``accelerator`` / ``devices`` / ``strategy`` / ``num_nodes``.

TAO semantics: ``train.num_gpus`` GPUs per node, ``train.gpu_ids`` which ones, ``train.num_nodes``
nodes. The search controller restricts each trial with ``CUDA_VISIBLE_DEVICES``; inside that process
``gpu_ids`` are indices into the *visible* devices, so ``gpu_ids: [0]`` means "the first GPU this
trial was given", never physical GPU 0.

Without a GPU the run goes to the CPU in one process. ``AUTOML_CPU_PROCESSES=N`` (N > 1) runs N-process
DDP on the CPU with the gloo backend — that is how the DDP path is tested on machines without GPUs.
What could not run here: the CUDA branch (NCCL DDP over real GPUs) is exercised only with a simulated
inventory (``visible_gpus=``) in the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from automl.errors import AutomlError


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, not the host's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

CPU_PROCESSES_ENV = "AUTOML_CPU_PROCESSES"


def is_launched_worker() -> bool:
    """True in the extra processes Lightning's DDP launcher starts (they re-run this command line):
    only global rank 0 writes results, prints JSON or talks to a tracker."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


@dataclass(frozen=True)
class DevicePlan:
    """Where a Lightning run goes. ``trainer_kwargs()`` is what ``lightning.Trainer`` takes."""

    accelerator: str  # "gpu" or "cpu"
    devices: list[int] | int  # GPU indices (visible numbering) or a CPU process count
    num_nodes: int = 1
    ddp: bool = False
    backend: str | None = None  # process-group backend when ddp: "nccl" (GPU) or "gloo" (CPU)
    notes: tuple[str, ...] = field(default=())

    @property
    def world_size(self) -> int:
        per_node = len(self.devices) if isinstance(self.devices, list) else int(self.devices)
        return per_node * self.num_nodes

    def strategy(self) -> Any:
        if not self.ddp:
            return "auto"
        from lightning.pytorch.strategies import DDPStrategy

        # find_unused_parameters off: every parameter takes part in every step in our trainers, and
        # the unused-parameter search costs a full graph traversal per step.
        return DDPStrategy(process_group_backend=self.backend, find_unused_parameters=False)

    def trainer_kwargs(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
                "strategy": self.strategy()}


def _visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install must not stop a CPU run
        return 0


def plan_devices(
    num_gpus: int = 1,
    gpu_ids: list[int] | None = None,
    num_nodes: int = 1,
    *,
    visible_gpus: int | None = None,
    cpu_processes: int | None = None,
    key_prefix: str = "train",
) -> DevicePlan:
    """Decide devices for a run.

    ``visible_gpus`` and ``cpu_processes`` default to the real machine (``torch.cuda.device_count()``,
    which honours ``CUDA_VISIBLE_DEVICES``) and ``$AUTOML_CPU_PROCESSES``; tests pass them to simulate
    inventories.
    """
    num_gpus = int(num_gpus or 1)
    num_nodes = int(num_nodes or 1)
    if num_gpus < 1:
        raise AutomlError(f"{key_prefix}.num_gpus must be >= 1, got {num_gpus}")
    if num_nodes < 1:
        raise AutomlError(f"{key_prefix}.num_nodes must be >= 1, got {num_nodes}")
    ids = [int(i) for i in (gpu_ids or [])]
    visible = _visible_gpus() if visible_gpus is None else int(visible_gpus)

    if visible == 0:
        if cpu_processes is None:
            cpu_processes = int(os.environ.get(CPU_PROCESSES_ENV, "0") or 0)
        if cpu_processes > 1:
            return DevicePlan("cpu", cpu_processes, num_nodes, ddp=True, backend="gloo",
                              notes=(f"no GPU visible: {cpu_processes}-process DDP on CPU (gloo)",))
        notes = ()
        if num_gpus > 1 or num_nodes > 1:
            raise AutomlError(
                f"{key_prefix}.num_gpus={num_gpus} x {key_prefix}.num_nodes={num_nodes} requested but no GPU "
                f"is visible; set {key_prefix}.num_gpus=1 to train on the CPU, or {CPU_PROCESSES_ENV}=N for "
                "N-process DDP on the CPU")
        return DevicePlan("cpu", 1, 1, notes=notes or ("no GPU visible: training on the CPU",))

    notes: list[str] = []
    if ids and len(ids) != num_gpus:
        if len(ids) > num_gpus:
            notes.append(f"{key_prefix}.gpu_ids has {len(ids)} entries; using the first {num_gpus}")
            ids = ids[:num_gpus]
        else:  # TAO's default gpu_ids is [0] whatever num_gpus says: extend with the next free ids
            extra = [i for i in range(visible) if i not in ids][: num_gpus - len(ids)]
            ids = ids + extra
    if not ids:
        ids = list(range(num_gpus))
    if len(ids) > visible or any(i >= visible for i in ids):
        restricted = os.environ.get("CUDA_VISIBLE_DEVICES")
        if restricted is not None and num_gpus <= visible:
            # The controller handed this process a subset of GPUs: gpu_ids written for the whole
            # machine are renumbered onto what is visible.
            notes.append(f"{key_prefix}.gpu_ids={ids} renumbered onto CUDA_VISIBLE_DEVICES={restricted}")
            ids = list(range(num_gpus))
        else:
            raise AutomlError(
                f"{key_prefix}.num_gpus={num_gpus} / {key_prefix}.gpu_ids={ids} need GPUs that are not "
                f"visible: {visible} visible (allowed ids 0..{visible - 1})")
    ddp = len(ids) > 1 or num_nodes > 1
    return DevicePlan("gpu", ids, num_nodes, ddp=ddp, backend="nccl" if ddp else None, notes=tuple(notes))


def plan_from_spec(spec_section: dict[str, Any] | None, key_prefix: str = "train") -> DevicePlan:
    """:func:`plan_devices` from a spec section such as ``spec["train"]`` or ``spec["evaluate"]``."""
    section = spec_section or {}
    return plan_devices(section.get("num_gpus", 1), section.get("gpu_ids"), section.get("num_nodes", 1),
                        key_prefix=key_prefix)
