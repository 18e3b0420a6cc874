"""Training throughput of the ml_recog Lightning trainer against a plain PyTorch loop.

Same model, batch sampler, data, optimizer, schedule, loss and miner; validation is off in both so the
ratio measures what the trainer adds around the step (Lightning loop, callbacks, logging). Each side
runs ``--rounds`` times, alternating which goes first, and the best round counts (the machine is shared; the best round
is the least disturbed one). Target: ratio >= 0.9.

    .venv/bin/python benchmarks/throughput.py                    # generates a glyph set in a temp dir
    .venv/bin/python benchmarks/throughput.py --data DIR --epochs 3 --rounds 3 --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from automl.plugins import Monitor
from automl.reporting import FileReporter
from automl.spec import apply_config
from automl.training.runner import build_trainer
from automl.training.schedule import warmup_multistep
from trainers.ml_recog import config, plugin
from trainers.ml_recog.data import MLRecogDataModule
from trainers.ml_recog.module import OPTIMIZERS, MLRecogModule, param_groups


def make_spec(data: Path, epochs: int, overrides: dict) -> dict:
    spec = apply_config(config.template("train"), {**plugin.data_keys(data), "train.num_epochs": epochs,
                                                   # validation never runs: the ratio is about training steps
                                                   "train.validation_interval": epochs + 1, **overrides})
    return config.resolve(spec)


def plain_loop(spec: dict) -> float:
    torch.manual_seed(0)
    dm = MLRecogDataModule(spec)
    dm.setup()
    module = MLRecogModule(spec)
    net, optim = module.net, spec["train"]["optim"]
    optimizer = OPTIMIZERS[optim["name"]](param_groups(net, optim, True, True))
    sched = warmup_multistep(optimizer, len(dm.train_sampler), optim["steps"], optim["gamma"], optim["warmup_factor"],
                             optim["warmup_iters"], optim["warmup_method"])
    images = 0
    start = time.perf_counter()
    loader = dm.train_dataloader()
    for epoch in range(int(spec["train"]["num_epochs"])):
        dm.train_sampler.set_epoch(epoch)
        net.train()
        for x, y in loader:
            emb = net(x)
            loss = module.loss_fn(emb, y, module.miner(emb, y))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sched.step()
            images += len(y)
    return images / (time.perf_counter() - start)


def lightning_trainer(spec: dict, out: Path) -> float:
    torch.manual_seed(0)
    dm = MLRecogDataModule(spec)
    module = MLRecogModule(spec)
    trainer, _ = build_trainer(spec, out, Monitor(config.MONITOR, "max"), FileReporter(out))
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    elapsed = time.perf_counter() - start
    images = trainer.global_step * int(spec["train"]["batch_size"])
    return images / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="an ml_recog folder from `automl data make` (default: generate one)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("overrides", nargs="*", help="spec overrides, e.g. model.backbone=test_resnet")
    args = ap.parse_args()
    from automl.spec import parse_overrides

    overrides = parse_overrides(args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        if args.data is None:
            plugin.make_dataset(data, seed=0, classes=36, per_class=48, size=32)
        spec = make_spec(data, args.epochs, overrides)
        plain, trainer = [], []
        for r in range(args.rounds):  # alternate which side goes first: load drifts on shared machines
            if r % 2:
                trainer.append(lightning_trainer(spec, Path(tmp) / f"run{r}"))
                plain.append(plain_loop(spec))
            else:
                plain.append(plain_loop(spec))
                trainer.append(lightning_trainer(spec, Path(tmp) / f"run{r}"))
    result = {"backbone": spec["model"]["backbone"], "batch_size": spec["train"]["batch_size"], "epochs": args.epochs,
              "plain_images_per_s": max(plain), "trainer_images_per_s": max(trainer),
              "ratio": max(trainer) / max(plain), "rounds": {"plain": plain, "trainer": trainer}}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"plain loop: {result['plain_images_per_s']:.1f} img/s   trainer: {result['trainer_images_per_s']:.1f} img/s   "
              f"ratio {result['ratio']:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
