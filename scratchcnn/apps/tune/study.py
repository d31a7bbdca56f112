"""Where a study lives and how it draws and stops trials: storage URL, sampler, pruner, the study itself.

A study is stored in a database that Optuna reaches through SQLAlchemy
(``optuna.storages.RDBStorage``): by default an SQLite file in the study folder
(``default_storage``), so one machine needs no server; machines that share a
study give the same ``postgresql://`` (or MySQL) URL. The study records the
fixed run options it was made with (``check_fixed``), so a rerun, or another
machine, cannot mix trials trained differently into one ranking.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

from scratchcnn.errors import ConfigError

__all__ = ["SAMPLERS", "PRUNERS", "STUDY_DB", "default_storage", "shown_url", "open_storage", "make_sampler",
           "make_pruner", "open_study", "check_fixed", "MACHINE_OPTIONS"]

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
STUDY_DB = "study.db"  # the default SQLite file in the study folder
# Run options that may differ between the machines of one study (paths and kernels of each machine).
MACHINE_OPTIONS = ("data_dir", "backend")
# A trial whose process died stops beating; after GRACE_SECONDS other workers mark it failed and
# run its parameters again once (Optuna's heartbeat; the interval costs one small write per trial).
HEARTBEAT_SECONDS, GRACE_SECONDS = 30, 120


def default_storage(study_dir) -> str:
    """``sqlite:///<study folder>/study.db`` (absolute, so worker processes find the same file)."""
    return f"sqlite:///{(Path(study_dir) / STUDY_DB).resolve()}"


def shown_url(url: str) -> str:
    """``url`` as messages show it: the password hidden (``postgresql://tune:***@host/db``)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given: it holds no recognisable password field
        return url


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_storage(url: str):
    """Connect to the study database at ``url`` (creating Optuna's tables if needed).

    Returns an ``optuna.storages.RDBStorage`` with a heartbeat (``HEARTBEAT_SECONDS``),
    so trials of dead workers are failed and retried. SQLite waits up to 60 s for a
    lock (several worker processes write to one file); PostgreSQL gives up
    connecting after 10 s.

    Raises
    ------
    ConfigError
        One line naming the URL (password hidden): not a database URL, an unknown
        database kind, a missing driver (with the package to install), or a
        database that cannot be reached or opened.
    """
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    import optuna

    try:
        parsed = make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise ConfigError(f"--storage {url!r}: not a database URL; expected e.g. sqlite:///study.db or "
                          "postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(f"--storage {shown}: an SQLite URL needs a file (sqlite:///path/study.db); "
                              "an in-memory database is not shared with worker processes")
        folder = Path(parsed.database).parent
        if not folder.is_dir():
            raise ConfigError(f"--storage {shown}: the folder {folder} does not exist")
        connect_args = {"timeout": 60}
    elif backend == "postgresql":
        connect_args = {"connect_timeout": 10}
    else:
        connect_args = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the heartbeat is "experimental" in Optuna's words
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": connect_args}, heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1))
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(f"--storage {shown}: unknown database kind {parsed.drivername!r}; expected "
                          "sqlite, postgresql or mysql") from None
    except ImportError as exc:
        # SQLAlchemy 2.1 reaches postgresql:// through psycopg (version 3); Optuna hides which module is missing.
        driver = {"postgresql": "'psycopg[binary]'", "mysql": "PyMySQL"}.get(backend, "its driver")
        raise ConfigError(f"--storage {shown}: the database driver is not installed "
                          f"({_first_line(exc.__cause__ or exc)}); pip install {driver}") from None
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError, OSError) as exc:
        raise ConfigError(f"--storage {shown}: cannot open the study database: {_first_line(exc)}") from None


def make_sampler(name: str, grid: dict | None, seed: int | None):
    """Optuna's sampler ``name`` (``SAMPLERS``); ``grid`` (``space.grid_space``) for "grid".

    TPE (Bergstra et al., 2011, "Algorithms for Hyper-Parameter Optimization") is
    the default; with several workers its "constant liar" counts running trials as
    bad, so that workers do not all try the same point.
    """
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(grid, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant_liar is "experimental" in Optuna's words
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(name: str, epochs: int, startup_trials: int):
    """Optuna's pruner ``name`` (``PRUNERS``), fed the validation accuracy after each epoch.

    median: stop a trial whose accuracy after an epoch is below the median of the
    finished trials' at that epoch, once ``startup_trials`` trials have finished.
    hyperband: Li et al., 2018 ("Hyperband"), Optuna's asynchronous version, with
    budgets from 1 epoch to ``epochs`` epochs in steps of 3x.
    """
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def _comparable(fixed: dict) -> dict:
    """The fixed options as the study stores them (JSON values, machine-specific ones left out)."""
    return json.loads(json.dumps({k: v for k, v in fixed.items() if k not in MACHINE_OPTIONS}))


def check_fixed(study, fixed: dict) -> None:
    """Record ``fixed`` in a new study; refuse a study made with other fixed options.

    Raises
    ------
    ConfigError
        Naming the first option whose value differs, both values, and the way out.
    """
    mine = _comparable(fixed)
    stored = study.user_attrs.get("fixed")
    if stored is None:
        study.set_user_attr("fixed", mine)
        return
    for key in sorted(set(stored) | set(mine)):
        if stored.get(key) != mine.get(key):
            raise ConfigError(f"study {study.study_name!r} was made with {key}={stored.get(key)!r}, this command "
                              f"gives {key}={mine.get(key)!r}; its trials would not be comparable (choose "
                              "another --study, or repeat the study's options)")


def open_study(name: str, storage, sampler, pruner):
    """Create the study ``name`` in ``storage``, or load it to continue (maximising validation accuracy).

    Raises
    ------
    ConfigError
        If a study of that name exists but minimises.
    """
    import optuna

    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                direction="maximize", load_if_exists=True)
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise ConfigError(f"study {name!r} in {shown_url(storage.url)} minimises its value; it was not made by "
                          "scratchcnn.tune (choose another --study)")
    return study
