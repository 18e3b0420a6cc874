"""What every Lightning trainer shares.

:meth:`automl.plugins.TrainerPlugin.train` seeds the run (``train.seed``), has the plugin build its
LightningDataModule and LightningModule and hands them to :func:`automl.training.fit`, which wires in
everything model-independent:

* :mod:`~automl.training.devices` — ``train.num_gpus`` / ``train.gpu_ids`` / ``train.num_nodes``
  (and ``CUDA_VISIBLE_DEVICES`` set by the search controller) -> Lightning accelerator, devices and
  strategy (DDP when more than one device; gloo DDP on CPU for tests).
* :mod:`~automl.training.callbacks` — :class:`ReportingCallback` (calls the :class:`~automl.reporting.Reporter`
  after each validation and stops the run when it says so).
* :mod:`~automl.training.checkpoints` — best (by the monitor) + last + periodic checkpoints that load
  with ``torch.load(weights_only=True)``; :func:`load_automl_checkpoint` (a trained checkpoint for
  evaluate/export), :func:`load_state_dict` and :func:`load_matching_weights` (pretrained weights).
* :mod:`~automl.training.schedule` — TAO's warmup + multi-step schedule whose horizon is
  ``train.num_epochs`` whatever ``max_epochs`` a search rung uses.
* :mod:`~automl.training.sampler` — a distributed-aware P x K batch sampler.
* :mod:`~automl.training.onnx_export` — ONNX export with a dynamic batch, ``onnx.checker`` and an
  onnxruntime parity check; :func:`export_with_parity`, every trainer's export action.
* :mod:`~automl.training.tensorrt` — TensorRT 10 engine builder (FP32/FP16/INT8 with an entropy
  calibrator); imports TensorRT lazily and fails with a clear :class:`~automl.errors.AutomlError`.
* :mod:`~automl.training.results` — the action result JSON (``--json`` last stdout line and
  ``<results_dir>/<action>.json``).

Sub-modules import torch/Lightning; import them directly (``from automl.training.runner import fit``)
or through the lazy names below.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "fit": "automl.training.runner",
    "FitResult": "automl.training.runner",
    "ReportingCallback": "automl.training.callbacks",
    "DevicePlan": "automl.training.devices",
    "plan_devices": "automl.training.devices",
    "checkpoint_callbacks": "automl.training.checkpoints",
    "load_checkpoint": "automl.training.checkpoints",
    "load_state_dict": "automl.training.checkpoints",
    "load_automl_checkpoint": "automl.training.checkpoints",
    "load_matching_weights": "automl.training.checkpoints",
    "PKBatchSampler": "automl.training.sampler",
    "warmup_multistep": "automl.training.schedule",
    "export_onnx": "automl.training.onnx_export",
    "onnx_parity": "automl.training.onnx_export",
    "export_with_parity": "automl.training.onnx_export",
    "build_engine": "automl.training.tensorrt",
    "write_result": "automl.training.results",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'automl.training' has no attribute '{name}'")


__all__ = sorted(_LAZY)
