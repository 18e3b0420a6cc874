"""Population based training in the embedded backend (Optuna has no PBT scheduler).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automl.trials.records import TrialRecord, TrialState
from automl.trials import rundir
from automl.trials.outcome import ranked
from automl.reporting import read_metrics
from automl.trials.rundir import METRICS
from automl.trials.outcome import INHERITED, epoch_metrics
from automl.backends.optuna.jobs import Job

if TYPE_CHECKING:
    from automl.backends.optuna.search import _Search


class _PBT:
    """Population based training over trials: each trial is one segment of ``perturbation_interval``
    epochs of one population member. A member's next segment resumes from its own checkpoint; a member
    in the bottom quantile instead copies a top member's checkpoint (exploit) and perturbs that
    member's values (explore: floats/ints by x0.8 or x1.2 within bounds, categoricals resampled with
    probability ``resample_probability``), keeping only configs that pass ``space.check``.

    Ray Tune's PBT scheduler is the reference implementation; Optuna has none, hence this class.
    """

    def __init__(self, search: _Search):
        self.search = search
        s = search.setup.algorithm_settings
        self.population = s["population"]
        self.interval = s["perturbation_interval"]
        self.quantile = s["quantile_fraction"]
        self.resample_probability = s["resample_probability"]
        self.rng = random.Random(search.setup.seed)
        self.np_rng = np.random.default_rng(search.setup.seed)
        #: member -> its latest segment trial number
        self.latest: dict[int, int] = {}
        self.ready: list[int] = []  # members whose last segment finished and that wait for the next

    def recover(self) -> None:
        for number, record in sorted(self.search.records.items()):
            member = record.extra.get("member")
            if member is not None:
                self.latest[int(member)] = number
        for job in self.search.queue:
            member = job.extra.get("member")
            if member is not None:
                self.latest[int(member)] = job.number
        running = {j.extra.get("member") for j in self.search.queue}
        self.ready = [m for m in self.latest if m not in running and self._can_continue(m)]

    def _can_continue(self, member: int) -> bool:
        record = self.search.records.get(self.latest[member])
        return record is not None and record.state in (TrialState.COMPLETE, TrialState.PAUSED) and record.epochs_done < self.search.setup.max_epochs

    def next_job(self) -> Job | None:
        search = self.search
        if search.used() >= search.setup.budget_trials:
            return None
        if len(self.latest) < self.population:  # first generation: fresh configs
            member = len(self.latest)
            job = search._new_trial(extra={"member": member})
            if job is None:
                return None
            job.max_epochs = min(self.interval, search.setup.max_epochs)
            self.latest[member] = job.number
            return job
        if not self.ready:
            return None
        member = self.ready.pop(0)
        own = search.records[self.latest[member]]
        donor = self._exploit(member)
        extra = {"member": member, "parent": own.number}
        if donor is not None:
            config = self._explore(donor.params)
            source, extra["exploited"] = donor, donor.number
        else:
            config, source = dict(own.params), own
        ckpt = rundir.checkpoint(source.trial_dir)
        job = search._new_trial(fixed=config, extra=extra)
        if job is None:
            return None
        job.kind = "pbt"
        job.max_epochs = min(source.epochs_done + self.interval, search.setup.max_epochs)
        job.resume_from = str(ckpt) if ckpt.exists() else None
        # the segment continues the source's history: seed its metrics so epochs and values line up
        folder = rundir.trial_dir(search.setup.run_dir, job.number)
        folder.mkdir(parents=True, exist_ok=True)
        history = [{**r, INHERITED: True} for r in read_metrics(source.trial_dir)]
        if history:  # marked: these epochs are not this segment's epochs_run
            rundir.write_text(folder / METRICS, "".join(json.dumps(r) + "\n" for r in history))
        self.latest[member] = job.number
        return job

    def _scores(self) -> list[tuple[float, int]]:
        out = []
        for member, number in self.latest.items():
            record = self.search.records.get(number)
            if record is None or record.state not in (TrialState.COMPLETE, TrialState.PAUSED):
                continue
            epochs = epoch_metrics(Path(record.trial_dir))
            if not epochs:
                continue
            value = epochs[max(epochs)].get(self.search.setup.monitor.metric)
            if value is not None:
                out.append((value, member))
        return ranked(sorted(out, key=lambda vm: vm[1]), self.search.setup.monitor, value=lambda vm: vm[0])

    def _exploit(self, member: int) -> TrialRecord | None:
        ranked = self._scores()
        k = max(1, int(math.ceil(len(ranked) * self.quantile)))
        if len(ranked) < 2 or member not in [m for _, m in ranked[-k:]]:
            return None
        # a donor that already finished its budget leaves nothing to train: copy only members in progress
        donors = [m for _, m in ranked[:k]
                  if self.search.records[self.latest[m]].epochs_done < self.search.setup.max_epochs]
        if not donors:
            return None
        donor_member = self.rng.choice(donors)
        return None if donor_member == member else self.search.records[self.latest[donor_member]]

    def _explore(self, params: dict[str, Any]) -> dict[str, Any]:
        space = self.search.setup.space
        for _ in range(20):
            fresh = space.sample(self.np_rng)
            config = {}
            for name, value in params.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    config[name] = fresh.get(name, value) if self.rng.random() < self.resample_probability else value
                else:
                    factor = self.rng.choice((0.8, 1.2))
                    config[name] = type(value)(round(value * factor)) if isinstance(value, int) else value * factor
            if not space.check(config):
                return config
        return dict(params)

    def finished(self, job: Job, record: TrialRecord) -> None:
        member = job.extra.get("member")
        if member is None or self.latest.get(member) != job.number:
            return
        if record.state in (TrialState.COMPLETE, TrialState.PAUSED) and record.epochs_done < self.search.setup.max_epochs:
            self.ready.append(member)
