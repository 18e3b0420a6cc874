"""Slots: how many trials run at once and which GPUs each one sees.

A slot is one concurrent trial. Its GPUs reach the trial through ``CUDA_VISIBLE_DEVICES`` (set in the
environment of the slot's worker process), so a trainer simply uses ``cuda:0..G-1``; a multi-GPU slot
is used by the trainer's DDP. Without GPUs every slot is a CPU slot (``CUDA_VISIBLE_DEVICES=""`` so a
stray ``.cuda()`` fails fast instead of fighting for a device).

The GPU inventory comes from :func:`gpu_inventory`; tests and dry runs simulate one with
``AUTOML_SIMULATED_GPUS`` ("4" or "0,1,2,3"). This machine has no GPU, so the real-inventory path
(``torch.cuda.device_count()``, then ``nvidia-smi -L``) is exercised only on GPU hosts.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from automl.errors import AutomlError
from automl.training.devices import cpu_count

SIMULATED_ENV = "AUTOML_SIMULATED_GPUS"


def gpu_inventory() -> list[int]:
    """The GPU indices this host offers (honours an existing ``CUDA_VISIBLE_DEVICES`` via torch)."""
    simulated = os.environ.get(SIMULATED_ENV)
    if simulated is not None:
        simulated = simulated.strip()
        if not simulated:
            return []
        if "," in simulated or not simulated.isdigit():
            return [int(x) for x in simulated.split(",") if x.strip()]
        return list(range(int(simulated)))
    try:
        import torch

        if torch.cuda.is_available():
            return list(range(torch.cuda.device_count()))
        return []
    except Exception:  # torch without CUDA support, or a broken driver
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
            return [i for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]
        except (OSError, subprocess.SubprocessError):
            return []
    return []


def parse_gpus(text: str | None) -> list[int] | None:
    """``"0,1,2,3"`` -> ``[0, 1, 2, 3]``; ``None``/``""``/``"auto"`` -> None (use the inventory);
    ``"none"`` -> ``[]`` (CPU only)."""
    if text is None or text.strip() in ("", "auto"):
        return None
    if text.strip().lower() in ("none", "cpu"):
        return []
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise AutomlError(f"--gpus '{text}': expected GPU indices like 0,1,2,3, 'auto' or 'none'") from None


#: CPU slots when ``--workers`` is not given: one per core, at most this many (each trial process holds
#: 0.5-1 GB). A small network's training step does not scale across threads, and separate processes
#: overlap each other's start-up, validation and data loading: on the 2-core host the demo search
#: (``automl run --model ml_recog --budget 20``) took 7 min 37 s with 2 one-thread slots and 13 min 25 s
#: with one two-thread slot (idle host, 2026-12-02).
MAX_DEFAULT_CPU_SLOTS = 4


def default_cpu_slots() -> int:
    """CPU slots without ``--workers``: ``AUTOML_CPU_SLOTS`` when set (a host's operator, or the test
    suite, which pins 1), else one per core up to ``MAX_DEFAULT_CPU_SLOTS``."""
    value = os.environ.get("AUTOML_CPU_SLOTS", "").strip()
    if not value:
        return min(cpu_count(), MAX_DEFAULT_CPU_SLOTS)
    if not value.isdigit() or int(value) < 1:
        raise AutomlError(f"AUTOML_CPU_SLOTS={value!r}: expected a whole number of CPU slots, at least 1")
    return int(value)


def make_slots(
    workers: int | None = None,
    gpus: list[int] | None = None,
    gpus_per_trial: int = 1,
    trials_per_gpu: int = 1,
    inventory: list[int] | None = None,
) -> list[dict]:
    """The slots of a search: ``[{"index": 0, "gpus": [0, 1]}, ...]``.

    * ``gpus`` None: every GPU of the inventory (none: CPU slots);
    * GPUs are grouped ``gpus_per_trial`` at a time; each group carries ``trials_per_gpu`` slots
      (packing small trials on one device);
    * ``workers`` caps the number of slots (taken round-robin over GPU groups so load spreads); on CPU
      it is the number of slots (default: one per core, at most ``MAX_DEFAULT_CPU_SLOTS``).
    """
    if gpus_per_trial < 1 or trials_per_gpu < 1:
        raise AutomlError("--gpus-per-trial and --trials-per-gpu must be at least 1")
    if workers is not None and workers < 1:
        raise AutomlError(f"--workers {workers}: must be at least 1")
    inventory = gpu_inventory() if inventory is None else inventory
    if gpus is None:
        gpus = list(inventory)
    else:
        missing = [g for g in gpus if g not in inventory]
        if missing:
            have = ",".join(map(str, inventory)) or "none"
            raise AutomlError(f"--gpus: GPU {missing[0]} does not exist on this host (available: {have})")
        if len(set(gpus)) != len(gpus):
            raise AutomlError(f"--gpus {','.join(map(str, gpus))}: a GPU is listed twice")
    if not gpus:
        n = workers or default_cpu_slots()
        # CPU slots share the cores: each trial's torch gets its share instead of every trial starting one
        # thread per core (on 2 cores, 2 workers x 2 threads ran slower than 1 worker).
        return [{"index": i, "gpus": [], "threads": max(1, cpu_count() // n)} for i in range(n)]
    if len(gpus) % gpus_per_trial:
        raise AutomlError(
            f"--gpus-per-trial {gpus_per_trial} does not divide the {len(gpus)} GPUs given ({','.join(map(str, gpus))})"
        )
    groups = [gpus[i : i + gpus_per_trial] for i in range(0, len(gpus), gpus_per_trial)]
    # round-robin: slot k of every group before slot k+1 of any, so a cap spreads over devices
    ordered = [group for _ in range(trials_per_gpu) for group in groups]
    if workers is not None:
        if workers > len(ordered):
            raise AutomlError(
                f"--workers {workers}: only {len(ordered)} GPU slots ({len(gpus)} GPUs, "
                f"{gpus_per_trial} per trial, {trials_per_gpu} trials per GPU)"
            )
        ordered = ordered[:workers]
    return [{"index": i, "gpus": list(g)} for i, g in enumerate(ordered)]


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def slot_env(slot: dict, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a slot's worker process. A CPU slot's thread share goes to the OpenMP/MKL
    pools unless the user set them, and its OpenMP threads sleep instead of spinning while they wait:
    on a CPU shared with other work, spinning threads made one compact_cnn_m training step take 2.37 s
    instead of 0.20 s (2 threads, 2 cores, 2026-12-01)."""
    env = dict(os.environ if base is None else base)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in slot["gpus"])
    env["AUTOML_SLOT"] = str(slot["index"])
    if not slot["gpus"]:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if slot.get("threads") and not any(v in env for v in THREAD_VARS):
        env.update({v: str(slot["threads"]) for v in THREAD_VARS})
    return env
