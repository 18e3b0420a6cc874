"""TAO's own AutoML (PyPI ``nvidia-tao-automl``) driving our trainer: the comparator of
``benchmarks/search_quality.py``.

The package is used as a library, through its public recommendation API, from its own virtualenv
(``benchmarks/.venv-tao`` by default, made and filled by :func:`ensure_tao_venv` with
``pip install nvidia-tao-automl==7.2.0``); none of its code is copied here. Its API (7.2.0)::

    from tao_automl import AutoML
    automl = AutoML(workspace, network, train_specs, settings={"algorithm": "bayesian" | "hyperband" | ...,
                    "metric": ..., "automl_max_recommendations": N, "automl_max_epochs": E,
                    "automl_reduction_factor": 3}, automl_hyperparameters=[dotted names],
                    search_schema=<TAO-dialect train schema dict>)
    while not automl.is_complete():
        for rec in automl.next_recommendation():      # tao_automl.types.Recommendation
            rec.assign_job_id(job_id)                  # what TAO's own runner does before launching
            ... train with rec.specs (dotted keys) ...  # rec.resume_from_job_id / resume_from_epoch on promotion
            automl.report_result(rec.id, metric_value, best_epoch=..., status="success" | "failure")
    automl.get_best()

Since that package lives in another venv, :mod:`tao_driver` runs there as a child process speaking
JSON lines (ask -> recommendations, tell <- metric), while this side (the project venv) trains every
recommendation with our trainer through the same code path as ``automl train -e SPEC --results-dir
DIR`` (in a long-lived :mod:`train_worker` process, or ``trainer="cli"``: one ``automl train --json``
process per job).

What TAO gets, so that only the brains differ from ``automl run``:

* the same base spec (``automl.search.controller.resolve_setup``: the template, ``--data``, the fixed
  ``KEY=VALUE`` overrides), our train schema (``search_schema``; it is TAO's dialect) and the same
  searched names as our compiled space (``automl_hyperparameters``); our extension
  ``automl_search_range`` (the searched window inside a valid range) is handed over as the leaf's
  ``minimum``/``maximum``, so both search the same box (:func:`tao_schema`); TAO reads ranges, options
  and ``math_cond`` its own way (learning rates sampled linearly, no log ``scale``, for instance);
* the metric ``val Precision at Rank 1`` (maximised): each job's best epoch value, as TAO's runner
  reads the job's result; a failed job is reported ``status="failure"`` (TAO's brains drop its point).

TAO has no baseline trial: its Bayesian brain starts from a random point (``automl run``'s trial 0
is the spec's defaults).

Budgets. ``bayesian`` gets ``automl_max_recommendations = budget``: ``budget`` configs, trained for the
spec's ``train.num_epochs`` each (Bayesian never changes the epochs). ``hyperband`` gets
``automl_max_epochs = train.num_epochs`` and TAO's ``automl_reduction_factor`` (3, as our asha) and
allocates epochs itself: every recommendation carries ``train.num_epochs = <rung epochs>``, a promoted
one also ``resume_from_job_id`` / ``resume_from_epoch``. Those requests are honoured literally, as
TAO's runner does it: the job trains with ``train.num_epochs`` = the rung's epochs (so the schedule
spans the rung, TAO's semantics) and a promoted job resumes the parent job's ``last.ckpt`` (Lightning
restores optimizer, scheduler and epoch) through ``train.resume_training_checkpoint_path``, so it
trains only the extra epochs; epochs consumed are the epochs each job actually ran (its
``metrics.jsonl`` lines). TAO's Hyperband runs a fixed set of brackets (e.g. 12 configs for 10 epochs,
3 for 6); to give it the same number of configs as the others, the adapter starts another pass (a
new session, as Hyperband's outer loop repeats) while fewer than ``budget`` configs were tried, and a
config TAO proposes once ``budget`` configs have been tried is not trained: it is reported to the
brain as failed (``over budget``) and so never promoted.

Constraints TAO cannot express. Our schema's ``"math_cond": "/ depends_on"`` (``train.batch_size`` a
multiple of ``dataset.num_instance``) is our extension; TAO samples the two independently and most
proposals violate it, which our P x K sampler refuses. ``invalid="repair"`` (default) moves a value
that breaks one of our space's constraints to the nearest valid one with the space's own repair
(``Param.repair``, what the baseline uses) and records it per job (``repaired``); ``invalid="fail"``
trains TAO's proposal as is (the job fails, TAO is told so, the config still counts against the budget).

The winner is ``AutoML.get_best()`` (for Hyperband TAO restricts it to the largest budget; across
passes the one with more epochs, then the better value), evaluated on the held-out unknown classes
with ``automl evaluate`` on the best checkpoint of its job.

Run alone (a 3-trial check)::

    .venv/bin/python benchmarks/peers/tao_automl.py --algorithm bayesian --budget 3 --data DIR \\
        --out /tmp/tao3 train.num_epochs=1
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so that `peers` imports when run as a script

from peers.common import (REPO, ChildDied, JsonLinesProcess, automl_command, best_so_far_curve,  # noqa: E402
                          child_env, evaluate_checkpoint, last_json_line, tail_line, tail_line_text)

from automl.reporting import read_metrics  # noqa: E402

PACKAGE = "nvidia-tao-automl"
VERSION = "7.2.0"
DEFAULT_VENV = REPO / "benchmarks" / ".venv-tao"
DRIVER = Path(__file__).with_name("tao_driver.py")
WORKER = Path(__file__).with_name("train_worker.py")
#: TAO brains that allocate epochs themselves (the adapter repeats their brackets up to the budget)
MULTI_FIDELITY = ("hyperband", "h", "bohb", "asha", "dehb", "hyperband_es", "hes")
REDUCTION_FACTOR = 3


class TaoUnavailable(RuntimeError):
    """The TAO package could not be installed or imported; the message is the exact error."""


# -- the TAO venv ----------------------------------------------------------------------------------
def installed_version(python: Path) -> str | None:
    try:
        proc = subprocess.run([str(python), "-c", "import tao_automl; print(tao_automl.__version__)"],
                              capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 and proc.stdout.strip() else None


def ensure_tao_venv(venv: Path = DEFAULT_VENV, version: str = VERSION, log: Callable[[str], None] = print) -> Path:
    """The TAO venv's python, after creating the venv and ``pip install nvidia-tao-automl==VERSION``
    when needed (pip's output: ``<venv>/install.log``). Raises :class:`TaoUnavailable` with the last
    line of the failing step's output."""
    venv = Path(venv)
    python = venv / "bin" / "python"
    if python.exists() and installed_version(python) == version:
        return python
    if not python.exists():
        log(f"creating {venv} (TAO AutoML's own venv)")
        proc = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise TaoUnavailable(f"python -m venv {venv} failed: {tail_line_text(proc.stderr + proc.stdout)}")
    log(f"pip install {PACKAGE}=={version} into {venv}")
    with open(venv / "install.log", "a") as out:
        proc = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                               f"{PACKAGE}=={version}"], stdout=out, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise TaoUnavailable(f"pip install {PACKAGE}=={version} failed: {tail_line(venv / 'install.log')}")
    got = installed_version(python)
    if got != version:
        probe = subprocess.run([str(python), "-c", "import tao_automl"], capture_output=True, text=True)
        raise TaoUnavailable(f"import tao_automl in {venv} gives version {got!r}, not {version}: "
                             f"{tail_line_text(probe.stderr) or 'no error printed'}")
    return python


# -- the two child processes -----------------------------------------------------------------------
class TaoDriver(JsonLinesProcess):
    def __init__(self, python: Path, log_path: Path):
        # TAO seeds numpy from hash(session id): a fixed hash seed makes a session id a seed
        # -P: the driver's folder holds this module, also named tao_automl; it must not shadow the package
        super().__init__([str(python), "-P", str(DRIVER)], stderr_path=log_path, name="TAO driver",
                         env=child_env(extra={"PYTHONHASHSEED": "0"}))

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        reply = self.request({"op": op, **fields})
        if "error" in reply:
            raise RuntimeError(f"tao_automl {op}: {reply['error']}")
        return reply

    def close(self, goodbye: Mapping[str, Any] | None = None, timeout: float = 30) -> None:
        super().close({"op": "close"} if goodbye is None else goodbye, timeout)


def slot_environment(tracking: bool = False) -> dict[str, str]:
    """The environment ``automl run --workers 1`` gives its one worker (its GPU, or on a CPU host its
    thread share and sleeping OpenMP threads: automl.trials.slots), so TAO's jobs train as fast."""
    from automl.trials.slots import make_slots, slot_env

    return slot_env(make_slots(1)[0], base=child_env(tracking))


class Trainer:
    """Trains one job spec into a results folder: ``{"ok", "result"|"error", "seconds"}``."""

    def __init__(self, mode: str, log_path: Path, *, model: str = "ml_recog", tracking: bool = False):
        if mode not in ("worker", "cli"):
            raise ValueError(f"trainer mode '{mode}': allowed: worker, cli")
        self.mode, self.log_path, self.model, self.tracking = mode, log_path, model, tracking
        self.env = slot_environment(tracking)
        self.worker: JsonLinesProcess | None = None

    def _start(self) -> JsonLinesProcess:
        worker = JsonLinesProcess([sys.executable, str(WORKER)], stderr_path=self.log_path, cwd=REPO,
                                  env=self.env, name="trainer worker")
        ready = worker.receive()
        if ready.get("op") != "ready":
            raise ChildDied(f"trainer worker did not start: {ready}")
        return worker

    def train(self, spec: Path, results_dir: Path) -> dict[str, Any]:
        started = time.time()
        if self.mode == "cli":
            cmd = automl_command("train", "--model", self.model, "-e", str(spec), "--results-dir", str(results_dir),
                                 "--json")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=REPO)
            (results_dir / "train.log").write_text(proc.stdout + proc.stderr)
            result = last_json_line(proc.stdout) if proc.returncode == 0 else None
            out = {"ok": True, "result": result} if result else \
                {"ok": False, "error": tail_line_text(proc.stderr) or f"exit status {proc.returncode}"}
        else:
            try:
                if self.worker is None:
                    self.worker = self._start()
                out = self.worker.request({"op": "train", "model": self.model, "spec": str(spec),
                                           "results_dir": str(results_dir)})
            except ChildDied as exc:  # segfault, OOM kill: the job failed, the next one gets a new worker
                self.worker = None
                out = {"ok": False, "error": str(exc)}
        out["seconds"] = round(time.time() - started, 3)
        return out

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close({"op": "exit"})
            self.worker = None


# -- the search ------------------------------------------------------------------------------------
def repair_config(space: Any, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Values that break a constraint of our space moved to the nearest valid value (parents first)."""
    out, changed = dict(config), {}
    ctx = dict(space.context)
    for p in space.params:
        if p.name not in out:
            continue
        if p.check(out[p.name], ctx):
            new = p.repair(out[p.name], ctx)
            changed[p.name] = [out[p.name], new]
            out[p.name] = new
        ctx[p.name] = out[p.name]
    return out, changed


def tao_schema(schema: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Our schema in the words TAO reads: ``automl_search_range: [lo, hi]`` (our extension: the window a
    search draws from, inside the valid ``[minimum, maximum]``) becomes that leaf's ``minimum`` /
    ``maximum``, so TAO searches the same box as ``automl run``. Returns the copy and the names changed."""
    out = copy.deepcopy(dict(schema))
    changed: list[str] = []

    def walk(props: dict[str, Any], prefix: str) -> None:
        for key, node in props.items():
            if not isinstance(node, dict):
                continue
            if isinstance(node.get("properties"), dict):
                walk(node["properties"], f"{prefix}{key}.")
            window = node.pop("automl_search_range", None)
            if isinstance(window, list) and len(window) == 2:
                node["minimum"], node["maximum"] = window
                changed.append(prefix + key)

    walk(out.get("properties") or {}, "")
    return out, changed


def _resolve(model: str, budget: int, spec_file: str | None, overrides: Sequence[str], data_dir: Path,
             seed: int) -> Any:
    """The setup `automl run` would resolve for the same arguments (base spec, space, max epochs)."""
    from automl.search.controller import resolve_setup

    with tempfile.TemporaryDirectory() as tmp:
        return resolve_setup(model=model, budget=budget, spec_file=spec_file, overrides=list(overrides),
                             data=str(data_dir), seed=seed, name="tao-probe", output=tmp,
                             command="benchmarks/peers/tao_automl.py")


def run_tao_search(*, algorithm: str, data_dir: Path, out_dir: Path, budget: int, seed: int = 0,
                   model: str = "ml_recog", spec_file: str | None = None, overrides: Sequence[str] = (),
                   venv: Path = DEFAULT_VENV, trainer: str = "worker", invalid: str = "repair",
                   tracking: bool = False, evaluate: bool = True,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """One TAO-driven search; returns (and writes to ``out_dir/result.json``) its record.

    Raises :class:`TaoUnavailable` when the package cannot be installed or imported."""
    from automl.plugins import get_trainer
    from automl.spec import dump_yaml

    if invalid not in ("repair", "fail"):
        raise ValueError(f"invalid='{invalid}': allowed: repair, fail")
    python = ensure_tao_venv(venv, log=log)
    started = time.time()  # the search's wall time: not the venv check / install
    out_dir = Path(out_dir).resolve()
    data_dir = Path(data_dir).resolve()
    if out_dir.exists():
        if not (out_dir / "search.json").is_file() and any(out_dir.iterdir()):
            raise ValueError(f"{out_dir} is not empty and holds no earlier TAO run (search.json): pick another folder")
        shutil.rmtree(out_dir)
    (out_dir / "jobs").mkdir(parents=True)
    (out_dir / "search.json").write_text(json.dumps({"peer": "tao_automl", "algorithm": algorithm}))  # ours to replace
    setup = _resolve(model, budget, spec_file, overrides, data_dir, seed)
    plugin = get_trainer(model)
    metric, mode = setup.monitor.metric, setup.monitor.mode
    base_spec, space = setup.base_spec, setup.space
    dump_yaml(base_spec, out_dir / "base_spec.yaml")
    schema, translated = tao_schema(json.loads(Path(plugin.schema_path()).read_text()))
    multi = algorithm.lower() in MULTI_FIDELITY
    settings = {"algorithm": algorithm, "metric": metric, "direction": "maximize" if mode == "max" else "minimize",
                "automl_max_recommendations": int(budget), "automl_max_epochs": int(setup.max_epochs),
                "automl_reduction_factor": REDUCTION_FACTOR}
    header = {"peer": "tao_automl", "package": f"{PACKAGE}=={VERSION}", "algorithm": algorithm, "budget": budget,
              "seed": seed, "model": model, "data": str(data_dir), "max_epochs": setup.max_epochs,
              "searched": space.names, "settings": settings, "trainer": trainer, "invalid": invalid,
              "overrides": list(overrides), "spec_file": spec_file, "search_range_as_bounds": translated}
    (out_dir / "search.json").write_text(json.dumps(header, indent=2))

    jobs: list[dict[str, Any]] = []
    configs: dict[tuple[int, int], dict[str, Any]] = {}  # (pass, rec id) -> state of that config
    tried = 0
    bests: list[dict[str, Any]] = []
    notes: list[str] = []
    work = Trainer(trainer, out_dir / "trainer.log", model=model, tracking=tracking)
    try:
        for pass_no in range(1000):
            driver = TaoDriver(python, out_dir / f"tao_pass{pass_no}.log")
            try:
                try:
                    info = driver.call("init", workspace=str(out_dir / "tao_workspace" / f"pass{pass_no}"),
                                       network=model, train_specs=base_spec, schema=schema,
                                       hyperparameters=list(space.names),
                                       settings={**settings, "session_id": f"seed{seed}-pass{pass_no}"})
                except RuntimeError as exc:
                    if multi and setup.max_epochs < REDUCTION_FACTOR:
                        raise RuntimeError(f"{exc} (TAO's {algorithm} makes no bracket when automl_max_epochs="
                                           f"{setup.max_epochs} < automl_reduction_factor={REDUCTION_FACTOR}: "
                                           f"use train.num_epochs >= {REDUCTION_FACTOR})") from exc
                    raise
                if pass_no == 0:
                    (out_dir / "tao_space.json").write_text(json.dumps(info, indent=2, default=str))
                    missing = sorted(set(space.names) - set(info.get("parameters", [])))
                    if missing:
                        notes.append(f"TAO does not search {', '.join(missing)}")
                new_in_pass, idle = 0, 0
                while True:
                    if len(jobs) > 20 * budget + 100:  # a brain that never completes must not loop forever
                        notes.append(f"pass {pass_no}: stopped after {len(jobs)} recommendations")
                        break
                    asked = driver.call("ask")
                    recs = asked["recs"]
                    if not recs:
                        if asked["complete"]:
                            break
                        idle += 1
                        if idle >= 3:
                            notes.append(f"pass {pass_no}: TAO gave no recommendation and is not complete; stopped")
                            break
                        continue
                    idle = 0
                    for rec in recs:
                        key = (pass_no, int(rec["id"]))
                        state = configs.get(key)
                        job: dict[str, Any] = {"pass": pass_no, "rec_id": rec["id"], "job_id": rec["job_id"],
                                               "resume_from_job_id": rec.get("resume_from_job_id"),
                                               "resume_from_epoch": rec.get("resume_from_epoch"),
                                               "tao_specs": rec["specs"]}
                        reason = None
                        if state is None and tried >= budget:
                            reason = f"over budget ({budget} configs tried): not trained"
                        elif state is not None and not state["trained"]:
                            reason = "its config was never trained: not resumed"
                        if reason:
                            configs.setdefault(key, {"trained": False})
                            driver.call("tell", id=rec["id"], value=None, status="failure")
                            jobs.append({**job, "state": "skipped", "reason": reason, "epochs": 0})
                            continue
                        if state is None:
                            tried += 1
                            new_in_pass += 1
                        job.update(_train_job(rec, pass_no, state, space, base_spec, invalid, work, out_dir))
                        configs[key] = {"trained": job["state"] == "complete", "job_dir": job["job_dir"],
                                        "epochs_done": (state or {}).get("epochs_done", 0) + job["epochs"]}
                        driver.call("tell", id=rec["id"], value=job["value"], best_epoch=job.get("best_epoch"),
                                    status="success" if job["state"] == "complete" else "failure")
                        jobs.append(job)
                        (out_dir / "jobs.json").write_text(json.dumps(jobs, indent=1, default=str))
                        log(f"  tao-{algorithm} pass {pass_no} job {rec['job_id']}: {job['state']} "
                            f"{metric}={_fmt(job['value'])} epochs={job['epochs']} ({job['seconds']:.0f} s)"
                            + (f" repaired {sorted(job['repaired'])}" if job.get("repaired") else ""))
                best = driver.call("best")
                if best.get("id") is not None:
                    state = configs.get((pass_no, int(best["id"])), {})
                    bests.append({**best, "pass": pass_no, "epochs_done": state.get("epochs_done", 0),
                                  "job_dir": str(out_dir / "jobs" / f"p{pass_no}-{best['job_id']}")})
            finally:
                driver.close()
            if not multi or tried >= budget or new_in_pass == 0:
                break
    finally:
        work.close()

    winner = max(bests, key=lambda b: (b["epochs_done"], b["value"] if mode == "max" else -b["value"]), default=None)
    heldout: dict[str, Any] = {"value": None, "error": "no winner (no job completed)"}
    if winner is not None:
        checkpoint = Path(winner["job_dir"]) / "checkpoints" / "best.ckpt"
        winner["checkpoint"] = str(checkpoint)
        if not evaluate:
            heldout = {"value": None, "error": "not evaluated (evaluate=False)"}
        elif checkpoint.is_file():
            heldout = evaluate_checkpoint(checkpoint, data_dir, model=model, log_path=out_dir / "heldout" / "log.txt")
        else:
            heldout = {"value": None, "error": f"winner's checkpoint is missing: {checkpoint}"}
    trained = [j for j in jobs if j["state"] != "skipped"]
    result = {
        "contestant": f"tao-{algorithm}", "peer": "tao_automl", "package": f"{PACKAGE}=={VERSION}",
        "algorithm": algorithm, "budget": budget, "seed": seed, "out_dir": str(out_dir),
        "metric": metric, "mode": mode, "max_epochs": setup.max_epochs,
        "configs_tried": tried, "passes": 1 + max((j["pass"] for j in jobs), default=0),
        "jobs_trained": len(trained), "jobs_failed": sum(1 for j in trained if j["state"] == "failed"),
        "jobs_skipped": len(jobs) - len(trained),
        "configs_repaired": sum(1 for j in trained if j.get("repaired") and j["resume_from_job_id"] is None),
        "epochs_total": sum(j["epochs"] for j in jobs),
        "best_val": winner["value"] if winner else None,
        "heldout": heldout.get("value"), "heldout_source": "automl evaluate (winner's best.ckpt)",
        "heldout_error": heldout.get("error"),
        "winner": winner, "curve": best_so_far_curve([Path(j["job_dir"]) for j in trained], metric, mode),
        "wall_s": round(time.time() - started, 2), "notes": notes, "error": None,
        "jobs": [{k: v for k, v in j.items() if k != "tao_specs"} for j in jobs],
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _train_job(rec: Mapping[str, Any], pass_no: int, state: Mapping[str, Any] | None, space: Any,
               base_spec: Mapping[str, Any], invalid: str, work: Trainer, out_dir: Path) -> dict[str, Any]:
    """Train one recommendation (a new config, or a promotion resuming its parent job)."""
    from automl.spec import apply_config, dump_yaml

    from automl.spec import get_dotted

    config = dict(rec["specs"])
    # the values the job will train with: TAO's, else the base spec's
    searched = {name: config[name] if name in config else get_dotted(base_spec, name) for name in space.names}
    repaired: dict[str, list[Any]] = {}
    problems = space.check(searched)
    if problems and invalid == "repair":
        fixed, repaired = repair_config(space, searched)
        config.update({name: fixed[name] for name in repaired})
    job_dir = out_dir / "jobs" / f"p{pass_no}-{rec['job_id']}"
    job_dir.mkdir(parents=True, exist_ok=True)
    note = None
    if state is not None:  # a promotion: resume the parent job's last checkpoint
        parent = Path(state["job_dir"])
        config["train.resume_training_checkpoint_path"] = str(parent / "checkpoints" / "last.ckpt")
        wanted = rec.get("resume_from_epoch")
        if wanted is not None and int(wanted) != int(state["epochs_done"]):
            note = f"TAO asked to resume from epoch {wanted}; the parent's last checkpoint is at epoch {state['epochs_done']}"
    spec = apply_config(base_spec, config)
    dump_yaml(spec, job_dir / "job_spec.yaml")
    outcome = work.train(job_dir / "job_spec.yaml", job_dir)
    result = outcome.get("result") or {}
    value = result.get("best_value") if outcome.get("ok") else None
    ok = outcome.get("ok") and value is not None
    return {"job_dir": str(job_dir), "config": {k: config[k] for k in sorted(config)}, "repaired": repaired,
            "problems": problems if invalid == "fail" else [], "num_epochs": spec.get("train", {}).get("num_epochs"),
            "state": "complete" if ok else "failed", "value": value, "best_epoch": result.get("best_epoch"),
            "epochs": len(read_metrics(job_dir)), "seconds": outcome.get("seconds", 0.0),
            "reason": None if ok else (outcome.get("error") or "no value reported"), "note": note}


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", default="bayesian", help="TAO brain: bayesian (default), hyperband, ...")
    parser.add_argument("--budget", type=int, default=20, help="configs to try (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", required=True, help="a folder made by `automl data make --task ml_recog`")
    parser.add_argument("--out", required=True, help="output folder (an earlier TAO run there is replaced)")
    parser.add_argument("--model", default="ml_recog")
    parser.add_argument("-e", "--spec", default=None, help="spec YAML every job starts from (as automl run -e)")
    parser.add_argument("--venv", default=str(DEFAULT_VENV), help=f"TAO venv (default {DEFAULT_VENV})")
    parser.add_argument("--trainer", choices=("worker", "cli"), default="worker")
    parser.add_argument("--invalid", choices=("repair", "fail"), default="repair")
    parser.add_argument("--tracking", action="store_true", help="MLflow tracking of every job (default off)")
    parser.add_argument("overrides", nargs="*", help="fixed spec overrides KEY=VALUE (e.g. train.num_epochs=6)")
    args = parser.parse_args(argv)
    try:
        result = run_tao_search(algorithm=args.algorithm, data_dir=Path(args.data), out_dir=Path(args.out),
                                budget=args.budget, seed=args.seed, model=args.model, spec_file=args.spec,
                                overrides=args.overrides, venv=Path(args.venv), trainer=args.trainer,
                                invalid=args.invalid, tracking=args.tracking, log=lambda m: print(m, file=sys.stderr))
    except TaoUnavailable as exc:
        print(f"TAO AutoML unavailable: {exc}", file=sys.stderr)
        print(json.dumps({"error": str(exc)}))
        return 3
    print(json.dumps({k: v for k, v in result.items() if k not in ("jobs", "curve")}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
