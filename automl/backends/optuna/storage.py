"""The study's storage (a journal file in the run folder by default, or ``--storage``) and the study.
"""

from __future__ import annotations

from automl.trials.records import SearchSetup
from automl.errors import AutomlError
from automl.trials.algorithms import make_pruner, make_sampler


def open_storage(setup: SearchSetup):
    """The study storage: a journal file in the run folder unless ``--storage`` names another."""
    import optuna
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend

    url = setup.storage
    if not url:
        return JournalStorage(JournalFileBackend(str(setup.run_dir / "journal")))
    if url.startswith("journal://") or url.endswith((".journal", ".log")):
        path = url.removeprefix("journal://")
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        # one writer (this process) + readers: a generous timeout covers `automl status` readers
        return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if "://" in url:
        return RDBStorage(url)
    raise AutomlError(f"--storage '{url}': expected sqlite:///PATH, postgresql://..., or journal://PATH")


def check_storage(setup: SearchSetup) -> None:
    """Open ``--storage`` once, before the run folder exists: a URL no database driver reads, a
    database that cannot be reached or a journal path that cannot be written is one line now instead
    of a traceback after ``search.json`` was written (which would leave the name taken)."""
    if not setup.storage:
        return  # the journal file in the run folder, made with the folder
    try:
        open_storage(setup)
    except AutomlError:
        raise
    except Exception as exc:  # sqlalchemy's NoSuchModuleError/ArgumentError/OperationalError, OSError, ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise AutomlError(f"--storage '{setup.storage}': cannot open it ({type(exc).__name__}: {first}); "
                          "expected sqlite:///PATH, postgresql://USER@HOST/DB or journal://PATH") from None


def load_study(setup: SearchSetup, *, create: bool):
    import optuna

    storage = open_storage(setup)
    directions = [m.direction for m in setup.objectives]
    sampler = make_sampler(setup.algorithm, setup.seed, setup.space, len(directions),
                           tpe_window=setup.algorithm_settings.get("tpe_window"))
    pruner = make_pruner(setup.algorithm, setup.algorithm_settings)
    try:
        if create:
            return optuna.create_study(storage=storage, study_name=setup.name, sampler=sampler, pruner=pruner,
                                       directions=directions, load_if_exists=False)
        return optuna.load_study(storage=storage, study_name=setup.name, sampler=sampler, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        raise AutomlError(f"a study named '{setup.name}' already exists in {setup.storage or setup.run_dir}; "
                          f"add --resume to continue it or pick another --name") from None
    except KeyError:
        raise AutomlError(f"no study named '{setup.name}' in {setup.storage or setup.run_dir} to resume") from None
