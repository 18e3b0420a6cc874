"""Device mapping on simulated GPU inventories (the CUDA branch cannot run on this CPU machine)."""

import pytest

from automl.errors import AutomlError
from automl.training.devices import plan_devices


def test_cpu_only_machine_runs_one_cpu_process():
    plan = plan_devices(1, [0], 1, visible_gpus=0, cpu_processes=0)
    assert (plan.accelerator, plan.devices, plan.ddp) == ("cpu", 1, False)
    assert plan.trainer_kwargs()["strategy"] == "auto"


def test_cpu_ddp_uses_gloo():
    plan = plan_devices(1, [0], 1, visible_gpus=0, cpu_processes=2)
    assert (plan.accelerator, plan.devices, plan.ddp, plan.backend, plan.world_size) == ("cpu", 2, True, "gloo", 2)
    strategy = plan.strategy()
    assert type(strategy).__name__ == "DDPStrategy" and strategy._process_group_backend == "gloo"


def test_multi_gpu_request_without_gpus_is_a_clear_error():
    with pytest.raises(AutomlError, match="train.num_gpus=2 .* no GPU is visible"):
        plan_devices(2, [0, 1], 1, visible_gpus=0, cpu_processes=0)


def test_single_gpu_and_ddp_over_gpu_ids():
    assert plan_devices(1, [0], 1, visible_gpus=4).devices == [0]
    plan = plan_devices(2, [2, 3], 1, visible_gpus=4)
    assert (plan.accelerator, plan.devices, plan.ddp, plan.backend) == ("gpu", [2, 3], True, "nccl")
    # TAO's default gpu_ids [0] with num_gpus=2: extended with the next visible id
    assert plan_devices(2, [0], 1, visible_gpus=4).devices == [0, 1]
    assert plan_devices(1, [0], 2, visible_gpus=1).ddp  # multi-node is DDP even with one GPU per node


def test_gpu_ids_are_renumbered_onto_the_controllers_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    plan = plan_devices(2, [4, 5], 1, visible_gpus=2)
    assert plan.devices == [0, 1] and any("renumbered" in n for n in plan.notes)


def test_too_many_gpus_lists_what_is_visible(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(AutomlError, match=r"1 visible \(allowed ids 0..0\)"):
        plan_devices(2, [0, 1], 1, visible_gpus=1)
