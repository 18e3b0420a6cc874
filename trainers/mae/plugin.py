"""The ``mae`` trainer plugin: masked-autoencoder pretraining and classification finetuning."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from automl.errors import AutomlError
from automl.plugins import Monitor, TrainerPlugin
from automl.reporting import FileReporter, Reporter
from automl.spec import apply_config
from automl.spec_keys import TAO_PLUMBING, Refusal, SpecKeys
from automl.training.checkpoints import checkpoint_or_trained, load_automl_checkpoint, strip_prefix
from trainers import SEARCH_SPACES
from trainers.mae import synth

PREDICTIONS_FILE = "inference_results.json"  # inference's per-image classes and top-5 scores


def _device() -> torch.device:
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def build_from_checkpoint(meta: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """finetune: the classifier (logits); pretrain: the encoder (pooled features)."""
    from trainers.mae.model import build_mae, create_encoder

    if meta["stage"] == "finetune":
        model = create_encoder(meta["spec"], num_classes=int(meta["num_classes"]))
        model.load_state_dict(strip_prefix(state, "model."))
        return model.eval()
    mae = build_mae(meta["spec"])
    mae.load_state_dict(strip_prefix(state, "mae."))
    return mae.encoder.eval()


class MaeTrainer(TrainerPlugin):
    name = "mae"
    description = "Masked auto-encoder: pretrain (masked reconstruction) and finetune (classification), timm ViT/ConvNeXt-V2"
    # One name for both stages: finetune top-1, pretrain k-NN top-1 on the labelled val set (see the
    # schema's description for why the reconstruction loss is not the search objective).
    monitor = Monitor("val_accuracy", "max")
    metrics = ("val_recon_loss", "knn_accuracy", "val_top1", "val_loss")
    evaluation_metric = "val_accuracy"  # what evaluate logs for both stages (finetune top-1, pretrain k-NN)
    spec_dir = SEARCH_SPACES
    spec_keys = SpecKeys(
        "mae", ignored=(*TAO_PLUMBING, "train.optim.monitor_name"),
        refused=(Refusal("train.accum_grad_batches", (1,), "raise dataset.batch_size or train.num_gpus instead"),
                 Refusal("train.distributed_strategy", ("ddp",), "multi-GPU training runs Lightning's DDP"),
                 Refusal("export.format", ("onnx",), "export writes ONNX"),
                 Refusal("export.input_channel", (3,), "the models read RGB images")),
        pretrained=("train.pretrained_model_path",))

    # -- data ---------------------------------------------------------------------------------
    def make_dataset(self, out_dir: Path, *, seed: int = 0, **options: Any) -> dict[str, Any]:
        """Unlabelled pool + small labelled set. Options: ``classes`` (10), ``per_class`` (labelled
        images per class, 20), ``unlabeled_per_class`` (60), ``val_per_class`` (30), ``size`` (32),
        ``source`` (shapes | glyphs | fashion_mnist)."""
        allowed = {"classes", "per_class", "unlabeled_per_class", "val_per_class", "test_per_class", "size", "source"}
        unknown = set(options) - allowed
        if unknown:
            raise AutomlError(f"mae data generator: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
        opts = {k: (v if k == "source" else int(v)) for k, v in options.items() if v is not None}
        synth.generate(Path(out_dir), seed=seed, **opts)
        return self.data_keys(Path(out_dir))

    def data_keys(self, data_dir: Path) -> dict[str, Any]:
        """The pretrain keys (``dataset.json`` also lists the finetune ones)."""
        data_dir = Path(data_dir)
        if not (data_dir / "images_train").is_dir():
            raise AutomlError(f"{data_dir}: not an mae dataset folder (no images_train/)")
        info = json.loads((data_dir / "dataset.json").read_text()) if (data_dir / "dataset.json").is_file() else {}
        keys = {"dataset.train_data_sources": str(data_dir / "images_train"),
                "dataset.val_data_sources": str(data_dir / "images_val"),
                "dataset.test_data_sources": str(data_dir / "images_test")}
        if "size" in info:
            keys["dataset.augmentation.input_size"] = int(info["size"])
        if "classes" in info:
            keys["model.num_classes"] = int(info["classes"])
        return keys

    def data_keys_for(self, data_dir: Path, spec: Mapping[str, Any]) -> dict[str, Any]:
        """``train.stage: finetune`` trains on the labelled split (``labeled_train/``, one sub-folder per
        class), pretraining on the unlabelled ``images_train/``."""
        keys = self.data_keys(data_dir)
        if str((spec.get("train") or {}).get("stage") or "pretrain") != "finetune":
            return keys
        labelled = Path(data_dir) / "labeled_train"
        if not labelled.is_dir():
            raise AutomlError(f"{data_dir}: no labeled_train/ (class sub-folders) for train.stage=finetune; "
                              "make the folder with `automl data make --task mae`")
        classes = [p for p in labelled.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return {**keys, "dataset.train_data_sources": str(labelled), "model.num_classes": len(classes)}

    @staticmethod
    def finetune_keys(data_dir: Path) -> dict[str, Any]:
        info = json.loads((Path(data_dir) / "dataset.json").read_text())
        return {**info["finetune_keys"], "train.stage": "finetune", "dataset.augmentation.input_size": int(info["size"])}

    # -- actions ------------------------------------------------------------------------------
    def build_datamodule(self, spec: Mapping[str, Any]):
        from trainers.mae.data import MaeDataModule

        return MaeDataModule(spec)

    def build_module(self, spec: Mapping[str, Any], datamodule):
        from trainers.mae.module import FinetuneModule, PretrainModule

        if datamodule.stage == "pretrain":
            return PretrainModule(spec, datamodule.classes if datamodule.labelled_val else None)
        return FinetuneModule(spec, len(datamodule.classes), datamodule.classes)

    def fit_monitor(self, datamodule, reporter: Reporter | None) -> Monitor:
        if datamodule.stage == "finetune" or datamodule.labelled_val:
            return self.monitor
        if reporter is not None and not isinstance(reporter, FileReporter):
            raise AutomlError("dataset.val_data_sources: an mae pretrain search needs a labelled validation set "
                              "(one sub-folder per class) for the k-NN accuracy it optimises; reconstruction "
                              "loss is not comparable across mask ratios")
        return Monitor("val_recon_loss", "min")  # plain pretraining without labels

    def train_summary(self, datamodule, module) -> dict[str, Any]:
        out = {"stage": datamodule.stage, "train_images": len(datamodule.train), "val_images": len(datamodule.val)}
        if datamodule.stage == "finetune" or module.pretrained is not None:
            out["pretrained"] = module.pretrained
        return out

    def evaluate(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """finetune checkpoint: top-1 accuracy on ``dataset.val_data_sources``; pretrain checkpoint:
        reconstruction loss and k-NN accuracy there."""
        import lightning.pytorch as pl

        from automl.data.folders import list_images
        from trainers.mae.data import (ImagesDataset, eval_transform, has_class_folders, labelled, require_knn_split,
                                       source_folder)
        from trainers.mae.module import FinetuneModule, PretrainModule

        section = spec.get("evaluate") or {}
        meta, state = load_automl_checkpoint(section.get("checkpoint", ""), "evaluate.checkpoint", "mae")
        root = source_folder((spec.get("dataset") or {}).get("val_data_sources"), "dataset.val_data_sources")
        if root is None:
            raise AutomlError("dataset.val_data_sources is not set; evaluate needs a labelled image folder (one sub-folder per class)")
        train_spec = json.loads(json.dumps(meta["spec"]))
        train_spec["train"]["pretrained_model_path"] = ""  # the checkpoint's own weights are loaded below
        transform = eval_transform(train_spec)  # preprocessing of the trained model, not of this spec
        names = list(meta.get("class_names") or [])
        if meta["stage"] == "finetune":
            data = labelled(root, transform, "dataset.val_data_sources", {n: i for i, n in enumerate(names)})
            extra = sorted(set(data.classes) - set(names))
            if extra:
                raise AutomlError(f"dataset.val_data_sources has classes the model was not trained on: {', '.join(extra[:5])}")
            module = FinetuneModule(train_spec, int(meta["num_classes"]), names)
        elif has_class_folders(root):
            data = labelled(root, transform, "dataset.val_data_sources")
            require_knn_split(len(data), "dataset.val_data_sources")
            module = PretrainModule(train_spec, list(data.classes))
        else:
            data = ImagesDataset(list_images(root, "dataset.val_data_sources"), transform)
            module = PretrainModule(train_spec, None)
        module.load_state_dict(state)
        batch = int(section.get("batch_size", -1) or -1)
        loader = torch.utils.data.DataLoader(data, batch_size=batch if batch > 0 else int(train_spec["dataset"].get("batch_size", 64)))
        trainer = pl.Trainer(accelerator="auto", devices=1, logger=False, enable_progress_bar=False,
                             enable_model_summary=False)
        metrics = trainer.validate(module, dataloaders=loader, verbose=False)[0]
        return {"stage": meta["stage"], **{k: float(v) for k, v in metrics.items()}, "val_images": len(data)}

    def inference(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        from automl.data.folders import ImageListDataset, list_images
        from trainers.mae.data import eval_transform, source_folder

        section = spec.get("inference") or {}
        meta, state = load_automl_checkpoint(section.get("checkpoint", ""), "inference.checkpoint", "mae")
        if meta["stage"] != "finetune":
            raise AutomlError(
                "inference.checkpoint: this is a train.stage=pretrain checkpoint (masked reconstruction); it has no "
                "classifier. Finetune it first (train.stage=finetune, train.pretrained_model_path=<this file>) and "
                "run inference with the finetune checkpoint")
        folder = source_folder((spec.get("dataset") or {}).get("test_data_sources"), "dataset.test_data_sources")
        if folder is None:
            raise AutomlError("dataset.test_data_sources is not set; point it at the images to classify")
        model = build_from_checkpoint(meta, state).to(_device())
        paths = list_images(folder, "dataset.test_data_sources")
        batch = int(section.get("batch_size", -1) or -1)
        loader = torch.utils.data.DataLoader(ImageListDataset(paths, eval_transform(meta["spec"])),
                                             batch_size=batch if batch > 0 else 64)
        names, rows = list(meta["class_names"]), []
        with torch.no_grad():
            for images, index in loader:
                probs = model(images.to(_device())).float().softmax(1).cpu()
                top = probs.topk(min(5, probs.shape[1]), dim=1)
                for i, scores, classes in zip(index.tolist(), top.values.tolist(), top.indices.tolist()):
                    rows.append({"image": str(paths[i]), "class": names[classes[0]], "score": scores[0],
                                 "top5": [{"class": names[c], "score": s} for c, s in zip(classes, scores)]})
        # not <action>.json: that file holds the CLI's summary of the run
        out = Path(section.get("results_dir") or results_dir) / PREDICTIONS_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"classes": names, "results": rows}, indent=1))
        return {"output_file": str(out), "images": len(rows)}

    def export(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """ONNX of the classifier (finetune) or encoder (pretrain) at the *trained* input size."""
        from automl.training.onnx_export import export_with_parity
        from trainers.mae.data import input_size

        section = spec.get("export") or {}
        meta, state = load_automl_checkpoint(checkpoint_or_trained(spec, "export", results_dir), "export.checkpoint", "mae")
        model = build_from_checkpoint(meta, state)
        size = input_size(meta["spec"])
        asked = (int(section.get("input_height", size) or size), int(section.get("input_width", size) or size))
        notes = []
        if asked != (size, size):
            # TAO's template default 960x544 does not match any trained model; a ViT's position
            # embedding fixes the size anyway. The checkpoint's size wins, and we say so.
            notes.append(f"export.input_height/width {asked[0]}x{asked[1]} ignored: the checkpoint was trained at {size}x{size}")
        return {**export_with_parity(model, section, results_dir, (3, size, size)), "stage": meta["stage"],
                "output": "logits" if meta["stage"] == "finetune" else "features", "notes": notes}

    def gen_trt_engine(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """TensorRT engine (FP32 / FP16 / INT8) from the exported ONNX. Needs the tensorrt wheel and a
        GPU (a clear error otherwise; not run on the CPU-only CI)."""
        from automl.training.tensorrt import build_engine_from_spec
        from trainers.mae.data import eval_transform

        def transform_at(height: int, width: int):
            return eval_transform(apply_config(spec, {"dataset.augmentation.input_size": int(height)}))

        return build_engine_from_spec(spec.get("gen_trt_engine") or {}, results_dir, transform_at)
