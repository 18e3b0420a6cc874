"""The worker side of the controller <-> worker protocol (automl.search.worker)."""

from __future__ import annotations

import json

from automl.search.worker import PipeReporter, final_epoch


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
