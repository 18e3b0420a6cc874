"""TensorRT engine building (FP32 / FP16 / INT8) from an ONNX file, against the TensorRT 10 Python API.

TensorRT is imported lazily: without the ``tensorrt`` wheel or without a CUDA GPU, :func:`build_engine`
raises :class:`~automl.errors.AutomlError` with one line saying so. INT8 uses an
``IInt8EntropyCalibrator2`` fed from image folders; the calibrator's batching
(:class:`CalibrationBatches`) is plain NumPy and is tested on CPU. Device buffers come from torch CUDA
tensors, so pycuda is not needed.

Not run on this project's CI machine (no GPU, no TensorRT): the engine build itself. Written to the
documented TensorRT 10 API (``Builder``, ``OnnxParser``, ``BuilderConfig.set_memory_pool_limit``,
optimization profiles, ``build_serialized_network``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automl.errors import AutomlError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
DATA_TYPES = ("FP32", "FP16", "INT8")


def list_images(dirs: Sequence[str | Path] | str | Path, key: str = "cal_image_dir") -> list[Path]:
    """All images under the given folders (recursively), sorted for reproducibility."""
    if isinstance(dirs, (str, Path)):
        dirs = [dirs]
    images: list[Path] = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise AutomlError(f"{key}: folder not found: {d}")
        images += sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise AutomlError(f"{key}: no images found under {', '.join(str(d) for d in dirs)}")
    return images


class CalibrationBatches:
    """Fixed-size float32 NCHW batches from image files, at most ``max_batches`` of them.

    The last partial batch is dropped (TensorRT calibrators take a fixed batch size); fewer images than
    one batch is an error. ``preprocess`` maps a path to a CHW float32 array (resize + normalise exactly
    as at validation time).
    """

    def __init__(self, images: Sequence[Path], batch_size: int, max_batches: int,
                 preprocess: Callable[[Path], np.ndarray]):
        if batch_size < 1 or max_batches < 1:
            raise AutomlError(f"calibration batch size ({batch_size}) and batches ({max_batches}) must be >= 1")
        if len(images) < batch_size:
            raise AutomlError(f"calibration needs at least cal_batch_size={batch_size} images, found {len(images)}")
        self.images = list(images)
        self.batch_size = int(batch_size)
        self.num_batches = min(int(max_batches), len(self.images) // self.batch_size)
        self.preprocess = preprocess

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[np.ndarray]:
        for b in range(self.num_batches):
            chunk = self.images[b * self.batch_size:(b + 1) * self.batch_size]
            yield np.ascontiguousarray(np.stack([self.preprocess(p) for p in chunk]).astype(np.float32))


def _import_tensorrt():
    try:
        import tensorrt as trt  # noqa: PLC0415
    except ImportError:
        raise AutomlError("gen_trt_engine needs TensorRT: install the 'tensorrt' wheel (pip install 'automl[tensorrt]') "
                          "on a Linux machine with an NVIDIA GPU") from None
    try:
        import torch

        gpu = torch.cuda.is_available() and torch.cuda.device_count() > 0
    except Exception:
        gpu = False
    if not gpu:
        raise AutomlError("gen_trt_engine needs a CUDA GPU; none is visible (check CUDA_VISIBLE_DEVICES / the driver)")
    return trt


def make_calibrator(trt: Any, batches: CalibrationBatches, cache_file: str | Path | None, device: int = 0):
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` and reads/writes ``cache_file``."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._iter = iter(batches)
            self._buffer: torch.Tensor | None = None
            self._cache = Path(cache_file) if cache_file else None

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names):  # noqa: ARG002 - one input
            try:
                batch = next(self._iter)
            except StopIteration:
                return None
            host = torch.from_numpy(batch)
            if self._buffer is None or self._buffer.shape != host.shape:
                self._buffer = torch.empty(host.shape, dtype=torch.float32, device=f"cuda:{device}")
            self._buffer.copy_(host)
            torch.cuda.synchronize(device)
            return [int(self._buffer.data_ptr())]

        def read_calibration_cache(self):
            if self._cache and self._cache.is_file():
                return self._cache.read_bytes()
            return None

        def write_calibration_cache(self, cache) -> None:
            if self._cache:
                self._cache.parent.mkdir(parents=True, exist_ok=True)
                self._cache.write_bytes(bytes(cache))

    return EntropyCalibrator()


@dataclass
class EngineRequest:
    onnx_file: Path
    engine_file: Path
    input_shape: tuple[int, int, int]  # C, H, W
    data_type: str = "FP32"
    workspace_mb: int = 1024
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    timing_cache: Path | None = None
    calibration: CalibrationBatches | None = None
    cal_cache_file: Path | None = None
    gpu_id: int = 0
    verbose: bool = False

    def validate(self) -> None:
        if self.data_type not in DATA_TYPES:
            raise AutomlError(f"gen_trt_engine.tensorrt.data_type: '{self.data_type}' is not one of {', '.join(DATA_TYPES)}")
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise AutomlError("gen_trt_engine.tensorrt: need 1 <= min_batch_size <= opt_batch_size <= max_batch_size, "
                              f"got {self.min_batch}, {self.opt_batch}, {self.max_batch}")
        if not Path(self.onnx_file).is_file():
            raise AutomlError(f"gen_trt_engine.onnx_file: file not found: {self.onnx_file}")
        if self.data_type == "INT8" and self.calibration is None and not (self.cal_cache_file and Path(self.cal_cache_file).is_file()):
            raise AutomlError("gen_trt_engine.tensorrt.calibration.cal_image_dir: INT8 needs calibration images or an existing cal_cache_file")


def _path_or_none(value: Any) -> Path | None:
    text = str(value or "").strip()
    return Path(text) if text not in ("", "???") else None


def engine_request_from_spec(
    section: Mapping[str, Any],
    results_dir: Path,
    preprocess_for: Callable[[int, int], Callable[[Path], np.ndarray]],
) -> EngineRequest:
    """An :class:`EngineRequest` from a TAO ``gen_trt_engine`` spec section.

    The input shape comes from the ONNX file (so the engine matches what was exported, not the
    spec); ``preprocess_for(height, width)`` returns the model's eval transform for INT8 calibration
    images. TAO writes ``data_type`` as e.g. ``"fp32,fp16"``: the first one is built.
    """
    import onnx

    onnx_file = _path_or_none(section.get("onnx_file"))
    if onnx_file is None or not onnx_file.is_file():
        raise AutomlError(f"gen_trt_engine.onnx_file: file not found: {onnx_file or '(not set)'}")
    dims = onnx.load(str(onnx_file), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) for d in dims[1:])
    trt_cfg = section.get("tensorrt") or {}
    data_type = str(trt_cfg.get("data_type") or "FP32").split(",")[0].strip().upper()
    cal = trt_cfg.get("calibration") or {}
    batches, cache = None, None
    if data_type == "INT8":
        cache = _path_or_none(cal.get("cal_cache_file")) or Path(results_dir) / "calibration.cache"
        dirs = cal.get("cal_image_dir")
        if dirs and dirs != "???":
            images = list_images(dirs, "gen_trt_engine.tensorrt.calibration.cal_image_dir")
            batches = CalibrationBatches(images, int(cal.get("cal_batch_size") or 8), int(cal.get("cal_batches") or 10),
                                         preprocess_for(shape[1], shape[2]))
    return EngineRequest(
        onnx_file=onnx_file, engine_file=_path_or_none(section.get("trt_engine")) or Path(results_dir) / "model.engine",
        input_shape=shape, data_type=data_type, workspace_mb=int(trt_cfg.get("workspace_size") or 1024),
        min_batch=int(trt_cfg.get("min_batch_size") or 1), opt_batch=int(trt_cfg.get("opt_batch_size") or 1),
        max_batch=int(trt_cfg.get("max_batch_size") or 1), timing_cache=_path_or_none(section.get("timing_cache")),
        calibration=batches, cal_cache_file=cache, gpu_id=int(section.get("gpu_id") or 0),
        verbose=bool(section.get("verbose")))


def build_engine(req: EngineRequest) -> dict[str, Any]:
    """Build and serialise the engine; return a summary (path, precision, profile, size)."""
    req.validate()
    trt = _import_tensorrt()
    import torch

    torch.cuda.set_device(req.gpu_id)
    logger = trt.Logger(trt.Logger.VERBOSE if req.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(req.onnx_file)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise AutomlError(f"gen_trt_engine.onnx_file: TensorRT could not parse {req.onnx_file}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(req.workspace_mb) << 20)
    profile = builder.create_optimization_profile()
    c, h, w = req.input_shape
    tensor = network.get_input(0)
    profile.set_shape(tensor.name, (req.min_batch, c, h, w), (req.opt_batch, c, h, w), (req.max_batch, c, h, w))
    config.add_optimization_profile(profile)
    if req.data_type == "FP16":
        if not builder.platform_has_fast_fp16:
            raise AutomlError("gen_trt_engine.tensorrt.data_type=FP16: this GPU has no fast FP16")
        config.set_flag(trt.BuilderFlag.FP16)
    elif req.data_type == "INT8":
        if not builder.platform_has_fast_int8:
            raise AutomlError("gen_trt_engine.tensorrt.data_type=INT8: this GPU has no fast INT8")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot take fall back to FP16, not FP32
        config.int8_calibrator = make_calibrator(trt, req.calibration or _EmptyBatches(), req.cal_cache_file, req.gpu_id)
        config.set_calibration_profile(profile)
    cache = None
    if req.timing_cache:
        blob = Path(req.timing_cache).read_bytes() if Path(req.timing_cache).is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise AutomlError(f"TensorRT failed to build an engine from {req.onnx_file} (see the TensorRT log above)")
    req.engine_file.parent.mkdir(parents=True, exist_ok=True)
    req.engine_file.write_bytes(bytes(serialized))
    if cache is not None:
        Path(req.timing_cache).write_bytes(bytes(config.get_timing_cache().serialize()))
    return {"trt_engine": str(req.engine_file), "data_type": req.data_type, "input": tensor.name,
            "profile": {"min": req.min_batch, "opt": req.opt_batch, "max": req.max_batch},
            "bytes": req.engine_file.stat().st_size, "tensorrt_version": trt.__version__}


class _EmptyBatches(CalibrationBatches):
    """INT8 from an existing calibration cache only: the calibrator is never asked for a batch."""

    def __init__(self):
        self.images, self.batch_size, self.num_batches, self.preprocess = [], 1, 0, None


def build_engine_from_spec(section: Mapping[str, Any], results_dir: Path,
                           eval_transform_at: Callable[[int, int], Callable[[Any], Any]]) -> dict[str, Any]:
    """Every trainer's ``gen_trt_engine`` action: the engine :func:`engine_request_from_spec` asks for.
    ``eval_transform_at(height, width)`` is the model's eval transform (RGB image -> CHW tensor) at the
    ONNX input size, used on the INT8 calibration images."""
    from automl.data.folders import load_rgb

    def preprocess_for(height: int, width: int) -> Callable[[Path], np.ndarray]:
        transform = eval_transform_at(height, width)
        return lambda path: np.asarray(transform(load_rgb(path)), dtype=np.float32)

    return build_engine(engine_request_from_spec(section, results_dir, preprocess_for))
