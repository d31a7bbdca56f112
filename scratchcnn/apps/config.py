"""One typed run configuration: the options of a training run, checked once, wherever they come from.

``RunConfig`` holds every option of ``python -m scratchcnn.train`` that a run keeps
(the run's checkpoints and ``metrics.json`` store ``RunConfig.to_dict()``). It is
built in two ways, through the same checks:

- ``RunConfig.from_args(args)``: a new run, from the parsed command line;
- ``RunConfig.from_stored(options, source)``: a resumed run, from the options stored
  in its checkpoint (untrusted JSON): a crafted value gets one line naming the
  file, the option, what was found and what was expected (``ModelFileError``).

Adding an option is one change here: a field with ``option(...)`` (default, kind,
help text; the command-line flag is derived from the field's name), plus, if it
constrains other options, a line in ``RunConfig._check_combination``. ``add_arguments``
puts it on the command line, ``from_stored`` reads it from checkpoints (absent from
an older checkpoint means its default), and the run reads it as ``config.<name>``.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields, replace

import kernels
from scratchcnn.apps import cli
from scratchcnn.data.folder import DEFAULT_TEST_FRACTION
from scratchcnn.data.registry import DATASET_NAMES
from scratchcnn.engine.schedules import SCHEDULES
from scratchcnn.errors import ConfigError, ModelFileError
from scratchcnn.files.transfer import parse_layer_choice
from scratchcnn.nn.presets import PRESETS

__all__ = ["RunConfig", "Kind", "option", "add_arguments", "DEFAULT_EPOCHS", "RESUME_OPTIONS",
           "RUN_OPTIONS", "DEFAULT_MOMENTUM", "FOLDER"]

DEFAULT_EPOCHS = {"fashion": 5, "mnist": 3, "cifar10": 10, "digits": 30, "folder": 10}
FOLDER = "folder"  # --dataset folder: your own images in --data-dir (scratchcnn.data.folder)
MIN_SIDE, MAX_SIDE = 4, 1024  # --image-size: pixels per side
DEFAULT_MOMENTUM = 0.9  # SGD's momentum when --momentum is not given


@dataclass(frozen=True)
class Kind:
    """What values an option takes: ``expected`` (words for messages), ``test`` (a typed value
    passes?), ``convert`` (command-line text -> typed value; ``None`` for a flag)."""

    expected: str
    test: object
    convert: object = None
    choices: tuple = ()
    stored: object = None  # a JSON value that passed ``test`` -> the typed value (a list -> a tuple)

    def accepts(self, value) -> bool:
        return self.test(value)

    def parse(self, text: str):
        """argparse ``type``: the typed value of ``text``, or ``argparse.ArgumentTypeError``."""
        try:
            value = self.convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {text!r}") from None
        if not self.test(value):
            shown = value if isinstance(value, (int, float)) else repr(text)  # "(2000, 2000)" would not be what was typed
            raise argparse.ArgumentTypeError(f"expected {self.expected}, got {shown}")
        return value


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def choice(values) -> Kind:
    values = tuple(values)
    return Kind(f"one of {', '.join(values)}", lambda v: isinstance(v, str) and v in values, str, values)


POSITIVE_INT = Kind("a positive integer", lambda v: _is_int(v) and v >= 1, int)
POSITIVE_FLOAT = Kind("a positive number", lambda v: _is_number(v) and v > 0, float)
NON_NEGATIVE_FLOAT = Kind("a finite number >= 0", lambda v: _is_number(v) and v >= 0, float)
FRACTION = Kind("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1, float)
PROBABILITY = Kind("a probability in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1, float)
SEED = Kind("an integer in [0, 2**32)", lambda v: _is_int(v) and 0 <= v < 2**32, int)
FLAG = Kind("true or false", lambda v: isinstance(v, bool))
TEXT = Kind("a non-empty text", lambda v: isinstance(v, str) and v.strip() != "", str)
# On the command line a path whose component exceeds NAME_MAX is a usage error (cli.path names ENAMETOOLONG).
OPEN_FRACTION = Kind("a number in (0, 1)", lambda v: _is_number(v) and 0 < v < 1, float)
CHANNELS = Kind("1 (grey) or 3 (colour)", lambda v: _is_int(v) and v in (1, 3), int)


def _image_size(text: str) -> tuple:
    """``N`` (N x N pixels) or ``HxW`` -> (h, w); ValueError for anything else."""
    sides = tuple(int(part) for part in text.lower().split("x"))
    if len(sides) not in (1, 2):
        raise ValueError(text)
    return sides * 2 if len(sides) == 1 else sides


IMAGE_SIZE = Kind(f"N or HxW with sides from {MIN_SIDE} to {MAX_SIDE} pixels",
                  lambda v: (isinstance(v, (tuple, list)) and len(v) == 2
                             and all(_is_int(side) and MIN_SIDE <= side <= MAX_SIDE for side in v)),
                  _image_size, stored=tuple)
PATH = Kind("a non-empty path", lambda v: isinstance(v, str) and v != "" and "\0" not in v, cli.path)


def option(default, kind: Kind, help: str, *, optional: bool = False, metavar: str | None = None,
           resume: bool = False, required: bool = False, cli: bool = True):
    """A ``RunConfig`` field. ``optional``: None is allowed (and means "not given");
    ``resume``: ``--resume`` may change it; ``required``: a checkpoint must store it
    (the options of the first checkpoint format; an option added later is read as its
    default from older checkpoints); ``cli``: it has a command-line flag."""
    meta = {"kind": kind, "help": help, "optional": optional, "metavar": metavar, "resume": resume,
            "required": required, "cli": cli}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """The options of a training run (see the module docstring); every field checked on construction
    by ``from_args``/``from_stored``/``from_values``. ``epochs`` None means ``DEFAULT_EPOCHS``
    of the data set; ``momentum`` None means ``DEFAULT_MOMENTUM`` (SGD only)."""

    dataset: str = option("fashion", choice(DATASET_NAMES + (FOLDER,)),
                          "data set (default: fashion); folder: your own images in --data-dir, one sub-folder per "
                          "class (or train/ and test/ folders holding them)", required=True)
    model: str = option("classic", choice(sorted(PRESETS)),
                        "network preset (default: classic, the two-convolution CNN)", required=True)
    epochs: int | None = option(None, POSITIVE_INT, f"epochs to train (default per data set: {DEFAULT_EPOCHS})",
                                optional=True, resume=True, required=True)
    batch_size: int = option(64, POSITIVE_INT, "images per step (default: 64)", required=True)
    lr: float = option(1e-3, POSITIVE_FLOAT, "learning rate (default: 1e-3)", required=True)
    optimizer: str = option("adam", choice(("adam", "sgd")), "default: adam", required=True)
    momentum: float | None = option(None, FRACTION, f"SGD momentum (default: {DEFAULT_MOMENTUM}; SGD only)",
                                    optional=True, required=True)
    weight_decay: float = option(0.0, NON_NEGATIVE_FLOAT, "L2 penalty (default: 0)", required=True)
    seed: int = option(0, SEED, "seed of weights, split, shuffles, dropout (default: 0)", required=True)
    train_limit: int | None = option(None, POSITIVE_INT, "use only the first N training images (quick runs)",
                                     optional=True, metavar="N", required=True)
    val_fraction: float = option(0.1, FRACTION, "share of training images held out for validation (default: 0.1)",
                                 required=True)
    augment: bool = option(False, FLAG, "random shifts of up to 2 pixels (and horizontal flips for fashion); "
                           "cifar10: random crops of the image padded by 4 pixels and horizontal flips",
                           required=True)
    random_crop: bool = option(False, FLAG, "random crops of the image zero-padded by 1/8 of its side (4 pixels "
                               "on 32x32, 3 on 28x28), and horizontal flips for fashion and cifar10; replaces "
                               "--augment's shifts")
    random_erasing: float = option(0.0, PROBABILITY, "erase a random rectangle (2-40%% of the image, aspect "
                                   "0.3-3.3) of each image with probability P, filled with noise (Zhong et al., "
                                   "2020; the paper uses P = 0.5; default: 0)", metavar="P")
    lr_schedule: str = option("constant", choice(SCHEDULES),
                              "default: constant; onecycle warms up to --lr over 30%% of the steps, then anneals",
                              required=True)
    early_stopping: int | None = option(None, POSITIVE_INT, "stop after PATIENCE epochs without a lower "
                                        "validation loss; restore the best weights", optional=True,
                                        metavar="PATIENCE", required=True)
    save_best: bool = option(False, FLAG, "also keep the best-validation model as best_model.npz", required=True)
    data_dir: str | None = option(None, PATH, "folder holding the data set's files (searched first); with "
                                  "--dataset folder, the image folder", optional=True, resume=True, required=True)
    image_size: tuple | None = option(None, IMAGE_SIZE, "--dataset folder: resize every image to this (default: "
                                      "chosen from the images, printed)", optional=True, metavar="N|HxW")
    channels: int | None = option(None, CHANNELS, "--dataset folder: 1 grey or 3 colour (default: 1 if every "
                                  "image is grey, else 3)", optional=True, metavar="{1,3}")
    test_fraction: float = option(DEFAULT_TEST_FRACTION, OPEN_FRACTION, "--dataset folder without a test/ folder: "
                                  "share of the images held out as the (stratified) test set (default: "
                                  f"{DEFAULT_TEST_FRACTION})")
    strict: bool = option(False, FLAG, "--dataset folder: stop at the first file that cannot be used instead of "
                          "skipping it")
    init_from: str | None = option(None, PATH, "start from another run's model: every layer whose name and "
                                   "shapes match is loaded", optional=True, metavar="RUN_DIR|MODEL.npz")
    init_layers: str | None = option(None, TEXT, "with --init-from, load only the first N layers (or these "
                                     "comma-separated layer names)", optional=True, metavar="N|NAMES")
    freeze: str | None = option(None, TEXT, "keep the first N layers (or these comma-separated layer names, e.g. "
                                "conv2d_0,conv2d_1) fixed; backpropagation stops at the first trainable layer",
                                optional=True, metavar="N|NAMES")
    label_smoothing: float = option(0.0, FRACTION, "train on targets (1-EPS)*onehot + EPS/classes (default: 0)",
                                    metavar="EPS")
    tta_flip: bool = option(False, FLAG, "also report the test accuracy averaged over each image and its "
                            "mirror image")
    backend: str | None = option(None, choice(sorted(kernels.BACKENDS)), "kernel backend (default: "
                                 "$SCRATCHCNN_BACKEND, else the fastest available)", optional=True, resume=True)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_values(cls, values: dict, source: str | None = None) -> "RunConfig":
        """A checked config from ``{option: typed value}`` (missing options take their defaults).

        ``source`` names where the values come from (a checkpoint's path) for messages;
        None means the command line (messages then name the flags).

        Raises
        ------
        ConfigError (``source`` None) or ModelFileError (a stored source)
            One line naming the option, the value found and what was expected, or the
            combination of options that does not work.
        """
        error = ConfigError if source is None else ModelFileError
        names = {f.name: f for f in fields(cls)}
        unknown = [key for key in values if key not in names]
        if unknown:
            raise error(f"{_where(source)}unknown option {unknown[0]!r}")
        for name, value in values.items():
            meta = names[name].metadata
            if value is None and meta["optional"]:
                continue
            if not meta["kind"].accepts(value):
                raise error(f"{_where(source)}{_label(name, source)} is {value!r}, expected {meta['kind'].expected}"
                            + (" or null" if meta["optional"] and source is not None else ""))
        typed = {name: names[name].metadata["kind"].stored(value)
                 for name, value in values.items() if value is not None and names[name].metadata["kind"].stored}
        config = cls(**{**values, **typed})
        if config.epochs is None:
            config = replace(config, epochs=DEFAULT_EPOCHS[config.dataset])
        problem = config._check_combination()
        if problem:
            raise error(f"{_where(source)}{problem}")
        return config

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunConfig":
        """The config of a new run from ``build_parser().parse_args()`` (the attributes named as the fields)."""
        return cls.from_values({f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})

    @classmethod
    def from_stored(cls, stored, source) -> "RunConfig":
        """The config stored in a checkpoint (``to_dict()`` of the run), checked like the command line's.

        Raises
        ------
        ModelFileError
            "<source>: ..." for a stored value that is not an object, lacks an option every
            checkpoint has, names an unknown option, or holds a value the command line
            would refuse (one line: option, found, expected).
        """
        if not isinstance(stored, dict):
            raise ModelFileError(f"{source}: the run's options are {type(stored).__name__}, expected an object")
        missing = [f.name for f in fields(cls) if f.metadata["required"] and f.name not in stored]
        if missing:
            raise ModelFileError(f"{source}: the run's options lack {', '.join(missing)}")
        values = dict(stored)
        # Checkpoints written before --momentum became SGD-only stored the default 0.9 with Adam too.
        if values.get("optimizer") == "adam" and values.get("momentum") == DEFAULT_MOMENTUM:
            values["momentum"] = None
        return cls.from_values(values, source=source)

    def _check_combination(self) -> str | None:
        """What is wrong with this combination of options (flag names), or None."""
        if self.dataset == FOLDER and not self.data_dir:
            return "--dataset folder needs --data-dir FOLDER (a folder of class folders, or train/ and test/)"
        if self.dataset != FOLDER:
            given = [flag for flag, value in (("--image-size", self.image_size is not None),
                                              ("--channels", self.channels is not None), ("--strict", self.strict),
                                              ("--test-fraction", self.test_fraction != DEFAULT_TEST_FRACTION))
                     if value]
            if given:
                return f"{given[0]} applies to --dataset folder only (the {self.dataset} images are fixed)"
        if self.init_layers is not None and not self.init_from:
            return "--init-layers needs --init-from (the run or model file to load from)"
        for name in ("init_layers", "freeze"):
            if getattr(self, name) is not None:
                try:
                    parse_layer_choice(getattr(self, name))
                except ConfigError as exc:
                    return f"{_label(name, None)}: {exc}"
        if self.augment and self.random_crop:
            return "--augment and --random-crop both move the image: give one of them"
        if self.momentum is not None and self.optimizer != "sgd":
            return f"--momentum applies to --optimizer sgd only; {self.optimizer} has no momentum setting"
        needs_validation = "--save-best" if self.save_best else "--early-stopping" if self.early_stopping else None
        if needs_validation and self.val_fraction == 0:
            return f"{needs_validation} needs a validation set, but --val-fraction is 0"
        if needs_validation and self.train_limit is not None:
            held_out = int(round(self.val_fraction * self.train_limit))  # as data.load_dataset splits
            if held_out == 0:
                least = max(1, math.floor(0.5 / self.val_fraction))
                while int(round(self.val_fraction * least)) == 0:
                    least += 1
                return (f"{needs_validation} needs a validation set, but --train-limit {self.train_limit} leaves no "
                        f"validation image ({self.val_fraction:g} x {self.train_limit} images rounds to 0); use a "
                        f"--train-limit of at least {least} (or a larger --val-fraction)")
        return None

    # -- use ----------------------------------------------------------------------------
    @property
    def sgd_momentum(self) -> float:
        """The momentum SGD uses: ``momentum``, or ``DEFAULT_MOMENTUM`` when not given."""
        return DEFAULT_MOMENTUM if self.momentum is None else self.momentum

    def to_dict(self) -> dict:
        """The options as JSON-able values (what checkpoints and ``metrics.json`` store)."""
        return asdict(self)

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes``, checked again (``--resume --epochs/--data-dir``, the backend used)."""
        return type(self).from_values({**self.to_dict(), **changes})


def _label(name: str, source) -> str:
    return f"--{name.replace('_', '-')}" if source is None else f"option {name!r}"


def _where(source) -> str:
    return "" if source is None else f"{source}: "


# Options stored in a run's config; on --resume they come from the checkpoint.
RUN_OPTIONS = tuple(f.name for f in fields(RunConfig))
# The only run options that a resumed run may change (besides progress bars).
RESUME_OPTIONS = tuple(f.name for f in fields(RunConfig) if f.metadata["resume"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per ``RunConfig`` field (``--batch-size`` for ``batch_size``), typed and
    checked by the field's kind, defaulting to the field's default."""
    for f in fields(RunConfig):
        meta = f.metadata
        if not meta["cli"]:
            continue
        flag = f"--{f.name.replace('_', '-')}"
        kind = meta["kind"]
        if kind is FLAG:
            parser.add_argument(flag, action="store_true", help=meta["help"])
            continue
        kwargs = {"default": f.default, "help": meta["help"], "metavar": meta["metavar"]}
        if kind.choices:
            kwargs["choices"] = kind.choices
        else:
            kwargs["type"] = kind.parse
        parser.add_argument(flag, **{k: v for k, v in kwargs.items() if v is not None or k == "default"})
