"""The promoted model as an MLflow model, written locally (no network) before it is registered:
PyTorch flavour when the trainer can rebuild the module, else ONNX, else just the promoted files."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any
from automl.trials import rundir

log = logging.getLogger(__name__)


def module_from_plugin(model: str | None, run_dir: Path, best: dict[str, Any], best_dir: Path) -> dict[str, Any]:
    """The promoted weights as an ``nn.Module``, from trainers that can build one: an optional plugin
    method ``load_module(spec, checkpoint) -> nn.Module`` (and ``input_example(spec)`` for a traced,
    pickle-free model). Trainers without it get the ONNX flavour."""
    checkpoint = best_dir / "model.ckpt"
    if not model or not checkpoint.is_file():
        return {}
    try:
        from automl.plugins import get_trainer

        plugin = get_trainer(model)
        load = getattr(plugin, "load_module", None)
        if load is None:
            return {}
        import yaml

        number = best.get("number", best.get("trial"))
        spec_file = rundir.trial_dir(run_dir, int(number)) / rundir.SPEC
        spec = yaml.safe_load(spec_file.read_text()) if spec_file.is_file() else {}
        out = {"torch_module": load(spec, checkpoint)}
        example = getattr(plugin, "input_example", None)
        if example is not None:
            out["input_example"] = example(spec)
        return out
    except Exception as exc:  # noqa: BLE001 - the ONNX flavour still registers the champion
        log.warning("tracking: could not rebuild the promoted model through the %s plugin: %s", model, exc)
        return {}


def save_model(best: dict[str, Any], best_dir: Path, model_dir: Path) -> str:
    """Write the promoted model as an MLflow model into ``model_dir``; returns its flavour (``pytorch``,
    ``onnx``, or ``files`` when there is neither). Explicit requirements: MLflow's inference would load
    the model in a subprocess, which is slow."""
    module = best.get("torch_module")
    onnx_file = best_dir / "model.onnx"
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    if module is not None:
        _save_pytorch(module, best.get("input_example"), model_dir)
        return "pytorch"
    if onnx_file.is_file():
        import mlflow.onnx
        import onnx

        model = onnx.load(str(onnx_file))
        signature, example = onnx_signature(model, best.get("input_example"))
        mlflow.onnx.save_model(model, str(model_dir), signature=signature, input_example=example,
                               pip_requirements=_requirements("onnx", "onnxruntime", "numpy"))
        return "onnx"
    return "files"


def onnx_signature(model: Any, example: Any = None) -> tuple[Any, Any]:
    """The ONNX graph's inputs and outputs as an MLflow signature (a dynamic dimension is -1), and an
    input example: the plugin's, else zeros when only the batch dimension is dynamic (batch 1)."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec
    from onnx import helper

    initializers = {i.name for i in model.graph.initializer}

    def specs(values):
        out = []
        for v in values:
            if v.name in initializers:
                continue
            tensor = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            out.append((v.name, np.dtype(helper.tensor_dtype_to_np_dtype(tensor.elem_type)), dims))
        return out

    inputs, outputs = specs(model.graph.input), specs(model.graph.output)
    signature = ModelSignature(Schema([TensorSpec(t, tuple(d), n) for n, t, d in inputs]),
                               Schema([TensorSpec(t, tuple(d), n) for n, t, d in outputs]))
    if example is None and len(inputs) == 1 and inputs[0][2] and all(d > 0 for d in inputs[0][2][1:]):
        name, dtype, dims = inputs[0]
        example = {name: np.zeros([1, *dims[1:]], dtype=dtype)}
    elif example is not None and len(inputs) == 1 and not isinstance(example, dict):
        example = {inputs[0][0]: np.asarray(example, dtype=inputs[0][1])}
    return signature, example


def _save_pytorch(module: Any, example: Any, model_dir: Path) -> None:
    import mlflow.pytorch

    signature = None
    if example is not None:
        from mlflow.models import infer_signature

        import torch

        with torch.no_grad():
            output = module(torch.as_tensor(example)).detach().cpu().numpy()
        signature = infer_signature(example, output)
    requirements = _requirements("torch", "numpy")
    if example is not None:
        # "pt2" (torch.export) loads without unpickling code; it needs an example to trace with.
        try:
            mlflow.pytorch.save_model(module, str(model_dir), signature=signature, input_example=example,
                                      serialization_format="pt2", pip_requirements=requirements)
            return
        except Exception as exc:  # noqa: BLE001 - a model torch.export cannot trace still gets logged
            log.warning("tracking: torch.export failed (%s); logging the model pickled", exc)
            shutil.rmtree(model_dir, ignore_errors=True)
    mlflow.pytorch.save_model(module, str(model_dir), signature=signature, serialization_format="pickle",
                              pip_requirements=requirements)


def _requirements(*packages: str) -> list[str]:
    from importlib import metadata

    out = []
    for name in packages:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(name)
    return out
