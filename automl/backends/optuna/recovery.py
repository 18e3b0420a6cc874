"""Resuming an embedded search: the study and the trial folders say which trials finished, which a
crash cut off (rerun from their last checkpoint, same number) and which lost their ``result.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.backends.optuna.jobs import Job, our_state, saved_config
from automl.trials import rundir
from automl.trials.outcome import folder_record
from automl.trials.records import TrialRecord, TrialState
from automl.trials.rundir import JOB_FILE, PREVIOUS_RESULT, RESULT


class Recovery:
    """The resume part of :class:`automl.backends.optuna.search.Search` (a mixin)."""

    # ---- resume
    def _recover(self) -> None:
        """Rebuild state from the study and the trial folders after a crash or a stop."""
        from optuna.trial import TrialState as OptunaState

        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.state == OptunaState.WAITING:
                continue
            folder = rundir.trial_dir(self.setup.run_dir, frozen.number)
            record = rundir.read_trial(self.setup.run_dir, frozen.number)
            if frozen.state != OptunaState.RUNNING:
                if record is None:  # the controller died after telling the study, before writing result.json
                    record = self._rebuilt_record(frozen, folder)
                    rundir.write_json(folder / RESULT, record.to_json())
                self.records[frozen.number] = record
                continue
            if record is not None and record.state == TrialState.PAUSED:
                self.records[frozen.number] = record
                continue
            if record is not None:  # finished, but the controller died before telling the study
                self._finished(Job(frozen.number, record.params), record.to_json())
                continue
            # interrupted mid-run: run it again from its last checkpoint, same number
            config = saved_config(folder)
            if config is None:  # killed between ask and dispatch: the stored params decide
                trial = self._trial(frozen.number)
                config = self.setup.space.suggest(trial)
                config.update(frozen.user_attrs.get("fixed_config", {}))
            job_info = rundir.read_json(folder / JOB_FILE) if (folder / JOB_FILE).exists() else {}
            resume_from, how = resume_point(folder)
            max_epochs = job_info.get("max_epochs")
            if self.mf and max_epochs is None:
                max_epochs = self.rungs.first(frozen.number)
            self.queue.append(Job(frozen.number, config, "rerun", max_epochs=max_epochs, resume_from=resume_from,
                                  extra=job_info.get("job_extra") or {}))
            self.progress.message(f"trial {frozen.number}: interrupted, rerunning {how}")
        if self.pbt is not None:
            self.pbt.recover()

    def _config_of(self, frozen: Any) -> dict[str, Any]:
        """The config a trial trained with, from its stored params: what ``space.suggest`` makes of
        them (the stored params may be internal helpers, e.g. a weighted choice's ``NAME__u``)."""
        from optuna.trial import FixedTrial

        config = self.setup.space.suggest(FixedTrial(dict(frozen.params)))
        config.update(frozen.user_attrs.get("fixed_config", {}))
        return config

    def _rebuilt_record(self, frozen: Any, folder: Path) -> TrialRecord:
        """A finished trial's record from the study (state, value) and its folder (config, epochs,
        checkpoints), for a result.json a crash left unwritten."""
        state, config = our_state(frozen.state), saved_config(folder)
        record = folder_record(
            folder, frozen.number, state, self.setup.objectives,
            previous=rundir.read_json_or(folder / PREVIOUS_RESULT, {}),
            reason="failed (its reason was lost with result.json in a crash)" if state == TrialState.FAILED else None,
            duration_s=frozen.duration.total_seconds() if frozen.duration else 0.0,
            params=self._config_of(frozen) if config is None else config, extra={"rebuilt": True})
        if frozen.values and len(frozen.values) == 1:
            record.value = frozen.value  # the study's value is what the sampler saw
        elif frozen.values:
            record.values = list(frozen.values)
        return record


def resume_point(folder: Path) -> tuple[str | None, str]:
    """``(checkpoint, how)``: the checkpoint an interrupted trial goes on from. ``last.ckpt`` if it
    loads; else ``best.ckpt`` (an earlier epoch) if that loads; else none, from the start. Checkpoints
    are written atomically, but a disk that filled up or a file from an older version may still be
    torn, and resuming from it would fail the trial."""
    import torch

    problems = []
    for name in ("last", "best"):
        ckpt = rundir.checkpoint(folder, name)
        if not ckpt.exists():
            continue
        try:
            torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as exc:  # EOFError, RuntimeError, UnpicklingError: any unreadable file
            problems.append(f"{ckpt.name} does not load ({type(exc).__name__})")
            continue
        how = "from its last checkpoint" if name == "last" else "from its best checkpoint, an earlier epoch"
        return str(ckpt), how + (f" ({'; '.join(problems)})" if problems else "")
    return None, "from the start" + (f" ({'; '.join(problems)})" if problems else "")
