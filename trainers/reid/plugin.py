"""The ``reid`` trainer plugin: train, evaluate, inference and export on Market-1501 folders."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automl.errors import AutomlError
from automl.plugins import Monitor, TrainerPlugin
from automl.spec import apply_config
from trainers import SEARCH_SPACES
from trainers.reid import synth
from trainers.reid.data import ReidDataset, eval_transform, input_hw, loader
from trainers.reid.market1501 import scan_folder
from trainers.reid.metrics import require_scorable, retrieval_metrics, summary
from trainers.reid.model import SPEC_KEYS, flip_embed, load_trained
from trainers.reid.plots import plot_cmc, plot_matches

PREDICTIONS_FILE = "inference_results.json"  # inference's ranked matches, unless inference.output_file says


def _device() -> torch.device:
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


@torch.no_grad()
def embed(net: torch.nn.Module, images, train_spec: Mapping[str, Any], batch_size: int) -> torch.Tensor:
    dataset = ReidDataset(images, eval_transform(train_spec))
    device = _device()
    net = net.to(device)
    with_flip = bool(train_spec.get("model", {}).get("with_flip_feature", False))
    feats = [flip_embed(net, batch[0].to(device), with_flip).float().cpu()
             for batch in loader(dataset, batch_size, 0, shuffle=False)]
    return torch.cat(feats)


def _section_value(spec: Mapping[str, Any], section: str, key: str, fallback: str) -> str:
    value = str((spec.get(section) or {}).get(key) or "").strip()
    if value:
        return value
    return str((spec.get("dataset") or {}).get(fallback) or "").strip()


class ReidTrainer(TrainerPlugin):
    name = "reid"
    description = "Person re-identification (timm backbone + BNNeck, ID + triplet loss, Market-1501 protocol)"
    monitor = Monitor("cmc_rank_1", "max")
    metrics = ("cmc_rank_5", "cmc_rank_10", "mAP")
    evaluation_metric = "cmc_rank_1"
    spec_dir = SEARCH_SPACES
    spec_keys = SPEC_KEYS

    # -- data ---------------------------------------------------------------------------------
    def make_dataset(self, out_dir: Path, *, seed: int = 0, **options: Any) -> dict[str, Any]:
        """Generated pedestrians in Market-1501 layout. Options: ``classes`` (train identities, 64),
        ``test_classes`` (query/gallery identities, as many as ``classes``: with the defaults about 190
        queries, one query about 0.005 of rank-1), ``per_class`` (images per identity, 8), ``size``
        (image height, width = height/2, 64), ``cameras`` (6)."""
        allowed = {"classes", "test_classes", "per_class", "size", "cameras", "distractors", "junk"}
        unknown = set(options) - allowed
        if unknown:
            raise AutomlError(f"reid data generator: unknown option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
        opts = {"classes": 64, "per_class": 8, "size": 64, "cameras": 6}
        opts.update({k: int(v) for k, v in options.items() if v is not None})
        opts.setdefault("test_classes", opts["classes"])
        synth.generate(Path(out_dir), seed=seed, **opts)
        (Path(out_dir) / "dataset.json").write_text(json.dumps({"task": "reid", "seed": seed, **opts}, indent=2))
        return self.data_keys(Path(out_dir))

    def data_keys(self, data_dir: Path) -> dict[str, Any]:
        data_dir = Path(data_dir)
        train = data_dir / "bounding_box_train"
        if not train.is_dir():
            raise AutomlError(f"{data_dir}: not a reid dataset folder (no bounding_box_train/)")
        num_classes = len({im.pid for im in scan_folder(train, "dataset.train_dataset_dir") if im.pid > 0})
        return {
            "dataset.train_dataset_dir": str(train),
            "dataset.test_dataset_dir": str(data_dir / "bounding_box_test"),
            "dataset.query_dataset_dir": str(data_dir / "query"),
            "dataset.num_classes": num_classes,
        }

    # -- actions ------------------------------------------------------------------------------
    def train_spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        # TAO's reid names the clipping norm train.grad_clip; the shared runner reads train.clip_grad_norm.
        return apply_config(spec, {"train.clip_grad_norm": float(spec.get("train", {}).get("grad_clip", 0.0) or 0.0)})

    def build_datamodule(self, spec: Mapping[str, Any]):
        from trainers.reid.data import ReidDataModule

        return ReidDataModule(spec)

    def build_module(self, spec: Mapping[str, Any], datamodule):
        from trainers.reid.module import ReidModule

        return ReidModule(spec, datamodule.num_classes, datamodule.num_query, datamodule.train_set.pids)

    def train_summary(self, datamodule, module) -> dict[str, Any]:
        out = {"num_classes": datamodule.num_classes, "num_query": datamodule.num_query,
               "num_gallery": len(datamodule.gallery)}
        if module.missing_pretrained:
            out["pretrained_missing_keys"] = len(module.missing_pretrained)
        return out

    def _embedded(self, spec: Mapping[str, Any], action: str, strict: bool):
        """The checkpoint's train spec, the query and gallery images of ``action`` and their embeddings."""
        section = spec.get(action) or {}
        net, train_spec = load_trained(section.get("checkpoint", ""), f"{action}.checkpoint")
        query = scan_folder(_section_value(spec, action, "query_dataset", "query_dataset_dir"),
                            f"{action}.query_dataset", strict=strict)
        gallery = scan_folder(_section_value(spec, action, "test_dataset", "test_dataset_dir"),
                              f"{action}.test_dataset", strict=strict)
        if strict:  # evaluate: refuse data that cannot be scored before embedding anything
            require_scorable([i.pid for i in query], [i.pid for i in gallery], [i.camid for i in query],
                             [i.camid for i in gallery], f"{action}.query_dataset", f"{action}.test_dataset")
        size = int(section.get("batch_size", -1) or -1)
        batch = size if size > 0 else int(train_spec.get("dataset", {}).get("val_batch_size", 128))
        return train_spec, query, gallery, embed(net, query, train_spec, batch), embed(net, gallery, train_spec, batch)

    def evaluate(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        results_dir = Path(results_dir)
        section = spec.get("evaluate") or {}
        train_spec, query, gallery, q_feat, g_feat = self._embedded(spec, "evaluate", strict=True)
        eval_spec = dict(train_spec)
        eval_spec["re_ranking"] = spec.get("re_ranking", train_spec.get("re_ranking", {}))
        arr = lambda items, attr: np.array([getattr(i, attr) for i in items])  # noqa: E731
        result, distmat = retrieval_metrics(q_feat, g_feat, arr(query, "pid"), arr(gallery, "pid"),
                                            arr(query, "camid"), arr(gallery, "camid"), eval_spec)
        metrics = summary(result)
        cmc_path = Path(section.get("output_cmc_curve_plot") or results_dir / "cmc_curve.png")
        matches_path = Path(section.get("output_sampled_matches_plot") or results_dir / "sampled_matches.png")
        plot_cmc(result["cmc"], cmc_path, "re-ranked CMC" if eval_spec["re_ranking"].get("re_ranking") else "CMC")
        num_show = int(eval_spec["re_ranking"].get("num_query", 10) or 10)
        rng = np.random.default_rng(0)
        shown = sorted(rng.choice(len(query), size=min(num_show, len(query)), replace=False).tolist())
        ranked = []
        for i in shown:
            # the same entries the protocol scores: no junk, no same-person-same-camera images
            order = [j for j in np.argsort(distmat[i], kind="stable") if gallery[j].pid != -1
                     and not (gallery[j].pid == query[i].pid and gallery[j].camid == query[i].camid)][:5]
            ranked.append([(gallery[j].path, gallery[j].pid, float(distmat[i, j])) for j in order])
        plot_matches([(query[i].path, query[i].pid) for i in shown], ranked, matches_path)
        return {**metrics, "cmc": [float(v) for v in result["cmc"]], "num_query": len(query),
                "num_gallery": len(gallery), "num_scored_queries": result["num_scored"],
                "num_skipped_queries": result["num_skipped"],
                "re_ranking": bool(eval_spec["re_ranking"].get("re_ranking", False)),
                "cmc_curve_plot": str(cmc_path), "sampled_matches_plot": str(matches_path)}

    def inference(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """Ranked gallery matches per query, as JSON in ``inference.output_file`` (default
        ``<results_dir>/inference_results.json``). No identity filtering: names need not be Market-1501."""
        results_dir = Path(results_dir)
        section = spec.get("inference") or {}
        _, query, gallery, q_feat, g_feat = self._embedded(spec, "inference", strict=False)
        q, g = torch.nn.functional.normalize(q_feat, dim=1), torch.nn.functional.normalize(g_feat, dim=1)
        dist = torch.cdist(q, g).numpy()
        top_k = min(int((spec.get("re_ranking") or {}).get("max_rank", 10) or 10), len(gallery))
        rows = []
        for i, item in enumerate(query):
            order = np.argsort(dist[i], kind="stable")[:top_k]
            rows.append({"query": str(item.path), "matches": [
                {"rank": r + 1, "image": str(gallery[j].path), "distance": float(dist[i, j])} for r, j in enumerate(order)]})
        # TAO's inference.output_file; the default is not <action>.json, which holds the CLI's summary
        out = Path(str(section.get("output_file") or "").strip() or results_dir / PREDICTIONS_FILE)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"top_k": top_k, "results": rows}, indent=1))
        return {"output_file": str(out), "num_query": len(query), "num_gallery": len(gallery), "top_k": top_k}

    def export(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        from automl.training.checkpoints import checkpoint_or_trained
        from automl.training.onnx_export import export_with_parity

        section = spec.get("export") or {}
        net, train_spec = load_trained(checkpoint_or_trained(spec, "export", results_dir), "export.checkpoint")
        h, w = input_hw(train_spec)  # the trained input size, whatever the export section says
        return {**export_with_parity(net, section, results_dir, (3, h, w)), "embedding_dim": int(net.feat_dim)}

    def gen_trt_engine(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """TensorRT engine (FP32 / FP16 / INT8) from the exported ONNX. TAO's reid has no such action;
        the search promotes its winner to an engine, so ours does. Needs the tensorrt wheel and a GPU
        (a clear error otherwise; not run on the CPU-only CI)."""
        from automl.training.tensorrt import build_engine_from_spec

        def transform_at(height: int, width: int):
            return eval_transform(apply_config(spec, {"model.input_height": height, "model.input_width": width}))

        return build_engine_from_spec(spec.get("gen_trt_engine") or {}, results_dir, transform_at)
