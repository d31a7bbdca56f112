"""``python -m scratchcnn.train``: train a CNN, evaluate it on the test set, write the run folder.

Examples
--------
    python -m scratchcnn.train --dataset fashion --epochs 5
    python -m scratchcnn.train --dataset digits --no-progress
    python -m scratchcnn.train --resume runs/fashion-20261123-120000
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np

import kernels
from scratchcnn import cli
from scratchcnn.augment import Augment
from scratchcnn.checkpoint import OPTIMIZERS, load_checkpoint, save_checkpoint
from scratchcnn.data import DATASET_NAMES, load_dataset
from scratchcnn.errors import ConfigError, ModelFileError, TrainingDiverged
from scratchcnn.losses import SoftmaxCrossEntropy
from scratchcnn.presets import PRESETS, build_model
from scratchcnn.report import evaluate_and_report
from scratchcnn.schedules import SCHEDULES
from scratchcnn.serialization import MODEL_FORMAT, read_archive, save_model
from scratchcnn.training import Trainer

__all__ = ["main", "build_parser", "DEFAULT_EPOCHS"]

PROG = "python -m scratchcnn.train"
DEFAULT_EPOCHS = {"fashion": 5, "mnist": 3, "cifar10": 10, "digits": 30}
CHECKPOINT, MODEL, BEST = "checkpoint.npz", "model.npz", "best_model.npz"
# Options stored in a run's config; on --resume they come from the checkpoint.
RUN_OPTIONS = ("dataset", "model", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
               "seed", "train_limit", "val_fraction", "augment", "lr_schedule", "early_stopping",
               "save_best", "data_dir")
# The only run options that --resume may change (besides --backend and --no-progress).
RESUME_OPTIONS = ("epochs", "data_dir")


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
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, split, shuffles, dropout (default: 0)")
    p.add_argument("--backend", choices=sorted(kernels.BACKENDS),
                   help="kernel backend (default: $SCRATCHCNN_BACKEND, else the fastest available)")
    p.add_argument("--data-dir", help="folder holding the data set's files (searched first)")
    p.add_argument("--out", help="run folder (default: runs/<dataset>-<timestamp>)")
    p.add_argument("--train-limit", type=cli.positive_int, metavar="N",
                   help="use only the first N training images (quick runs)")
    p.add_argument("--val-fraction", type=cli.fraction, default=0.1,
                   help="share of training images held out for validation (default: 0.1)")
    p.add_argument("--augment", action="store_true",
                   help="random shifts of up to 2 pixels (and horizontal flips for fashion)")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="constant", help="default: constant")
    p.add_argument("--early-stopping", type=cli.positive_int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a lower validation loss; restore the best weights")
    p.add_argument("--save-best", action="store_true", help=f"also keep the best-validation model as {BEST}")
    p.add_argument("--resume", metavar="RUN_DIR", help=f"continue the run in RUN_DIR from its {CHECKPOINT}")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _config_from_args(args) -> dict:
    config = {key: getattr(args, key) for key in RUN_OPTIONS}
    config["epochs"] = args.epochs or DEFAULT_EPOCHS[args.dataset]
    if args.weight_decay < 0:
        raise ConfigError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if (args.save_best or args.early_stopping) and args.val_fraction == 0:
        flag = "--save-best" if args.save_best else "--early-stopping"
        raise ConfigError(f"{flag} needs a validation set, but --val-fraction is 0")
    return config


def _resume(args, parser):
    """The run folder, model, TrainState and config of ``--resume RUN_DIR``.

    Raises
    ------
    ConfigError
        If another run option is given (the run keeps its own), the folder holds no
        checkpoint, or ``--epochs`` is below the epochs already completed.
    ModelFileError
        If the checkpoint cannot be loaded or its config lacks a run option.
    """
    run_dir = Path(args.resume)
    changed = [key for key in RUN_OPTIONS + ("out",)
               if key not in RESUME_OPTIONS and getattr(args, key) != parser.get_default(key)]
    if changed:
        raise ConfigError(f"--{changed[0].replace('_', '-')} cannot be combined with --resume: a resumed run "
                          f"keeps the options stored in its {CHECKPOINT} (only --epochs, --data-dir, "
                          "--backend and --no-progress may be given)")
    if not (run_dir / CHECKPOINT).exists():
        raise ConfigError(f"--resume {run_dir}: no {CHECKPOINT} in that folder")
    model, state, config = load_checkpoint(run_dir / CHECKPOINT, backend=args.backend or None)
    missing = [key for key in RUN_OPTIONS if key not in config]
    if missing:
        raise ModelFileError(f"{run_dir / CHECKPOINT}: the run's config lacks {', '.join(missing)}")
    if args.data_dir:
        config["data_dir"] = args.data_dir
    if args.epochs:
        if args.epochs < state.epoch:
            raise ConfigError(f"--epochs {args.epochs}: the run in {run_dir} has already completed "
                              f"{state.epoch} epochs")
        config["epochs"] = args.epochs
    return run_dir, model, state, config


def _new_run_dir(args, config) -> Path:
    run_dir = Path(args.out or f"runs/{config['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (run_dir / CHECKPOINT).exists() or (run_dir / MODEL).exists():
        raise ConfigError(f"run folder {run_dir} already holds a run; continue it with --resume {run_dir} "
                          "or choose another --out")
    return run_dir  # created once the data has loaded, so that a failed start leaves no empty folder


def _optimizer(config):
    if config["optimizer"] == "sgd":
        return OPTIMIZERS["SGD"](config["lr"], momentum=config["momentum"],
                                 weight_decay=config["weight_decay"])
    return OPTIMIZERS["Adam"](config["lr"], weight_decay=config["weight_decay"])


def _augment(config, splits):
    if not config["augment"]:
        return None
    if splits.input_shape[0] > 1:
        # 32x32 colour: random crops of the image padded by 4 black pixels, and mirror images (He et al.,
        # 2016, "Deep Residual Learning", Section 4.2, CIFAR-10); fill is black after normalisation.
        black = tuple(-m / s for m, s in zip(splits.mean, splits.std))
        return Augment(max_shift=4, flip=True, fill=black)
    background = float(splits.x_train.min())  # the normalised value of a 0 (black) pixel
    return Augment(max_shift=2, flip=config["dataset"] == "fashion", fill=background)


def _main(argv) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend:
        kernels.get(args.backend)  # an unusable backend (cuda without a GPU) fails before anything loads
    log = print
    if args.resume:
        run_dir, model, state, config = _resume(args, parser)
        if (state.epoch >= config["epochs"] or state.stopped_early) and (run_dir / "metrics.json").exists():
            log(f"{run_dir} is complete ({state.epoch} epochs); nothing to do (to train longer, pass a "
                f"larger --epochs; to re-compute its test metrics: python -m scratchcnn.evaluate {run_dir})")
            return 0
        log(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}")
    else:
        config = _config_from_args(args)
        run_dir = _new_run_dir(args, config)
        state = None
    splits = load_dataset(config["dataset"], config["data_dir"], val_fraction=config["val_fraction"],
                          train_limit=config["train_limit"], seed=config["seed"],
                          progress=not args.no_progress)
    run_dir.mkdir(parents=True, exist_ok=True)
    if state is None:
        model = build_model(config["model"], splits.input_shape, len(splits.class_names),
                            seed=config["seed"], backend=args.backend)
        model.compile(_optimizer(config), SoftmaxCrossEntropy())
    config["backend"] = model.K.name
    normalization = {"mean": splits.mean, "std": splits.std, "scale": 255.0 if config["dataset"] != "digits" else 16.0}
    log(f"{config['dataset']}: {len(splits.y_train)} train, {len(splits.y_val)} validation, "
        f"{len(splits.y_test)} test images; backend {model.K.name}; run folder {run_dir}")
    log(model.summary())

    def on_epoch_end(trainer):
        save_checkpoint(run_dir / CHECKPOINT, model, trainer.state, config)

    def on_best(trainer):
        if config["save_best"] or config["early_stopping"]:
            save_model(run_dir / BEST, model, splits.class_names, normalization, dataset=config["dataset"],
                       epoch=trainer.state.epoch)

    trainer = Trainer(model, batch_size=config["batch_size"], seed=config["seed"], base_lr=config["lr"],
                      lr_schedule=config["lr_schedule"], augment=_augment(config, splits),
                      early_stopping=config["early_stopping"], progress=not args.no_progress,
                      on_epoch_end=on_epoch_end, on_best=on_best, log=log, state=state)
    if state is not None and config["early_stopping"] and (run_dir / BEST).exists():
        _, arrays = read_archive(run_dir / BEST, MODEL_FORMAT)
        trainer.best_weights = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    try:
        trainer.fit(splits.x_train, splits.y_train, config["epochs"], (splits.x_val, splits.y_val))
    except TrainingDiverged as exc:
        kept = (f"the last good checkpoint is {run_dir / CHECKPOINT}" if (run_dir / CHECKPOINT).exists()
                else "no epoch completed, so there is no checkpoint")
        print(f"{PROG}: error: {exc}; {kept}", file=sys.stderr)
        return cli.EXIT_DIVERGED
    if trainer.state.interrupted:
        save_checkpoint(run_dir / CHECKPOINT, model, trainer.state, config)
        print(f"interrupted at epoch {trainer.state.epoch + 1}, step {trainer.state.step}; checkpoint saved. "
              f"Continue with: {PROG} --resume {run_dir}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    st = trainer.state
    save_model(run_dir / MODEL, model, splits.class_names, normalization, dataset=config["dataset"],
               epoch=st.epoch)
    info = {"dataset": config["dataset"], "model": config["model"], "epochs": config["epochs"],
            "epochs_completed": st.epoch, "stopped_early": st.stopped_early, "best_epoch": st.best_epoch,
            "batch_size": config["batch_size"], "lr": config["lr"], "seed": config["seed"],
            "backend": model.K.name, "train_images": len(splits.y_train), "val_images": len(splits.y_val),
            "test_images": len(splits.y_test), "train_seconds": st.train_seconds,
            "train_images_per_second": st.train_images / st.train_seconds if st.train_seconds else None,
            "config": config, "parameters": model.num_params(), "machine": _machine()}
    result = evaluate_and_report(run_dir, model, splits, st.history, info, log=log)
    log(f"test accuracy {result['test_accuracy']:.4f}  test loss {result['test_loss']:.4f}  "
        f"({st.train_seconds:.1f} s of training, {info['train_images_per_second'] or 0:.0f} images/s); "
        f"wrote {run_dir}")
    return 0


def _machine() -> dict:
    import os

    import numba

    return {"python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()}


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 3 diverged, 130 interrupted)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
