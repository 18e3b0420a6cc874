"""The study's storage (a journal file in the run folder by default, or ``--storage``) and the study.

A study records which run folder it belongs to (the ``automl_run_dir`` study attribute) and whether
its creation finished (``automl_initialized``: the baseline and the warm-start/grid trials are
enqueued), so that ``--resume`` can finish a creation a crash cut short and refuse a study that
another run folder made in a shared ``--storage``.
"""

from __future__ import annotations

import contextlib

from automl.trials.records import SearchSetup
from automl.errors import AutomlError
from automl.fsutil import locked
from automl.trials.algorithms import make_pruner, make_sampler

RUN_DIR_ATTR = "automl_run_dir"
INITIALIZED_ATTR = "automl_initialized"


def open_storage(setup: SearchSetup):
    """The study storage: a journal file in the run folder unless ``--storage`` names another."""
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalFileBackend

    from automl.backends.optuna.journal import IndexedJournalStorage

    url = setup.storage
    if not url:
        return IndexedJournalStorage(JournalFileBackend(str(setup.run_dir / "journal")))
    if url.startswith("journal://") or url.endswith((".journal", ".log")):
        path = url.removeprefix("journal://")
        return IndexedJournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite:"):
        # RDBStorage looks for its tables, then creates the missing ones: two searches opening one
        # fresh database both create them ("table ... already exists"). A file lock beside the
        # database serializes that (an in-memory database has no file and no second opener).
        path = url.split(":///", 1)[1] if ":///" in url else ""
        lock = locked(path + ".lock") if path and path != ":memory:" else contextlib.nullcontext()
        with lock:
            # one writer (this process) + readers: a generous timeout covers `automl status` readers
            return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    if "://" in url:
        return RDBStorage(url)
    raise AutomlError(f"--storage '{url}': expected sqlite:///PATH, postgresql://..., or journal://PATH")


def check_storage(setup: SearchSetup):
    """Open ``--storage`` before the run folder exists: a URL no database driver reads, a database that
    cannot be reached or a journal path that cannot be written is one line now instead of a traceback
    after ``search.json`` was written (which would leave the name taken). Returns the storage, for
    :func:`check_name_free` and :func:`load_study` to go on with instead of opening it again; None
    without ``--storage`` (the journal file in the run folder is made with the folder)."""
    if not setup.storage:
        return None
    try:
        return open_storage(setup)
    except AutomlError:
        raise
    except Exception as exc:  # sqlalchemy's NoSuchModuleError/ArgumentError/OperationalError, OSError, ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise AutomlError(f"--storage '{setup.storage}': cannot open it ({type(exc).__name__}: {first}); "
                          "expected sqlite:///PATH, postgresql://USER@HOST/DB or journal://PATH") from None


def check_name_free(setup: SearchSetup, storage) -> None:
    """Refuse a new search whose name the shared ``storage`` (what :func:`check_storage` returned)
    already holds, before any folder exists. For new searches only: a resumed one is in it."""
    if storage is None:
        return
    if any(s.study_name == setup.name for s in storage.get_all_studies()):
        raise AutomlError(f"a study named '{setup.name}' already exists in {setup.storage} (another search's); "
                          f"pick another --name")


def load_study(setup: SearchSetup, storage=None):
    """``(study, fresh)``: the search's study; ``fresh`` when it still needs its first trials enqueued
    (a new search, or one whose creation a crash interrupted: ``--resume`` finishes it). ``storage``:
    the one :func:`check_storage` opened (None: opened here)."""
    import optuna

    storage = storage if storage is not None else open_storage(setup)
    directions = [m.direction for m in setup.objectives]
    sampler = make_sampler(setup.algorithm, setup.seed, setup.space, len(directions),
                           tpe_window=setup.algorithm_settings.get("tpe_window"))
    pruner = make_pruner(setup.algorithm, setup.algorithm_settings)
    where = setup.storage or setup.run_dir
    try:
        study = optuna.load_study(storage=storage, study_name=setup.name, sampler=sampler, pruner=pruner)
    except KeyError:
        study = None
    if study is None:
        try:
            study = optuna.create_study(storage=storage, study_name=setup.name, sampler=sampler, pruner=pruner,
                                        directions=directions, load_if_exists=False)
        except optuna.exceptions.DuplicatedStudyError:  # another search created it just now
            raise AutomlError(f"a study named '{setup.name}' already exists in {where}; pick another --name") from None
        study.set_user_attr(RUN_DIR_ATTR, str(setup.run_dir))
    elif not setup.resume:
        raise AutomlError(f"a study named '{setup.name}' already exists in {where}; "
                          f"add --resume to continue it or pick another --name")
    owner = study.user_attrs.get(RUN_DIR_ATTR)
    if setup.storage and owner is not None and owner != str(setup.run_dir):
        raise AutomlError(f"--resume: the study '{setup.name}' in {where} belongs to the search in {owner}, "
                          f"not to {setup.run_dir}")
    from optuna.trial import TrialState

    # a study of an earlier version has no mark; one that ran trials was initialized
    fresh = not study.user_attrs.get(INITIALIZED_ATTR) and all(
        t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
    return study, fresh


def mark_initialized(study) -> None:
    study.set_user_attr(INITIALIZED_ATTR, True)
