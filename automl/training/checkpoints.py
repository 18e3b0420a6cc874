"""Checkpoints every trainer writes: ``best.ckpt`` (by the monitor), ``last.ckpt`` and periodic ones.

They are Lightning checkpoints (so ``Trainer.fit(ckpt_path=...)`` resumes optimizer, scheduler and
loop state) whose every entry is a tensor or a plain Python container: they load with
``torch.load(path, weights_only=True)``. To keep it that way, modules must not call
``save_hyperparameters`` with non-plain objects (TAO's checkpoints hold OmegaConf configs, which is why
they need ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``); put what evaluate/export need (the spec) into
``checkpoint["automl"]`` as plain dicts via ``on_save_checkpoint`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from automl.errors import AutomlError
# the loaders live in a module without Lightning, for trainers (the toy) that must start fast
from automl.training.weights import check_resume_checkpoint, load_checkpoint  # noqa: F401

BEST = "best"
LAST = "last"


class LastCheckpoint(ModelCheckpoint):
    """Overwrites ``last.ckpt`` at every validation.

    Its own class so that its Lightning state key differs from an ``epoch_NNN`` snapshot callback with
    the same triggers (Lightning refuses two stateful callbacks with one key).
    """


def checkpoint_callbacks(
    checkpoint_dir: Path,
    monitor: str,
    mode: str,
    interval: int | None = None,
    interval_unit: str = "epoch",
) -> list[ModelCheckpoint]:
    """``best.ckpt`` + ``last.ckpt`` (refreshed at every validation) and, if ``interval`` is set,
    ``epoch_NNN.ckpt`` / ``step_NNNNNN.ckpt`` snapshots every ``interval`` epochs or steps (TAO's
    ``train.checkpoint_interval`` / ``checkpoint_interval_unit``)."""
    checkpoint_dir = Path(checkpoint_dir)
    # Written at validation end, so ReportingCallback (train epoch end) reports files that exist.
    best = ModelCheckpoint(dirpath=checkpoint_dir, filename=BEST, monitor=monitor, mode=mode, save_top_k=1,
                           save_last=False, auto_insert_metric_name=False, enable_version_counter=False,
                           save_on_train_epoch_end=False)
    # Not `save_last=True` on the callback above: Lightning (2.6) refreshes "last" only when a top-k
    # checkpoint was saved in the same step, i.e. only when the monitor improved, which would leave a
    # paused trial's last.ckpt epochs behind. A monitor-less top-1 callback overwrites it every validation.
    last = LastCheckpoint(dirpath=checkpoint_dir, filename=LAST, monitor=None, save_top_k=1,
                           auto_insert_metric_name=False, enable_version_counter=False,
                           save_on_train_epoch_end=False)
    callbacks = [best, last]
    if interval and int(interval) > 0:
        if interval_unit == "step":
            callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, filename="step_{step:06d}", save_top_k=-1,
                                             every_n_train_steps=int(interval), auto_insert_metric_name=False,
                                             enable_version_counter=False))
        else:
            callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, filename="epoch_{epoch:03d}", save_top_k=-1,
                                             every_n_epochs=int(interval), auto_insert_metric_name=False,
                                             enable_version_counter=False))
    return callbacks


def load_state_dict(path: str | Path, map_location: str | torch.device = "cpu", key: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model weights of a Lightning checkpoint or a bare state dict (weights-only load)."""
    data = load_checkpoint(path, map_location, key)
    state = data.get("state_dict", data)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AutomlError(f"{key}: {path} has no 'state_dict' of tensors")
    return dict(state)


def load_automl_checkpoint(path: str | Path, key: str, trainer: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(checkpoint["automl"], state_dict)`` of a checkpoint that ``trainer``'s train action wrote.

    ml_recog names itself under ``automl.trainer`` (its ``automl.model`` holds the architecture);
    reid and mae under ``automl.model``.
    """
    if not str(path or "").strip() or str(path) == "???":
        raise AutomlError(f"{key} is not set; point it at checkpoints/best.ckpt of a {trainer} train run")
    data = load_checkpoint(path, key=key)
    meta = data.get("automl")
    if not isinstance(meta, Mapping) or trainer not in (meta.get("trainer"), meta.get("model")):
        raise AutomlError(f"{key}: {path} is not a checkpoint of the {trainer} trainer")
    return dict(meta), dict(data["state_dict"])


def checkpoint_or_trained(spec: Mapping[str, Any], action: str, results_dir: str | Path) -> str:
    """``<action>.checkpoint``, or when it is empty the best checkpoint of the train run the spec's
    results folders name (TAO fills ``<action>.checkpoint`` from the parent train job's results
    folder; its export template leaves the key out). Looked for, in order: ``train.results_dir``, the
    spec's ``results_dir``, its ``train/`` sub-folder (TAO's per-action layout), and ``results_dir``."""
    value = str((spec.get(action) or {}).get("checkpoint") or "").strip()
    if value and value != "???":
        return value
    root = str(spec.get("results_dir") or "").strip()
    folders = [str((spec.get("train") or {}).get("results_dir") or "").strip(), root,
               str(Path(root) / "train") if root else "", str(results_dir)]
    candidates = [Path(f) / "checkpoints" / f"{BEST}.ckpt" for f in dict.fromkeys(folders) if f]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise AutomlError(f"{action}.checkpoint is not set and no train run's checkpoint was found "
                      f"({', '.join(str(p) for p in candidates)}); set {action}.checkpoint=<train results>/checkpoints/best.ckpt")


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries under ``prefix`` (e.g. a LightningModule's ``net.``), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_matching_weights(target: torch.nn.Module, state: Mapping[str, torch.Tensor], key: str, path: str | Path,
                          fits: str) -> list[str]:
    """Load the tensors of ``state`` whose name and shape ``target`` has (a pretrained backbone into a
    network with another head); return the names of ``target``'s tensors left as they were.
    ``fits`` says what the weights had to fit, for the error when none did."""
    own = target.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise AutomlError(f"{key}: no weights in {path} fit {fits}")
    target.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
