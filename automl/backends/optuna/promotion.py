"""Multi-fidelity searches in the embedded backend (asha, hyperband, bohb): trials pause at their rung
(:func:`automl.trials.algorithms.rungs_of`) and are promoted by ASHA's rule, resuming from their checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path

from automl.backends.optuna.jobs import Job, optuna_state
from automl.trials import rundir
from automl.trials.outcome import best_epoch, best_so_far, epoch_metrics, ranked
from automl.trials.records import TrialRecord, TrialState
from automl.trials.rundir import RESULT

log = logging.getLogger(__name__)


class Promotion:
    """The multi-fidelity part of :class:`automl.backends.optuna.search.Search` (a mixin: it reads the
    search's ``records``, ``rungs``, ``running``, ``setup``, ``study`` and ``lock``)."""

    # ---- multi-fidelity
    def _reached(self, rung: int, bracket: int) -> list[tuple[float, int]]:
        """(value at the rung, number) of the trials of a bracket that reached ``rung`` epochs."""
        # A trial's best value below a rung it has passed never changes (later epochs are past the
        # rung), so it is read from metrics.jsonl once: read at every decision, the scan cost one file
        # read per paused trial per free slot, quadratic in the study (benchmarks/scale.py, SCALING.md).
        cache = self.__dict__.setdefault("_rung_values", {})
        out = []
        for number, record in self.records.items():
            if self.rungs.bracket(number) != bracket or record.epochs_done < rung or record.state == TrialState.FAILED:
                continue
            if (number, rung) not in cache:
                _, cache[number, rung] = best_epoch(epoch_metrics(Path(record.trial_dir)), self.setup.monitor, upto=rung)
            value = cache[number, rung]
            if value is not None:
                out.append((value, number))
        return ranked(sorted(out, key=lambda vn: vn[1]), self.setup.monitor, value=lambda vn: vn[0])

    def _promotion(self) -> Job | None:
        running = {job.number for job in self.running.values()}
        for rung in reversed(self.rungs.ladder[:-1]):
            for bracket in range(self.rungs.n_brackets):
                reached = self._reached(rung, bracket)
                top = reached[: len(reached) // self.rungs.eta]
                for _, number in top:
                    record = self.records[number]
                    if record.state == TrialState.PAUSED and record.epochs_done == rung and number not in running:
                        return self._promote(record)
        return None

    def _final_promotion(self) -> Job | None:
        """The budget is spent and nothing runs: make sure the best trial trained to the full budget."""
        if any(r.state == TrialState.COMPLETE for r in self.records.values()):
            return None
        paused = [r for r in self.records.values() if r.state == TrialState.PAUSED and r.value is not None]
        if not paused:
            return None
        top_rung = max(r.epochs_done for r in paused)
        best = best_so_far((r for r in paused if r.epochs_done == top_rung), self.setup.monitor)
        return self._promote(best)

    def _promote(self, record: TrialRecord) -> Job:
        target = self.rungs.next_after(record.number, record.epochs_done)
        ckpt = rundir.checkpoint(record.trial_dir)
        self.progress.message(f"trial {record.number}: promoted from epoch {record.epochs_done} to {target}")
        return Job(record.number, dict(record.params), "promote", max_epochs=target,
                   resume_from=str(ckpt) if ckpt.exists() else None)

    def _finish_paused(self) -> None:
        """Trials left paused at a rung were never promoted: they end as pruned."""
        for record in list(self.records.values()):
            if record.state != TrialState.PAUSED:
                continue
            record.state = TrialState.PRUNED
            record.reason = f"stopped at rung {record.epochs_done} (not promoted)"
            rundir.write_json(Path(record.trial_dir) / RESULT, record.to_json())
            with self.lock:
                try:
                    self.study.tell(record.number, state=optuna_state(TrialState.PRUNED), skip_if_finished=True)
                except Exception as exc:  # a finished trial (already told) is fine
                    log.debug("tell pruned %s: %s", record.number, exc)
