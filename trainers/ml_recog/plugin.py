"""The ml_recog plugin: train / evaluate / inference / export / gen_trt_engine on TAO-layout specs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from automl.errors import AutomlError
from automl.plugins import Monitor, TrainerPlugin
from automl.spec_keys import SpecKeys
from trainers.ml_recog import config

SPLITS = {
    "dataset.train_dataset": "known_classes/train",
    "dataset.val_dataset.reference": "known_classes/reference",
    "dataset.val_dataset.query": "known_classes/val",
}
EVAL_SPLITS = {"reference": "unknown_classes/reference", "query": "unknown_classes/test"}


class MLRecogPlugin(TrainerPlugin):
    name: ClassVar[str] = "ml_recog"
    description: ClassVar[str] = "Metric-learning recognition: timm trunk + embedder, triplet loss, retrieval Precision@1"
    monitor: ClassVar[Monitor] = Monitor(config.MONITOR, "max")
    metrics: ClassVar[tuple[str, ...]] = ("val Mean Average Precision", "val r-Precision", "val Mean Reciprocal Rank",
                                          "train_loss")
    evaluation_metric: ClassVar[str | None] = "Precision at Rank 1"
    spec_dir: ClassVar[Path | None] = config.SEARCH_SPACES
    spec_keys: ClassVar[SpecKeys | None] = config.SPEC_KEYS

    # -- data -----------------------------------------------------------------------------------
    def make_dataset(self, out_dir: Path, *, seed: int = 0, **options: Any) -> dict[str, Any]:
        """Glyph dataset (default) or ``source="fashion-mnist"``; options: classes, per_class, size."""
        source = options.pop("source", None) or "glyphs"
        out_dir = Path(out_dir)
        if source == "glyphs":
            from automl.data.glyphs import make_glyph_dataset

            kwargs = {k: int(options[k]) for k in ("classes", "per_class", "size") if options.get(k) is not None}
            make_glyph_dataset(out_dir, seed=seed, **kwargs)
        elif source == "fashion-mnist":
            from automl.data.fashion_mnist import make_fashion_mnist_dataset

            if options.get("classes") is not None:
                raise AutomlError("--classes does not apply to --source fashion-mnist (it has 10 classes: 6 known, 4 unknown)")
            kwargs = {k: int(options[k]) for k in ("per_class", "size") if options.get(k) is not None}
            make_fashion_mnist_dataset(out_dir, seed=seed, **kwargs)
        else:
            raise AutomlError(f"unknown dataset source '{source}' for ml_recog; allowed: glyphs, fashion-mnist")
        (out_dir / "dataset.json").write_text(json.dumps({"task": "ml_recog", "source": source, "seed": seed, **options}))
        return self.data_keys(out_dir)

    def data_keys(self, data_dir: Path) -> dict[str, Any]:
        data_dir = Path(data_dir)
        missing = [s for s in (*SPLITS.values(), *EVAL_SPLITS.values()) if not (data_dir / s).is_dir()]
        if missing:
            raise AutomlError(f"{data_dir}: not an ml_recog dataset folder (missing {', '.join(missing)})")
        return {key: str(data_dir / split) for key, split in SPLITS.items()}

    @staticmethod
    def evaluation_keys(data_dir: Path) -> dict[str, Any]:
        """The spec keys for evaluate/inference on the unknown classes of a generated folder."""
        data_dir = Path(data_dir)
        return {"dataset.val_dataset.reference": str(data_dir / EVAL_SPLITS["reference"]),
                "dataset.val_dataset.query": str(data_dir / EVAL_SPLITS["query"]),
                "inference.input_path": str(data_dir / EVAL_SPLITS["query"])}

    # -- actions --------------------------------------------------------------------------------
    def train_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        return config.resolve(spec, "train")

    def build_datamodule(self, spec: Mapping[str, Any]):
        from trainers.ml_recog.data import MLRecogDataModule

        datamodule = MLRecogDataModule(spec)
        datamodule.check()
        return datamodule

    def build_module(self, spec: Mapping[str, Any], datamodule):
        from trainers.ml_recog.module import MLRecogModule

        return MLRecogModule(spec)

    def train_summary(self, datamodule, module) -> dict[str, Any]:
        return {"notes": module.pretrained_notes, "metrics": module.last_metrics}

    def _embed(self, net, paths_or_set, spec, batch_size: int):
        import torch

        from trainers.ml_recog.data import make_loader, num_workers

        loader = make_loader(paths_or_set, batch_size, num_workers(spec))
        embeddings, labels = [], []
        with torch.no_grad():
            for images, target in loader:
                embeddings.append(net(images).float())
                labels.append(torch.as_tensor(target))
        return torch.cat(embeddings), torch.cat(labels)

    def _eval_spec(self, spec: Mapping[str, Any], action: str, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The input size and normalisation the checkpoint was trained with win over the spec."""
        spec = dict(spec)
        spec["model"] = {**spec["model"], **meta["model"]}
        spec["dataset"] = {**spec["dataset"], **meta.get("dataset", {})}
        return spec

    def evaluate(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        from trainers.ml_recog.model import load_network

        spec = config.resolve(spec, "evaluate")
        net, meta = load_network(spec["evaluate"].get("checkpoint"), "evaluate.checkpoint")
        result = self.evaluate_network(net, self._eval_spec(spec, "evaluate", meta))
        return {"checkpoint": str(spec["evaluate"]["checkpoint"]), **result}

    def evaluate_network(self, net, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Retrieval metrics of ``net`` on ``dataset.val_dataset`` (reference + query), as evaluate reports
        them (definitions: :mod:`trainers.ml_recog.metrics`). ``top{k}_accuracy`` (``evaluate.topk``) is
        averaged like the other metrics; ``top1_accuracy`` equals Precision at Rank 1."""
        from automl.data.folders import ClassFolderDataset
        from trainers.ml_recog.data import eval_transform, shared_classes, val_sets
        from trainers.ml_recog.metrics import retrieval_metrics, self_match_pairs

        spec = config.resolve(spec, "evaluate") if "train" not in spec else spec
        net = net.eval()
        ref_root, query_root = val_sets(spec)
        mapping = shared_classes(ref_root, query_root)
        tf = eval_transform(spec)
        bs = int(spec["evaluate"].get("batch_size") or 64)
        ref = ClassFolderDataset(ref_root, tf, key="dataset.val_dataset.reference", class_to_label=mapping)
        query = ClassFolderDataset(query_root, tf, key="dataset.val_dataset.query", class_to_label=mapping)
        ref_emb, ref_labels = self._embed(net, ref, spec, bs)
        q_emb, q_labels = self._embed(net, query, spec, bs)
        per_class = bool(spec["evaluate"].get("report_accuracy_per_class", True))
        topk = max(1, int(spec["evaluate"].get("topk") or 1))
        self_matches = self_match_pairs(query.paths, ref.paths)
        metrics = retrieval_metrics(q_emb, q_labels, ref_emb, ref_labels, per_class=per_class, prefix_names=False,
                                    self_matches=self_matches, topk=topk)
        hit = metrics.pop(f"top{topk}_accuracy")
        return {"metrics": metrics, f"top{topk}_accuracy": hit, "num_reference": len(ref), "num_query": len(query),
                "num_classes": len(mapping), "per_class_average": per_class,
                "num_self_matches_excluded": len(self_matches)}

    def inference(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """The ``inference.topk`` nearest references of every input image (a reference that is the image's
        own file is skipped), written to ``<results_dir>/inference_results.json``. For a
        ``classification_folder`` input, ``top1_accuracy`` is the fraction of all input images whose
        nearest reference has their folder's class (a score of the predictions, per image; evaluate's
        retrieval metrics are defined in :mod:`trainers.ml_recog.metrics`)."""
        from automl.data.archives import resolve_dataset
        from automl.data.folders import ClassFolderDataset, ImageListDataset, list_images
        from trainers.ml_recog.data import eval_transform, val_sets
        from trainers.ml_recog.metrics import self_match_pairs, topk_matches
        from trainers.ml_recog.model import load_network

        spec = config.resolve(spec, "inference")
        inf = spec["inference"]
        net, meta = load_network(inf.get("checkpoint"), "inference.checkpoint")
        spec = self._eval_spec(spec, "inference", meta)
        ref_root, _ = val_sets(spec, need_query=False)
        tf = eval_transform(spec)
        bs = int(inf.get("batch_size") or 1)
        ref = ClassFolderDataset(ref_root, tf, key="dataset.val_dataset.reference")
        ref_emb, ref_labels = self._embed(net, ref, spec, max(bs, 1))
        input_path = config.required(spec, "inference.input_path")
        kind = str(inf.get("inference_input_type") or "classification_folder")
        if kind not in ("image", "image_folder", "classification_folder"):
            raise AutomlError(f"inference.inference_input_type: '{kind}' is not one of image, image_folder, classification_folder")
        root = Path(input_path) if kind == "image" else resolve_dataset(input_path, "inference.input_path")
        paths = list_images(root, "inference.input_path")
        q_emb, order = self._embed(net, ImageListDataset(paths, tf), spec, max(bs, 1))
        topk = max(1, int(inf.get("topk") or 1))
        # embeddings come back in dataset order (`order`), so self matches are found on the ordered paths
        ordered = [paths[i] for i in order.tolist()]
        dist, idx = topk_matches(q_emb, ref_emb, topk, self_match_pairs(ordered, ref.paths))
        predictions = []
        correct = 0
        for row, path in enumerate(ordered):
            matches = [{"class": ref.class_names[j], "reference": str(ref.paths[j]), "distance": round(float(d), 6)}
                       for d, j in zip(dist[row].tolist(), idx[row].tolist()) if d != float("inf")]
            record = {"image": str(path), "matches": matches}
            if kind == "classification_folder":
                record["true_class"] = path.parent.name
                correct += int(bool(matches) and matches[0]["class"] == path.parent.name)
            predictions.append(record)
        results_dir = Path(results_dir)
        results_dir.mkdir(parents=True, exist_ok=True)
        out_file = results_dir / "inference_results.json"
        out_file.write_text(json.dumps(predictions, indent=1))
        result: dict[str, Any] = {"checkpoint": str(inf["checkpoint"]), "results_file": str(out_file),
                                  "num_images": len(predictions), "topk": topk, "num_reference": len(ref)}
        if kind == "classification_folder":
            result["top1_accuracy"] = correct / max(1, len(predictions))
        return result

    def export(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """ONNX of ``export.checkpoint`` (TAO's key; when empty, the train run's best checkpoint found
        from the results folders, as TAO derives it from the parent job)."""
        from automl.training.checkpoints import checkpoint_or_trained
        from automl.training.onnx_export import export_with_parity
        from trainers.ml_recog.model import load_network

        spec = config.resolve(spec, "export")
        exp = spec.get("export") or {}
        checkpoint = checkpoint_or_trained(spec, "export", results_dir)
        net, meta = load_network(checkpoint, "export.checkpoint")
        m = meta["model"]
        shape = (int(m["input_channels"]), int(m["input_height"]), int(m["input_width"]))
        return {**export_with_parity(net, exp, results_dir, shape), "output_dim": int(m["feat_dim"]),
                "checkpoint": checkpoint}

    def gen_trt_engine(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        from automl.training.tensorrt import build_engine_from_spec
        from trainers.ml_recog.data import eval_transform

        spec = config.resolve(spec, "gen_trt_engine")
        config.required(spec, "gen_trt_engine.onnx_file")

        def transform_at(height: int, width: int):
            return eval_transform({**spec, "model": {**spec["model"], "input_height": height, "input_width": width}})

        return build_engine_from_spec(spec.get("gen_trt_engine") or {}, results_dir, transform_at)
