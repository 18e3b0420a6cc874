"""ONNX export with a dynamic batch axis, ``onnx.checker``, and an onnxruntime parity check."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
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


#: every trainer's export fails above this max abs difference between onnxruntime and PyTorch
PARITY_LIMIT = 1e-4


def export_with_parity(model: torch.nn.Module, section: Mapping[str, Any], results_dir: str | Path,
                       input_shape: tuple[int, int, int]) -> dict[str, Any]:
    """The export action every trainer shares: ``model`` to ``export.onnx_file`` (default
    ``<results_dir>/model.onnx``) with ``export.batch_size`` / ``export.opset_version``, then a parity
    check on a fixed random batch that fails above :data:`PARITY_LIMIT`.

    Returns ``onnx_file``, ``input_shape`` (C, H, W), ``batch_size`` (-1: dynamic), ``opset_version``, ``parity``.
    """
    onnx_file = str(section.get("onnx_file") or "").strip()
    out = Path(onnx_file if onnx_file and onnx_file != "???" else Path(results_dir) / "model.onnx")
    batch = int(section.get("batch_size", -1) or -1)
    opset = int(section.get("opset_version", 17) or 17)
    export_onnx(model, out, input_shape, batch_size=batch, opset_version=opset)
    probe = torch.randn(batch if batch > 0 else 2, *input_shape, generator=torch.Generator().manual_seed(0))
    parity = onnx_parity(model, out, probe)
    if parity["max_abs_diff"] > PARITY_LIMIT:
        raise AutomlError(f"export: ONNX output differs from PyTorch by {parity['max_abs_diff']:.2e} "
                          f"(> {PARITY_LIMIT:g}) for {out}")
    return {"onnx_file": str(out), "input_shape": list(input_shape), "batch_size": batch, "opset_version": opset,
            "parity": parity}
