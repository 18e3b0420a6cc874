"""``toy``: a trainer plugin with a known optimum, per-epoch progress, real checkpoints and failure knobs.

Its "validation score" after epoch ``e`` (0-based) of ``N = train.num_epochs`` is

    quality(lr, width, activation, momentum) * schedule(e, N) + noise

where ``quality`` peaks at lr=0.01 (in log space), width=5, relu, momentum=0.9, and ``schedule`` is a
learning curve over the *full* horizon N, so a run stopped at a rung and resumed later reaches
exactly the scores of an uninterrupted run (pause-and-promote is lossless). The state lives in a
checkpoint (``torch.save`` of tensors, loadable with ``weights_only=True``); a run resumed from
``train.resume_training_checkpoint_path`` continues after the checkpoint's epoch and reports only the
epochs it actually ran (``epochs_run``), which is what the promotion tests count.

``evaluate`` reports the checkpoint's score; on the held-out split (``evaluation_keys``:
``toy.eval_split: test``) as ``metrics["test_score"]``, :data:`HELD_OUT_GAP` below it.

Failure injection (``toy.fail``): ``raise`` (an exception), ``segfault`` (SIGSEGV), ``oom`` (SIGKILL,
what the kernel's OOM killer does), ``hang`` (sleeps forever) at ``toy.fail_epoch``, for every trial
or only for trials with ``toy.lr < toy.fail_trial_lr_below``; ``toy.fail_plan`` ("raise@1,oom@3") picks
the failure by trial number (the trial folder's name).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automl.plugins import Monitor, TrainerPlugin
from automl.reporting import Reporter
from automl.spec import get_dotted
from automl.testing.killpoints import kill_point
from automl.fsutil import write_with

ROOT = Path(__file__).resolve().parents[2] / "search_spaces"
ACTIVATION_PENALTY = {"relu": 0.0, "gelu": 0.05, "tanh": 0.15}
#: the held-out split (``toy.eval_split: test``) scores this far below validation; a checkpoint's
#: seed noise carries over unchanged, so seed repeats of a config spread on it as on validation
HELD_OUT_GAP = 0.02


def quality(lr: float, width: int, activation: str, momentum: float) -> float:
    return (1.0 - 0.15 * (math.log10(max(lr, 1e-12)) + 2.0) ** 2 - 0.02 * (width - 5) ** 2
            - ACTIVATION_PENALTY.get(activation, 0.3) - 0.5 * (momentum - 0.9) ** 2)


def schedule(epoch: int, num_epochs: int) -> float:
    return 1.0 - math.exp(-3.0 * (epoch + 1) / max(num_epochs, 1))


class ToyTrainer(TrainerPlugin):
    name = "toy"
    description = "analytic test objective (automl.testing.toy)"
    monitor = Monitor("val_score", "max")
    metrics = ("latency_ms",)
    evaluation_metric = "test_score"

    def schema_path(self) -> Path:
        return ROOT / "toy.train.schema.json"

    def spec_template(self, action: str = "train") -> Path:
        return ROOT / "toy" / "spec_template_train.yaml"

    def make_dataset(self, out_dir: Path, *, seed: int = 0, **options: Any) -> dict[str, Any]:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return {}

    def data_keys(self, data_dir: Path) -> dict[str, Any]:
        return {}

    @staticmethod
    def evaluation_keys(data_dir: Path) -> dict[str, Any]:
        return {"toy.eval_split": "test"}

    def train(self, spec: Mapping[str, Any], results_dir: Path, reporter: Reporter | None = None,
              max_epochs: int | None = None) -> dict[str, Any]:
        import torch

        from automl.training.weights import load_checkpoint

        results_dir = Path(results_dir)
        ckpt_dir = results_dir / "checkpoints"
        t = dict(get_dotted(spec, "toy", {}) or {})
        save = t.get("checkpoints", True) is not False  # off: a trivial trial for overhead benchmarks
        if save:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        num_epochs = int(get_dotted(spec, "train.num_epochs", 9))
        seed = int(get_dotted(spec, "train.seed", 0) or 0)
        stop_at = min(num_epochs, int(max_epochs)) if max_epochs else num_epochs
        lr, width = float(t.get("lr", 0.01)), int(t.get("width", 3))
        activation, momentum = str(t.get("activation", "relu")), float(t.get("momentum", 0.9))
        q = quality(lr, width, activation, momentum)

        start, best_value, best_epoch = 0, -math.inf, None
        resume = get_dotted(spec, "train.resume_training_checkpoint_path", "") or ""
        if resume:
            state = load_checkpoint(resume, key="train.resume_training_checkpoint_path")
            start = int(state["epoch"]) + 1
            best_value, best_epoch = float(state["best_value"]), int(state["best_epoch"])
            if best_epoch < 0:
                best_epoch = None
        gen = torch.Generator().manual_seed(seed * 1000003 + int(lr * 1e6) + width)
        epochs_run = 0
        # what the slot gave this process, for the GPU-assignment tests
        (results_dir / "env.json").write_text(json.dumps({"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                          "pid": os.getpid()}))
        fail = str(t.get("fail", "none"))
        if fail != "none" and float(t.get("fail_trial_lr_below", 0.0) or 0.0) > 0 and lr >= float(t["fail_trial_lr_below"]):
            fail = "none"
        plan = _plan(str(t.get("fail_plan", "") or ""))  # "raise@1,segfault@2": by trial folder number
        if results_dir.name.isdigit() and int(results_dir.name) in plan:
            fail = plan[int(results_dir.name)]
        for epoch in range(start, stop_at):
            if fail != "none" and epoch >= int(t.get("fail_epoch", 0)):
                _fail(fail)
            if float(t.get("sleep_s", 0) or 0):
                # sleep_by_width: trial length varies with the config (mixed-length workloads)
                scale = width / 4.0 if t.get("sleep_by_width") else 1.0
                time.sleep(float(t["sleep_s"]) * scale)
            noise = float(t.get("noise", 0.01)) * float(torch.randn(1, generator=gen))
            value = q * schedule(epoch, num_epochs) + noise
            epochs_run += 1
            state = {"epoch": torch.tensor(epoch), "weights": torch.full((width,), value),
                     "best_value": torch.tensor(max(best_value, value)),
                     "best_epoch": torch.tensor(epoch if value > best_value else (best_epoch if best_epoch is not None else -1))}
            kill_point("epoch", in_worker=True)  # test-only crash injection (automl.testing.killpoints)
            if save:
                # checkpoint_write: the new file is written, not yet renamed into place
                write_with(ckpt_dir / "last.ckpt", lambda tmp: (torch.save(state, tmp),
                                                                kill_point("checkpoint_write", in_worker=True)))
            checkpoint = ckpt_dir / "last.ckpt" if save else None
            if value > best_value:
                best_value, best_epoch = value, epoch
                if save:
                    write_with(ckpt_dir / "best.ckpt", lambda tmp: torch.save(state, tmp))
                    checkpoint = ckpt_dir / "best.ckpt"
            if reporter is not None:
                reporter.report(epoch, {"val_score": value, "latency_ms": 2.0 * width, "train_loss": 1.0 - value},
                                checkpoint)
                if reporter.should_stop():
                    break
        return {"best_value": best_value if best_epoch is not None else None, "best_epoch": best_epoch,
                "best_checkpoint": str(ckpt_dir / "best.ckpt") if best_epoch is not None else None,
                "last_checkpoint": str(ckpt_dir / "last.ckpt"), "epochs_run": epochs_run}

    def evaluate(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        from automl.training.weights import load_checkpoint

        state = load_checkpoint(get_dotted(spec, "evaluate.checkpoint") or "", key="evaluate.checkpoint")
        value = float(state["weights"][0])
        split = str(get_dotted(spec, "toy.eval_split", "val") or "val")
        metrics = {"test_score": value - HELD_OUT_GAP} if split == "test" else {"val_score": value}
        return {"val_score": value, "epoch": int(state["epoch"]), "split": split, "metrics": metrics}

    def export(self, spec: Mapping[str, Any], results_dir: Path) -> dict[str, Any]:
        """A one-layer linear model with the checkpoint's weights, exported with torch.onnx and checked
        against onnxruntime (the same parity check the real trainers do)."""
        import numpy as np
        import torch

        from automl.training.weights import load_checkpoint

        state = load_checkpoint(get_dotted(spec, "export.checkpoint") or "", key="export.checkpoint")
        width = state["weights"].numel()
        model = torch.nn.Linear(width, 1)
        with torch.no_grad():
            model.weight.copy_(state["weights"].view(1, -1))
            model.bias.zero_()
        onnx_file = Path(get_dotted(spec, "export.onnx_file") or Path(results_dir) / "model.onnx")
        x = torch.randn(2, width)
        torch.onnx.export(model, (x,), str(onnx_file), input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}}, dynamo=False)
        import onnxruntime as ort

        got = ort.InferenceSession(str(onnx_file)).run(None, {"input": x.numpy()})[0]
        diff = float(np.abs(got - model(x).detach().numpy()).max())
        return {"onnx_file": str(onnx_file), "max_abs_diff": diff, "parity": diff < 1e-4}


def _plan(text: str) -> dict[int, str]:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, number = part.partition("@")
        out[int(number)] = kind
    return out


def _fail(kind: str) -> None:
    if kind == "raise":
        raise RuntimeError("toy trainer: injected failure")
    if kind == "segfault":
        import ctypes

        ctypes.string_at(0)  # reads address 0: a real SIGSEGV
    if kind == "oom":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "hang":
        while True:
            time.sleep(3600)


plugin = ToyTrainer()
