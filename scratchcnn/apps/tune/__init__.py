"""Hyperparameter search with Optuna: ``python -m scratchcnn.tune`` (the tool) runs studies of training runs.

- ``space``: the ``--search`` syntax and the default search space;
- ``study``: storage URLs (SQLite by default, PostgreSQL for many machines), samplers, pruners;
- ``trial``: one trial, an ordinary run folder trained by ``scratchcnn.apps.run``;
- ``workers``: trials in this process or in K worker processes sharing the cores;
- ``results``: the table of trials, plots, the best trial's test score and command line;
- ``runner``: a study from start to report.

The worker processes run ``python -m scratchcnn.apps.tune`` (``__main__``).
"""
from .runner import run_study
from .space import DEFAULT_SPACE, SEARCHABLE
from .workers import Spec

__all__ = ["run_study", "Spec", "DEFAULT_SPACE", "SEARCHABLE"]
