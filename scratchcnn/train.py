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
from scratchcnn.data import DATASET_NAMES
from scratchcnn.errors import ConfigError, TrainingDiverged
from scratchcnn.files.loading import resolve_model_file
from scratchcnn.nn.presets import PRESETS
from scratchcnn.apps.run import DEFAULT_EPOCHS, RESUME_OPTIONS, RUN_OPTIONS, resume_run, start_run
from scratchcnn.engine.schedules import SCHEDULES
from scratchcnn.files.serialization import BEST_MODEL_FILE, CHECKPOINT_FILE
from scratchcnn.files.transfer import parse_layer_choice

__all__ = ["main", "build_parser", "config_from_args", "DEFAULT_EPOCHS"]

PROG = "python -m scratchcnn.train"


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description="Train a CNN written from scratch, evaluate it on the "
                           "test set and write metrics, plots and the model to a run folder.")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fashion", help="data set (default: fashion)")
    p.add_argument("--model", choices=sorted(PRESETS), default="classic",
                   help="network preset (default: classic, the two-convolution CNN)")
    p.add_argument("--epochs", type=cli.positive_int,
                   help=f"epochs to train (default per data set: {DEFAULT_EPOCHS})")
    p.add_argument("--batch-size", type=cli.positive_int, default=64, help="images per step (default: 64)")
    p.add_argument("--lr", type=cli.positive_float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="default: adam")
    p.add_argument("--momentum", type=cli.fraction, default=0.9, help="SGD momentum (default: 0.9)")
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=0.0, help="L2 penalty (default: 0)")
    p.add_argument("--seed", type=cli.seed, default=0, help="seed of weights, split, shuffles, dropout (default: 0)")
    p.add_argument("--backend", choices=sorted(kernels.BACKENDS),
                   help="kernel backend (default: $SCRATCHCNN_BACKEND, else the fastest available)")
    p.add_argument("--data-dir", help="folder holding the data set's files (searched first)")
    p.add_argument("--out", help="run folder (default: runs/<dataset>-<timestamp>)")
    p.add_argument("--train-limit", type=cli.positive_int, metavar="N",
                   help="use only the first N training images (quick runs)")
    p.add_argument("--val-fraction", type=cli.fraction, default=0.1,
                   help="share of training images held out for validation (default: 0.1)")
    p.add_argument("--augment", action="store_true",
                   help="random shifts of up to 2 pixels (and horizontal flips for fashion); cifar10: random "
                        "crops of the image padded by 4 pixels and horizontal flips")
    p.add_argument("--random-crop", action="store_true",
                   help="random crops of the image zero-padded by 1/8 of its side (4 pixels on 32x32, 3 on 28x28), "
                        "and horizontal flips for fashion and cifar10; replaces --augment's shifts")
    p.add_argument("--random-erasing", type=cli.probability, default=0.0, metavar="P",
                   help="erase a random rectangle (2-40%% of the image, aspect 0.3-3.3) of each image with "
                        "probability P, filled with noise (Zhong et al., 2020; the paper uses P = 0.5; default: 0)")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="constant",
                   help="default: constant; onecycle warms up to --lr over 30%% of the steps, then anneals")
    p.add_argument("--label-smoothing", type=cli.fraction, default=0.0, metavar="EPS",
                   help="train on targets (1-EPS)*onehot + EPS/classes (default: 0)")
    p.add_argument("--tta-flip", action="store_true",
                   help="also report the test accuracy averaged over each image and its mirror image")
    p.add_argument("--early-stopping", type=cli.positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a lower validation loss; restore the best weights")
    p.add_argument("--save-best", action="store_true", help=f"also keep the best-validation model as {BEST_MODEL_FILE}")
    p.add_argument("--init-from", metavar="RUN_DIR|MODEL.npz",
                   help="start from another run's model: every layer whose name and shapes match is loaded")
    p.add_argument("--init-layers", metavar="N|NAMES",
                   help="with --init-from, load only the first N layers (or these comma-separated layer names)")
    p.add_argument("--freeze", metavar="N|NAMES",
                   help="keep the first N layers (or these comma-separated layer names, e.g. conv2d_0,conv2d_1) "
                        "fixed; backpropagation stops at the first trainable layer")
    p.add_argument("--resume", metavar="RUN_DIR", help=f"continue the run in RUN_DIR from its {CHECKPOINT_FILE}")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args) -> dict:
    """The run options (``scratchcnn.apps.run.RUN_OPTIONS``) of a new run, checked.

    Raises
    ------
    ConfigError
        For ``--save-best``/``--early-stopping`` without
        a validation set, a malformed ``--freeze``/``--init-layers``, ``--init-layers``
        without ``--init-from``, or an ``--init-from`` that names no model.
    """
    config = {key: getattr(args, key) for key in RUN_OPTIONS}
    config["epochs"] = args.epochs or DEFAULT_EPOCHS[args.dataset]
    if args.augment and args.random_crop:
        raise ConfigError("--augment and --random-crop both move the image: give one of them")
    if args.init_layers and not args.init_from:
        raise ConfigError("--init-layers needs --init-from (the run or model file to load from)")
    for flag in ("init_layers", "freeze"):
        if getattr(args, flag) is not None:
            try:
                parse_layer_choice(getattr(args, flag))
            except ConfigError as exc:
                raise ConfigError(f"--{flag.replace('_', '-')}: {exc}") from None
    if args.init_from:
        resolve_model_file(args.init_from)  # a missing file fails before the data loads
    if (args.save_best or args.early_stopping) and args.val_fraction == 0:
        flag = "--save-best" if args.save_best else "--early-stopping"
        raise ConfigError(f"{flag} needs a validation set, but --val-fraction is 0")
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
        raise ConfigError(f"--{changed[0].replace('_', '-')} cannot be combined with --resume: a resumed run "
                          f"keeps the options stored in its {CHECKPOINT_FILE} (only --epochs, --data-dir, "
                          "--backend and --no-progress may be given)")


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
        print(f"interrupted at epoch {st.epoch + 1}, step {st.step}; checkpoint saved. "
              f"Continue with: {PROG} --resume {outcome.run_dir}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 3 diverged, 130 interrupted)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
