"""Shared trainer infrastructure that needs no model: result JSON, TensorRT calibration batching and
the TensorRT-absent error."""

import json

import numpy as np
import pytest
from PIL import Image

from automl.errors import AutomlError
from automl.training import tensorrt as trt_mod
from automl.training.results import write_result


def test_write_result_file_and_json_last_line(tmp_path, capsys):
    path = write_result("evaluate", {"value": np.float32(0.5), "path": tmp_path, "bad": float("nan")}, tmp_path,
                        as_json=True)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(printed) == json.loads(path.read_text()) == {"value": 0.5, "path": str(tmp_path), "bad": None}
    assert path.name == "evaluate.json"


def _images(tmp_path, n):
    folder = tmp_path / "cal" / "cls"
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(folder / f"{i:03d}.png")
    return trt_mod.list_images([tmp_path / "cal"])


def test_calibration_batches_fixed_size_capped_and_ordered(tmp_path):
    images = _images(tmp_path, 10)
    pre = lambda p: np.full((3, 4, 4), int(p.stem), np.float32)  # noqa: E731
    batches = list(trt_mod.CalibrationBatches(images, batch_size=4, max_batches=100, preprocess=pre))
    assert [b.shape for b in batches] == [(4, 3, 4, 4)] * 2  # 10 images -> 2 full batches, remainder dropped
    assert [b[:, 0, 0, 0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(b.dtype == np.float32 and b.flags["C_CONTIGUOUS"] for b in batches)
    assert len(trt_mod.CalibrationBatches(images, 2, 3, pre)) == 3
    with pytest.raises(AutomlError, match="at least cal_batch_size=16 images, found 10"):
        trt_mod.CalibrationBatches(images, 16, 1, pre)


def test_gen_engine_without_tensorrt_is_a_clear_error(tmp_path):
    pytest.importorskip("onnx")
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"placeholder")
    req = trt_mod.EngineRequest(onnx_file=onnx_file, engine_file=tmp_path / "m.engine", input_shape=(3, 8, 8))
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; the absent-TensorRT path cannot be checked")
    except ImportError:
        pass
    with pytest.raises(AutomlError, match="gen_trt_engine needs TensorRT"):
        trt_mod.build_engine(req)
    with pytest.raises(AutomlError, match="data_type: 'INT4' is not one of FP32, FP16, INT8"):
        trt_mod.build_engine(trt_mod.EngineRequest(onnx_file=onnx_file, engine_file=tmp_path / "e", input_shape=(3, 8, 8),
                                                   data_type="INT4"))
    with pytest.raises(AutomlError, match="INT8 needs calibration images"):
        trt_mod.build_engine(trt_mod.EngineRequest(onnx_file=onnx_file, engine_file=tmp_path / "e", input_shape=(3, 8, 8),
                                                   data_type="INT8"))


def test_last_checkpoint_follows_every_epoch_even_when_the_monitor_gets_worse(tmp_path):
    """Lightning 2.6's save_last only refreshes "last" when top-k saved; ours must not lag behind."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from automl.training.checkpoints import checkpoint_callbacks, load_checkpoint

    class Worsening(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("score", 1.0 - self.current_epoch, on_epoch=True)  # best at epoch 0, then worse

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False,
                         callbacks=checkpoint_callbacks(tmp_path, "score", "max", interval=1))
    trainer.fit(Worsening(), data, data)
    assert load_checkpoint(tmp_path / "last.ckpt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "best.ckpt")["epoch"] == 0
    assert sorted(p.name for p in tmp_path.glob("epoch_*.ckpt")) == ["epoch_000.ckpt", "epoch_001.ckpt", "epoch_002.ckpt"]


def _onnx_and_calibration_images(tmp_path, height: int, width: int, count: int, image_size=(8, 8)):
    """A conv net exported at ``height`` x ``width`` (dynamic batch) and ``count`` coloured images."""
    import torch

    onnx_file = tmp_path / "model.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3), (torch.zeros(1, 3, height, width),), str(onnx_file),
                      input_names=["input"], dynamic_axes={"input": {0: "batch"}}, dynamo=False)
    images = tmp_path / "cal"
    images.mkdir()
    for i in range(count):
        Image.new("RGB", image_size, (i * 40, 100, 200 - i * 40)).save(images / f"{i}.png")
    return onnx_file, images


def test_engine_request_from_a_tao_gen_trt_engine_section(tmp_path):
    """Shape from the ONNX file, TAO's "int8,fp16" data_type, calibration fed through the model's preprocessing."""
    onnx_file, images = _onnx_and_calibration_images(tmp_path, 24, 20, 5)
    seen = []

    def preprocess_for(height, width):
        seen.append((height, width))
        return lambda path: np.zeros((3, height, width), np.float32)

    section = {"onnx_file": str(onnx_file), "trt_engine": "???",
               "tensorrt": {"data_type": "int8,fp16", "max_batch_size": 4, "opt_batch_size": 2,
                            "calibration": {"cal_image_dir": [str(images)], "cal_batch_size": 2, "cal_batches": 2}}}
    req = trt_mod.engine_request_from_spec(section, tmp_path, preprocess_for)
    assert req.input_shape == (3, 24, 20) and req.data_type == "INT8"
    assert req.engine_file == tmp_path / "model.engine" and req.cal_cache_file == tmp_path / "calibration.cache"
    assert seen == [(24, 20)] and [b.shape for b in req.calibration] == [(2, 3, 24, 20)] * 2
    req.validate()
    with pytest.raises(AutomlError, match="gen_trt_engine.onnx_file"):
        trt_mod.engine_request_from_spec({"onnx_file": str(tmp_path / "missing.onnx")}, tmp_path, preprocess_for)


@pytest.mark.parametrize("model", ["ml_recog", "reid", "mae"])
def test_gen_trt_engine_calibrates_with_the_trainers_eval_transform(model, tmp_path, monkeypatch):
    """Every trainer hands build_engine INT8 calibration batches made by its own eval transform at the
    ONNX input size (what TensorRT itself would then consume)."""
    from automl.plugins import get_trainer
    from automl.spec import apply_config, load_yaml

    onnx_file, images = _onnx_and_calibration_images(tmp_path, 32, 32, 3, image_size=(40, 50))
    plugin = get_trainer(model)
    spec = apply_config(load_yaml(plugin.spec_template("gen_trt_engine")), {
        "gen_trt_engine.onnx_file": str(onnx_file), "gen_trt_engine.trt_engine": str(tmp_path / "model.engine"),
        "gen_trt_engine.tensorrt.data_type": "int8",
        "gen_trt_engine.tensorrt.calibration": {"cal_image_dir": [str(images)], "cal_batch_size": 3, "cal_batches": 1,
                                                "cal_cache_file": str(tmp_path / "cal.cache")}})
    requests = []
    monkeypatch.setattr(trt_mod, "build_engine", lambda req: requests.append(req) or {"engine_file": str(req.engine_file)})
    assert plugin.gen_trt_engine(spec, tmp_path) == {"engine_file": str(tmp_path / "model.engine")}
    (batch,) = list(requests[0].calibration)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == np.float32
    assert batch.min() < 0 < batch.max()  # normalised pixels, not raw 0..1 or 0..255 values


def test_pretrained_weights_load_where_name_and_shape_match(tmp_path):
    """ml_recog's model.pretrained_model_path through the shared shape-matching loader: the trunk of a
    network with another embedding size loads, its embedder does not; a foreign file is one error line."""
    import torch

    from automl.plugins import get_trainer
    from automl.spec import apply_config, load_yaml
    from trainers.ml_recog.model import build_network, load_pretrained

    spec = apply_config(load_yaml(get_trainer("ml_recog").spec_template("train")), {"model.feat_dim": 32})
    source = build_network(apply_config(spec, {"model.feat_dim": 64}))
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "source.ckpt")
    net = build_network(spec)
    notes = load_pretrained(net, apply_config(spec, {"model.pretrained_model_path": str(tmp_path / "source.ckpt")}))
    trunk = source.trunk.state_dict()
    assert all(torch.equal(v, trunk[k]) for k, v in net.trunk.state_dict().items())
    assert not torch.equal(net.embedder[0].weight[:, :1], source.embedder[0].weight[:32, :1])
    loaded, total = len(trunk) + 1, len(net.state_dict())  # the trunk and the BatchNorm's batch counter
    assert notes == [f"model.pretrained_model_path: loaded {loaded}/{total} tensors from {tmp_path / 'source.ckpt'}"]
    torch.save({"state_dict": {"other.weight": torch.zeros(3)}}, tmp_path / "foreign.ckpt")
    with pytest.raises(AutomlError, match=r"^model.pretrained_model_path: no weights in .*foreign.ckpt fit backbone"):
        load_pretrained(net, apply_config(spec, {"model.pretrained_model_path": str(tmp_path / "foreign.ckpt")}))
