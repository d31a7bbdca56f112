"""``python -m scratchcnn.tune``: search training options with Optuna, one run folder per trial.

Takes every option of ``scratchcnn.train`` (they stay fixed for all trials)
plus the search space and the study's settings; ``scratchcnn.apps.tune`` runs
the study. Rerunning the same command continues the study.

Examples
--------
    python -m scratchcnn.tune --dataset fashion --epochs 3 --train-limit 20000 --trials 30
    python -m scratchcnn.tune --dataset digits --epochs 5 --search lr=1e-4:1e-2:log --search batch_size=32,64,128
    python -m scratchcnn.tune --dataset fashion --workers 2 --storage postgresql://tune:secret@db-host/studies
"""
from __future__ import annotations

import sys

import kernels
from scratchcnn import train
from scratchcnn.apps import cli
from scratchcnn.apps.config import RunConfig, add_arguments
from scratchcnn.apps.tune import Spec, run_study
from scratchcnn.apps.tune.space import SEARCHABLE, default_space, load_space_file, parse_space
from scratchcnn.apps.tune.study import PRUNERS, SAMPLERS, default_storage
from scratchcnn.errors import ConfigError

__all__ = ["main", "build_parser", "spec_from_args"]

PROG = "python -m scratchcnn.tune"


# Trial counts: cli's bounded integer type (a million trials is far beyond any study run here).
_count = cli.int_between(0, 10**6)


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description="Search training options with Optuna: each trial is a "
                           "run folder of scratchcnn.train, ranked on validation accuracy; the best one is "
                           "scored on the test set. Every scratchcnn.train option is fixed for all trials.")
    add_arguments(p)  # the main job's options (RunConfig's fields), same names, types and help
    g = p.add_argument_group("search")
    g.add_argument("--search", action="append", default=[], metavar="NAME=LOW:HIGH[:log]|NAME=V1,V2,...",
                   help="a searched option (repeatable): e.g. lr=1e-4:1e-2:log, batch_size=32,64,128, "
                        f"augment=false,true; names: {', '.join(SEARCHABLE)}. Default: lr, batch_size, "
                        "lr_schedule, weight_decay, label_smoothing and augment, less those given as options")
    g.add_argument("--search-file", metavar="FILE.json",
                   help='the search space as JSON: {"lr": "1e-4:1e-2:log", "batch_size": [32, 64, 128]}')
    g.add_argument("--trials", type=_count, default=20, metavar="N",
                   help="trials this command runs, added to the study's (default: 20; 0: only report)")
    g.add_argument("--timeout", type=cli.positive_float, metavar="SECONDS",
                   help="start no new trial after this many seconds")
    g.add_argument("--study", metavar="NAME", help="the study's name (default: <dataset>-<model>)")
    g.add_argument("--study-dir", metavar="DIR", help="folder of the trials and reports (default: studies/NAME)")
    g.add_argument("--storage", metavar="URL",
                   help="database of the study, shared by every worker and machine (default: "
                        "sqlite:///DIR/study.db; many machines: postgresql://USER:PASSWORD@HOST/DATABASE)")
    g.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="default: tpe")
    g.add_argument("--pruner", choices=PRUNERS, default="median",
                   help="stops trials whose validation accuracy after an epoch is poor (default: median)")
    g.add_argument("--pruner-startup", type=_count, default=5, metavar="N",
                   help="median pruner: trials that must finish before it prunes (default: 5)")
    g.add_argument("--workers", type=cli.positive_int, default=1, metavar="K",
                   help="trials at once on this machine, each in its own process with 1/K of the cores "
                        "(default: 1)")
    return p


def _given_options(argv) -> set:
    """The searchable run options given explicitly on the command line (``--lr 3e-3``)."""
    unset = object()  # a default no argument can produce: what remains of it was not given
    parser = build_parser()
    parser.set_defaults(**{name: unset for name in SEARCHABLE})
    args = parser.parse_args(argv)
    return {name for name in SEARCHABLE if getattr(args, name) is not unset}


def spec_from_args(args, argv) -> Spec:
    """The study's ``Spec`` from the parsed arguments, checked.

    Raises
    ------
    ConfigError
        For a run option ``scratchcnn.train`` would refuse, no validation set, a
        malformed search space, or an option both fixed and searched.
    """
    config = train.config_from_args(args)
    fixed = config.to_dict()
    if config.val_fraction == 0:
        raise ConfigError("--val-fraction 0: a study ranks trials on validation accuracy, so it needs a "
                          "validation set")
    given = _given_options(argv)
    if args.search or args.search_file:
        space = parse_space((load_space_file(args.search_file) if args.search_file else []) + args.search)
        both = sorted(given & set(space))
        if both:
            raise ConfigError(f"--{both[0].replace('_', '-')} is given as a fixed option and also searched "
                              f"({space[both[0]].text()}); drop one")
    else:
        space = default_space(given)
    if not space:
        raise ConfigError("nothing to search: every default parameter is fixed on the command line; "
                          "give --search NAME=...")
    for param in space.values():  # a searched value the run would refuse with the fixed options, now
        for value in (param.choices or (param.low, param.high)):
            try:
                RunConfig.from_values({**fixed, param.name: value})
            except ConfigError as exc:
                raise ConfigError(f"--search {param.text()}: with {param.name}={value!r}: {exc}") from None
    name = args.study or f"{args.dataset}-{args.model}"
    study_dir = args.study_dir or f"studies/{name}"
    return Spec(study=name, storage=args.storage or default_storage(study_dir), study_dir=study_dir, fixed=fixed,
                space=[p.text() for p in space.values()], sampler=args.sampler, pruner=args.pruner,
                pruner_startup=args.pruner_startup, backend=args.backend)


def _main(argv) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.backend:
        kernels.get(args.backend)  # an unusable backend fails before anything starts
    try:
        import optuna  # noqa: F401  (the study's library, an optional extra)
    except ImportError:
        raise ConfigError("python -m scratchcnn.tune needs Optuna: pip install 'scratchcnn[tune]'") from None
    spec = spec_from_args(args, argv)
    return run_study(spec, args.trials, args.timeout, args.workers, storage_given=bool(args.storage))


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 130 interrupted)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
