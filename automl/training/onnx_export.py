"""ONNX export with a dynamic batch axis, ``onnx.checker``, and an onnxruntime parity check."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.errors import AutomlError

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def export_onnx(model: torch.nn.Module, onnx_path: str | Path, input_shape: tuple[int, int, int], *,
                batch_size: int = -1, opset_version: int = 17, input_name: str = INPUT_NAME,
                output_name: str = OUTPUT_NAME, verbose: bool = False) -> Path:
    """Export ``model`` (in eval mode, on CPU) to ``onnx_path`` and validate it with ``onnx.checker``.

    ``input_shape`` is ``(C, H, W)`` — the size the model was trained at. ``batch_size=-1`` (TAO's
    default) makes the batch axis dynamic; a positive value fixes it.
    """
    import onnx

    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().to("cpu")
    dummy = torch.randn(max(1, batch_size if batch_size > 0 else 2), *input_shape)
    dynamic = batch_size <= 0
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter handles timm backbones with a symbolic batch dimension in
        # one pass; torch.export (dynamo=True) rejects several timm graphs with dynamic shapes.
        torch.onnx.export(
            model, (dummy,), str(onnx_path), input_names=[input_name], output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic else None,
            opset_version=int(opset_version), do_constant_folding=True, verbose=verbose, dynamo=False,
        )
    try:
        onnx.checker.check_model(str(onnx_path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise AutomlError(f"exported ONNX model {onnx_path} failed onnx.checker: {str(exc).splitlines()[0]}") from None
    return onnx_path


def onnx_parity(model: torch.nn.Module, onnx_path: str | Path, inputs: torch.Tensor) -> dict[str, Any]:
    """Run ``inputs`` through PyTorch and onnxruntime (CPU); return the max abs difference."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = session.run(None, {name: inputs.cpu().numpy().astype(np.float32)})[0]
    with torch.no_grad():
        expected = model.eval().to("cpu")(inputs.cpu()).numpy()
    if got.shape != expected.shape:
        raise AutomlError(f"ONNX output shape {got.shape} != PyTorch output shape {expected.shape}")
    return {"max_abs_diff": float(np.abs(got - expected).max()), "batch": int(inputs.shape[0]),
            "input_shape": list(session.get_inputs()[0].shape), "output_shape": list(got.shape)}
