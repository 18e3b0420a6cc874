"""The worker side of the controller <-> worker protocol (automl.trials.worker)."""

from __future__ import annotations

import json

from automl.plugins import get_trainer
from automl.trials.worker import PipeReporter, final_epoch, prepare_trial_dir, run_trial
from automl.spec import apply_config, load_yaml, parse_overrides


def test_final_epoch_of_a_run():
    spec = {"train": {"num_epochs": 5}}
    assert final_epoch(spec, None) == 4
    assert final_epoch(spec, 2) == 1  # a multi-fidelity stretch that pauses after epoch 1
    assert final_epoch(spec, 9) == 4
    assert final_epoch({"train": {}}, None) is None


def test_the_final_report_is_sent_without_waiting_for_a_reply(tmp_path):
    sent, replies = [], [{"op": "reply", "stop": None}, {"op": "reply", "stop": "pruned"}]
    reporter = PipeReporter(tmp_path, sent.append, lambda: replies.pop(0), final_epoch=2)
    reporter.report(0, {"val": 0.1})
    assert not reporter.should_stop() and len(replies) == 1
    reporter.report(1, {"val": 0.2})
    assert reporter.should_stop() and reporter.stop_reason == "pruned" and not replies
    reporter.stop_reason = None
    reporter.report(2, {"val": 0.3})  # a reply would be popped from an empty list and raise
    assert [m["final"] for m in sent] == [False, False, True]
    assert [m["epoch"] for m in sent] == [0, 1, 2]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]


def test_prepare_makes_the_folder_and_keeps_what_is_there(tmp_path):
    folder = tmp_path / "trials" / "0007"
    prepare_trial_dir(folder)
    assert (folder / "train.log").read_text() == "" and (folder / "metrics.jsonl").read_text() == ""
    (folder / "metrics.jsonl").write_text('{"epoch": 0}\n')  # a resumed trial appends to its files
    prepare_trial_dir(folder)
    assert (folder / "metrics.jsonl").read_text() == '{"epoch": 0}\n'


def test_a_served_trial_leaves_its_files_to_the_controller(tmp_path):
    spec = apply_config(load_yaml(get_trainer("toy").spec_template()),
                        parse_overrides(["train.num_epochs=2", "toy.noise=0", "toy.checkpoints=false"]))
    reporter = PipeReporter(tmp_path, lambda msg: None, lambda: {"op": "reply", "stop": None}, final_epoch(spec, None))
    result = run_trial("toy", spec, tmp_path, reporter, config={"toy.lr": 0.1}, write_files=False, write_result=False)
    assert result["state"] == "complete" and result["epochs_done"] == 2 and result["value"] is not None
    assert not any((tmp_path / name).exists() for name in ("result.json", "config.json", "spec.yaml"))
    result = run_trial("toy", spec, tmp_path / "standalone", reporter, config={"toy.lr": 0.1})
    assert json.loads((tmp_path / "standalone" / "result.json").read_text())["value"] == result["value"]
