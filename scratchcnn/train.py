"""``python -m scratchcnn.train``: train a CNN, evaluate it on the test set, write the run folder.

This module only parses and checks the arguments; ``scratchcnn.apps.run`` does the run
(``start_run``, or ``resume_run`` for ``--resume``).

Examples
--------
    python -m scratchcnn.train --dataset fashion --epochs 5
    python -m scratchcnn.train --dataset digits --no-progress
    python -m scratchcnn.train --resume runs/fashion-20261123-120000
    python -m scratchcnn.train --dataset mnist --init-from runs/fashion-20261123-120000 --freeze 6
"""
from __future__ import annotations

import sys

import kernels
from scratchcnn.apps import cli
from scratchcnn.apps.config import DEFAULT_EPOCHS, RESUME_OPTIONS, RUN_OPTIONS, RunConfig, add_arguments
from scratchcnn.apps.run import resume_run, start_run
from scratchcnn.errors import ConfigError, TrainingDiverged
from scratchcnn.files.loading import resolve_model_file
from scratchcnn.files.serialization import CHECKPOINT_FILE

__all__ = ["main", "build_parser", "config_from_args", "DEFAULT_EPOCHS"]

PROG = "python -m scratchcnn.train"


def build_parser() -> cli.ArgumentParser:
    """The tool's arguments: one flag per ``RunConfig`` field (``config.add_arguments``), then the
    options that are not the run's (``--out``, ``--resume``, ``--no-progress``)."""
    p = cli.ArgumentParser(prog=PROG, description="Train a CNN written from scratch, evaluate it on the "
                           "test set and write metrics, plots and the model to a run folder.")
    add_arguments(p)
    p.add_argument("--out", help="run folder (default: runs/<dataset>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help=f"continue the run in RUN_DIR from its {CHECKPOINT_FILE}")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args) -> RunConfig:
    """The checked ``RunConfig`` of a new run (``RunConfig.from_args``), and its ``--init-from`` file found.

    Raises
    ------
    ConfigError
        For a combination of options that does not work (``RunConfig.from_values``),
        or an ``--init-from`` that names no model.
    """
    config = RunConfig.from_args(args)
    if config.init_from:
        resolve_model_file(config.init_from)  # a missing file fails before the data loads
    return config


def _check_resume_args(argv) -> None:
    """A resumed run keeps the options stored in its checkpoint: refuse any other run option given,
    even one given with its default value (``--dataset fashion`` on a digits run)."""
    unset = object()  # a default no argument can produce: what remains of it was not given
    given = build_parser()
    given.set_defaults(**{key: unset for key in RUN_OPTIONS + ("out",)})
    changed = [key for key, value in vars(given.parse_args(argv)).items()
               if key in RUN_OPTIONS + ("out",) and key not in RESUME_OPTIONS and value is not unset]
    if changed:
        allowed = ", ".join(f"--{key.replace('_', '-')}" for key in RESUME_OPTIONS)
        raise ConfigError(f"--{changed[0].replace('_', '-')} cannot be combined with --resume: a resumed run "
                          f"keeps the options stored in its {CHECKPOINT_FILE} (only {allowed} "
                          "and --no-progress may be given)")


def _main(argv) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend:
        kernels.get(args.backend)  # an unusable backend (cuda without a GPU) fails before anything loads
    try:
        if args.resume:
            _check_resume_args(argv)
            outcome = resume_run(args.resume, epochs=args.epochs, data_dir=args.data_dir, backend=args.backend,
                                 progress=not args.no_progress)
        else:
            outcome = start_run(config_from_args(args), out=args.out, backend=args.backend,
                                progress=not args.no_progress)
    except TrainingDiverged as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return cli.EXIT_DIVERGED
    if outcome.status == "interrupted":
        st = outcome.state
        how = "terminated (SIGTERM)" if outcome.signal_name == "SIGTERM" else "interrupted"
        print(f"{how} at epoch {st.epoch + 1}, step {st.step}; checkpoint saved. "
              f"Continue with: {PROG} --resume {outcome.run_dir}", file=sys.stderr)
        return cli.EXIT_TERMINATED if outcome.signal_name == "SIGTERM" else cli.EXIT_INTERRUPTED
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 3 diverged, 130 interrupted by
    Ctrl-C, 143 by SIGTERM; both after saving a checkpoint of the last finished step)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
