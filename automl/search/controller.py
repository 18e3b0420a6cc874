"""The search controller: resolve a command into a :class:`SearchSetup`, write the run folder header,
run a backend, promote the winner.

    schema -> SearchSpace -> (backend: trial config -> spec -> worker -> trainer) -> records -> best/
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automl.trials.records import Progress, SearchSetup, TrialRecord, TrialState
from automl.errors import AutomlError
from automl.plugins import Monitor, get_trainer
from automl.testing.killpoints import kill_point
from automl.trials import rundir
from automl.trials.runlock import RunLock
from automl.trials import algorithms
from automl.trials.algorithms import canonical
from automl.search.model_space import compile_model_space, pop_tao_settings, tao_switches
from automl.trials.outcome import ranked
from automl.trials.slots import make_slots, parse_gpus
from automl.spec import apply_config, dump_yaml, get_dotted, load_yaml, parse_overrides

DEFAULT_MAX_FAILURES = 5


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_objectives(text: str | None, plugin: Any) -> list[Monitor]:
    """``"val Precision at Rank 1:max,latency_ms:min"`` -> monitors (metric names may contain spaces)."""
    if not text:
        return [plugin.monitor]
    out = []
    for part in text.split(","):
        metric, sep, mode = part.strip().rpartition(":")
        if not sep or mode not in ("max", "min") or not metric.strip():
            raise AutomlError(f"--objectives '{part.strip()}': expected METRIC:max or METRIC:min, "
                              f"e.g. '{plugin.monitor.metric}:{plugin.monitor.mode},latency_ms:min'")
        known = {plugin.monitor.metric, *plugin.metrics}
        if metric.strip() not in known:
            raise AutomlError(f"--objectives: model '{plugin.name}' reports no metric '{metric.strip()}'; "
                              f"available: {', '.join(sorted(known))}")
        out.append(Monitor(metric.strip(), mode))  # type: ignore[arg-type]
    return out




def resolve_setup(
    *,
    model: str,
    budget: int | None = None,
    spec_file: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    algorithm: str | None = None,
    workers: int | None = None,
    gpus: str | None = None,
    gpus_per_trial: int = 1,
    trials_per_gpu: int = 1,
    storage: str | None = None,
    seed: int | None = None,
    name: str | None = None,
    output: str | Path = "runs",
    data: str | None = None,
    resume: bool = False,
    time_budget: float | None = None,
    trial_timeout: float | None = None,
    objectives: str | None = None,
    warm_start: str | None = None,
    keep_checkpoints: bool = False,
    max_failures: int = DEFAULT_MAX_FAILURES,
    settings: Mapping[str, Any] | None = None,
    command: str | None = None,
    space_source: str = "project",
) -> SearchSetup:
    """Turn the CLI's arguments into a validated :class:`SearchSetup` (nothing written yet)."""
    plugin = get_trainer(model)
    output = Path(output).resolve()
    if resume and not name:
        raise AutomlError("--resume needs --name NAME (the search to continue)")
    check_run_options(name=name, budget=budget, time_budget=time_budget, trial_timeout=trial_timeout,
                      max_failures=max_failures)
    user_overrides = parse_overrides(overrides)

    if resume:
        return _resumed_setup(output / name, model=model, budget=budget, workers=workers, gpus=gpus,
                              gpus_per_trial=gpus_per_trial, trials_per_gpu=trials_per_gpu, time_budget=time_budget,
                              trial_timeout=trial_timeout, keep_checkpoints=keep_checkpoints,
                              max_failures=max_failures, command=command)

    cli_settings = dict(settings or {})
    base_spec, settings, data_keys = _base_spec(model, plugin, spec_file, user_overrides, cli_settings, data, output)
    searched, keep_checkpoints = tao_switches(plugin, settings, keep_checkpoints, spec_file, space_source)

    algorithm, budget, max_epochs, settings = _algorithm_settings(algorithm, budget, base_spec, settings, cli_settings)
    objectives_list = parse_objectives(objectives, plugin)
    algorithms.check_objectives(algorithm, len(objectives_list))

    slots = make_slots(workers, parse_gpus(gpus), gpus_per_trial, trials_per_gpu)
    name = name or f"{model}-{algorithm}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = output / name
    if (run_dir / rundir.SEARCH_JSON).exists():
        raise AutomlError(f"{run_dir} already holds a search; add --resume to continue it or pick another --name")

    # every check passed: only now make the demo data (a cache under --output, kept for later runs)
    base_spec, data_dir = data_keys()
    # values the user fixed on the command line or in the spec are not searched
    space = compile_model_space(plugin, base_spec, user_overrides, searched)

    warm_configs: list[dict[str, Any]] = []
    if warm_start:
        warm_configs = warm_start_configs(warm_start, output, space, settings["warm_start_top"])

    return SearchSetup(
        name=name, run_dir=run_dir, model=model, base_spec=base_spec, space=space,
        space_path=run_dir / rundir.SPACE_JSON, algorithm=algorithm, algorithm_settings=settings,
        budget_trials=budget, time_budget_s=time_budget, workers=len(slots), slots=slots,
        gpus=sorted({g for s in slots for g in s["gpus"]}), gpus_per_trial=gpus_per_trial,
        trials_per_gpu=trials_per_gpu, seed=seed, objectives=objectives_list, max_epochs=max_epochs,
        storage=storage, trial_timeout_s=trial_timeout, max_consecutive_failures=max_failures,
        warm_start_configs=warm_configs, resume=False, keep_checkpoints=keep_checkpoints,
        command=command or " ".join(shlex.quote(a) for a in sys.argv), data_dir=data_dir)


def _algorithm_settings(algorithm: str | None, budget: int | None, base_spec: Mapping[str, Any],
                        settings: dict[str, Any], cli_settings: Mapping[str, Any]) -> tuple[str, int, int, dict[str, Any]]:
    """(algorithm, budget, max_epochs, settings): the spec's TAO settings and ``--setting`` resolved,
    every value typed and in range."""
    algorithm = canonical(str(algorithm or settings.pop("algorithm", None) or "tpe"))
    settings.pop("algorithm", None)
    if budget is None:
        budget = _whole_number("budget", settings.pop("budget", 10), "TAO's automl_max_recommendations")
    settings.pop("budget", None)
    if budget < 1:
        raise AutomlError(f"--budget {budget}: must be at least 1")
    max_epochs = get_dotted(base_spec, "train.num_epochs")
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise AutomlError(f"train.num_epochs = {max_epochs!r} in the spec: must be a positive integer")
    algorithms.check_setting_names([k for k in cli_settings if k not in ("algorithm", "budget", "max_epochs")], algorithm)
    return algorithm, budget, max_epochs, algorithms.resolve_settings(algorithm, settings, max_epochs=max_epochs,
                                                                      budget=budget)


def _resumed_setup(run_dir: Path, *, model: str, budget: int | None, workers: int | None, gpus: str | None,
                   gpus_per_trial: int, trials_per_gpu: int, time_budget: float | None, trial_timeout: float | None,
                   keep_checkpoints: bool, max_failures: int, command: str | None) -> SearchSetup:
    """The setup of the search in ``run_dir`` as ``search.json`` recorded it; the budget, slots, time
    limits and failure limit may change on resume."""
    from automl.space import SearchSpace

    header = rundir.read_search(run_dir)
    if header.get("model") != model:
        raise AutomlError(f"--resume: search '{run_dir.name}' ran model '{header.get('model')}', not '{model}'")
    space = SearchSpace.from_json(json.loads((run_dir / rundir.SPACE_JSON).read_text()))
    budget = int(budget if budget is not None else header["budget_trials"])
    # a search.json of an earlier version may lack settings added since: fill their defaults
    settings = algorithms.resolve_settings(header["algorithm"], header.get("algorithm_settings", {}),
                                           max_epochs=int(header["max_epochs"]), budget=budget)
    slots = make_slots(workers or header.get("workers"), parse_gpus(gpus), gpus_per_trial, trials_per_gpu)
    return SearchSetup(
        name=run_dir.name, run_dir=run_dir, model=model, base_spec=load_yaml(run_dir / rundir.BASE_SPEC), space=space,
        space_path=run_dir / rundir.SPACE_JSON, algorithm=header["algorithm"], algorithm_settings=settings,
        budget_trials=budget, time_budget_s=time_budget if time_budget is not None else header.get("time_budget_s"),
        workers=len(slots), slots=slots, gpus=sorted({g for s in slots for g in s["gpus"]}),
        gpus_per_trial=gpus_per_trial, trials_per_gpu=trials_per_gpu, seed=header.get("seed"),
        objectives=[Monitor(o["metric"], o["mode"]) for o in header["objectives"]],
        max_epochs=int(header["max_epochs"]), storage=header.get("storage"),
        trial_timeout_s=trial_timeout if trial_timeout is not None else header.get("trial_timeout_s"),
        max_consecutive_failures=max_failures, resume=True,
        keep_checkpoints=keep_checkpoints or bool(header.get("keep_checkpoints")),
        command=command or " ".join(shlex.quote(a) for a in sys.argv),
        data_dir=Path(header["data_dir"]) if header.get("data_dir") else None)


def _base_spec(model: str, plugin: Any, spec_file: str | None, user_overrides: dict[str, Any], cli_settings: dict[str, Any],
               data: str | None, output: Path) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(base spec, settings, data): the template, the user's spec and its TAO AutoML settings
    (``--setting`` wins) and the ``key=value`` overrides, checked against the model's schema as
    ``automl train`` checks them; ``data()`` then adds the data keys (``--data``, or the demo data,
    generated on first use) and returns ``(spec, data folder)``."""
    template = plugin.spec_template("train")
    base_spec = load_yaml(template)
    user_spec: dict[str, Any] = load_yaml(spec_file) if spec_file else {}
    tao = pop_tao_settings(user_spec, user_overrides, str(spec_file or "the overrides"))
    base_spec = deep_merge(base_spec, user_spec)
    settings = {**tao, **cli_settings}
    if "max_epochs" in settings:
        user_overrides.setdefault("train.num_epochs", _whole_number("max_epochs", settings.pop("max_epochs"),
                                                                    "TAO's automl_max_epochs"))
    spec = apply_config(base_spec, user_overrides)
    plugin.check_spec(spec, str(spec_file or template), user_overrides)
    refuse_resume_checkpoint(spec)
    data_dir = Path(data).resolve() if data else None
    if data_dir is not None and not data_dir.is_dir():
        raise AutomlError(f"--data {data}: no such folder (make one with `automl data make --task {model} --out DIR`)")

    def with_data() -> tuple[dict[str, Any], Path | None]:
        if data_dir is not None:
            keys = plugin.data_keys_for(data_dir, spec)
        elif not spec_file:
            keys = plugin.demo_data(output / ".demo_data" / model)
        else:
            return spec, None
        # the user's overrides still win over the data keys
        return apply_config(apply_config(spec, keys), user_overrides), data_dir or output / ".demo_data" / model

    return spec, settings, with_data


def _whole_number(name: str, value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise AutomlError(f"{name} = {value!r} ({what}): expected a whole number")
    try:
        number = float(value)
    except ValueError:
        raise AutomlError(f"{name} = {value!r} ({what}): expected a whole number") from None
    if not number.is_integer():
        raise AutomlError(f"{name} = {value!r} ({what}): expected a whole number")
    return int(number)


def refuse_resume_checkpoint(spec: Mapping[str, Any]) -> None:
    """A search cannot honour ``train.resume_training_checkpoint_path``: it is how the search itself
    resumes paused trials from their own checkpoints, and every trial starts from its own sampled
    config. Refused with the ways to get what the user likely meant."""
    path = get_dotted(spec, "train.resume_training_checkpoint_path")
    if path not in (None, "") and str(path).strip():
        raise AutomlError(f"train.resume_training_checkpoint_path = {path!r}: a search trains every trial from its "
                          "own start and resumes paused trials from their own checkpoints, so it cannot start them "
                          "all from one checkpoint; continue that training with `automl train` (or `automl run "
                          "--automl off`), or seed a search with an earlier one's best configs with --warm-start NAME")


def check_run_options(*, name: str | None, budget: int | None, time_budget: float | None,
                      trial_timeout: float | None, max_failures: int) -> None:
    """The options of ``automl run`` that need no spec, checked before anything is read or written."""
    if name is not None and (name in ("", ".", "..") or Path(name).name != name or "\\" in name or "\0" in name):
        raise AutomlError(f"--name {name!r}: a search name is one folder name under --output (no '/', '..' or "
                          "empty name); use --output to choose where the folder goes")
    if budget is not None and budget < 1:
        raise AutomlError(f"--budget {budget}: must be at least 1")
    for option, value in (("--time-budget", time_budget), ("--trial-timeout", trial_timeout)):
        if value is not None and not (value > 0 and value != float("inf")):
            raise AutomlError(f"{option} {value:g}: must be a positive number of seconds")
    if max_failures < 0:
        raise AutomlError(f"--max-failures {max_failures}: must be 0 (never stop) or more")


def warm_start_configs(other: str, output: Path, space: Any, top: int = 3) -> list[dict[str, Any]]:
    """The best ``top`` configs of an earlier run that are valid in this space."""
    other_dir = rundir.find_run(other, output)
    header = rundir.read_search(other_dir)
    first = (header.get("objectives") or [{"metric": "", "mode": "max"}])[0]
    done = [r for r in rundir.read_trials(other_dir) if r.state == TrialState.COMPLETE and r.value is not None]
    out = []
    for record in ranked(done, Monitor(first["metric"], first["mode"])):
        config = {k: v for k, v in record.params.items() if k in set(space.names)}
        if config and not space.check({**space.defaults(), **config}) and config not in out:
            out.append({**space.defaults(), **config})
        if len(out) >= int(top):
            break
    if not out:
        raise AutomlError(f"--warm-start {other}: that search has no completed trial valid in this space")
    return out


def write_header(setup: SearchSetup, backend: str | None = None, options: Mapping[str, Any] | None = None) -> None:
    """The run folder's header. ``search.json`` is written last (atomically): a folder with it holds
    everything ``--resume`` reads, and a crash before it leaves a folder a plain rerun takes over."""
    setup.run_dir.mkdir(parents=True, exist_ok=True)
    header = setup.to_json() | {"created": time.time()}
    path = setup.run_dir / rundir.SEARCH_JSON
    if setup.resume and path.exists():
        old = rundir.read_json(path)
        header = old | {"budget_trials": setup.budget_trials, "resumed": old.get("resumed", 0) + 1,
                        "last_command": setup.command}
    else:
        dump_yaml(setup.base_spec, setup.run_dir / rundir.BASE_SPEC)
        rundir.write_json(setup.space_path, setup.space.to_json())
    header["backend"], header["backend_options"] = backend, dict(options or {})
    rundir.write_json(path, header)
    kill_point("header")


def resumed_backend(setup: SearchSetup, backend: str | None,
                    options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """The backend and its options (Ray's ``address``): as given, else as the resumed search recorded
    them, else the embedded Optuna backend. A search cannot change backend on resume: each keeps its
    trials in its own storage (an Optuna study, a Tune experiment)."""
    recorded: dict[str, Any] = {}
    if setup.resume:
        recorded = rundir.read_json_or(setup.run_dir / rundir.SEARCH_JSON, {}) or {}
    was = recorded.get("backend")
    if backend and was and backend != was:
        raise AutomlError(f"--resume: search '{setup.name}' ran with --backend {was}, not {backend}")
    options = {**(recorded.get("backend_options") or {}), **{k: v for k, v in (options or {}).items() if v}}
    backend = backend or was or "optuna"
    if options.get("address") and backend != "ray":
        raise AutomlError(f"--address is an option of --backend ray (not {backend})")
    return backend, options


def prepare_backend(setup: SearchSetup, backend: str | None,
                    options: Mapping[str, Any] | None) -> tuple[Any, str, dict[str, Any]]:
    """(engine, backend name, its options): the backend that will run ``setup``, after it checked
    everything it can refuse (algorithm, storage, cluster), before the run folder exists."""
    from automl.trials.registry import get_backend

    backend, options = resumed_backend(setup, backend, options)
    engine = get_backend(backend, **options)
    algorithms.check_backend(setup.algorithm, backend)
    engine.check(setup)
    return engine, backend, options


def run_search(setup: SearchSetup, *, backend: str | None = None, backend_options: Mapping[str, Any] | None = None,
               tracker: Any = None, progress: Progress | None = None,
               reeval_top: int | str = 0, reeval_seeds: int = 2, promote_best: bool = True,
               tracking_uri: str | None = None, tracking: bool = True, force_champion: bool = False,
               prepared: tuple[Any, str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the search end to end and return the summary. ``reeval_top``: a count or ``"auto"`` (what
    the CLI passes by default; see :func:`automl.search.promote.reeval_count`). ``backend_options`` go to
    the backend's constructor (``address`` for Ray). ``prepared``: what :func:`prepare_backend` returned
    for this setup when the caller already checked it (the CLI does, before it says anything), so
    the backend is not made and checked again; then ``backend`` and ``backend_options`` are unused."""
    from automl.search.promote import finish_search
    from automl.tracking import create_tracker

    started = time.time()
    progress = progress or Progress()
    engine, backend, options = prepared or prepare_backend(setup, backend, backend_options)
    # one controller per run folder, for its whole life (README "One controller per search")
    with RunLock(setup.run_dir):
        if not setup.resume and (setup.run_dir / rundir.SEARCH_JSON).exists():  # another run, just now
            raise AutomlError(f"{setup.run_dir} already holds a search; add --resume to continue it or pick another --name")
        write_header(setup, backend, options)
        tracker = tracker or create_tracker(setup.run_dir, tracking_uri, enabled=tracking,
                                            force_champion=force_champion)
        tracker.start_search(setup.run_dir, {
            "name": setup.name, "model": setup.model, "algorithm": setup.algorithm, "budget": setup.budget_trials,
            "backend": backend, "seed": setup.seed, "command": setup.command, "monitor": setup.monitor.metric,
            "mode": setup.monitor.mode, "resumed": setup.resume, "base_spec": str(setup.run_dir / rundir.BASE_SPEC),
            "space": str(setup.space_path), "workers": setup.workers, "slots": setup.slots})
        kill_point("tracking_started")
        records: list[TrialRecord] = []
        try:
            records = engine.run(setup, tracker, progress)
        finally:
            progress.stop()
            if not records:  # interrupted: keep what is on disk visible in summary.csv
                on_disk = rundir.read_trials(setup.run_dir)
                if on_disk:
                    rundir.write_summary_csv(setup.run_dir, on_disk)
        kill_point("trials_done")
        return finish_search(setup, records, tracker=tracker, progress=progress, stop_reason=engine.stop_reason,
                             reeval_top=reeval_top, reeval_seeds=reeval_seeds, promote_best=promote_best,
                             started=started)


#: the results folder of an ``--automl off`` run, for the ranks Lightning's DDP launcher starts
PLAIN_RUN_ENV = "AUTOML_PLAIN_RUN_DIR"


def plain_training_spec(*, model: str, spec_file: str | None, overrides: list[str], output: str | Path,
                        name: str | None, data: str | None) -> tuple[dict[str, Any], str, Path]:
    """``--automl off``: the spec (template, the user's spec file, ``--data`` or the demo data, then
    overrides), its source for error messages, and the results folder. ``automl.cli.actions.train_plain``
    trains it, as it does for ``automl train``."""
    from automl.training.devices import is_launched_worker

    plugin = get_trainer(model)
    output = Path(output).resolve()
    check_run_options(name=name, budget=None, time_budget=None, trial_timeout=None, max_failures=0)
    template = plugin.spec_template("train")
    spec = load_yaml(template)
    if spec_file:
        user = load_yaml(spec_file)
        pop_tao_settings(user, {}, str(spec_file))
        spec = deep_merge(spec, user)
    pinned = parse_overrides(overrides)
    # checked as `automl train` checks it (train_plain checks again with the data keys), before the
    # demo data is made
    plugin.check_spec(apply_config(spec, pinned), str(spec_file or template), pinned)
    if data:
        spec = apply_config(spec, plugin.data_keys_for(Path(data), apply_config(spec, parse_overrides(overrides))))
    elif not spec_file:
        spec = apply_config(spec, plugin.demo_data(output / ".demo_data" / model))
    spec = apply_config(spec, pinned)
    results = output / (name or f"{model}-train-{time.strftime('%Y%m%d-%H%M%S')}")
    if is_launched_worker() and os.environ.get(PLAIN_RUN_ENV):
        results = Path(os.environ[PLAIN_RUN_ENV])  # a DDP rank re-running this command, seconds after rank 0
    else:
        os.environ[PLAIN_RUN_ENV] = str(results)  # inherited by the ranks Lightning launches
    return spec, str(spec_file or template), results
