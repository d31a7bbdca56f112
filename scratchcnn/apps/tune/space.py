"""The search space of a study: which run options vary, and over what.

One parameter per ``--search`` flag, ``NAME=SPEC``:

- ``lr=1e-4:1e-2:log``: a range, sampled uniformly on a log scale (``:log``) or
  linearly; integers for integer options (``batch_size=16:256:log``);
- ``batch_size=32,64,128``, ``lr_schedule=constant,cosine``, ``augment=false,true``:
  a list of values, one of which each trial takes.

A JSON file (``--search-file``) holds the same as an object, ``{"lr": "1e-4:1e-2:log",
"batch_size": [32, 64, 128]}``: each value a SPEC string or a list of values.
The names are those of ``scratchcnn.train``'s options with underscores
(``SEARCHABLE``). Without any, the study searches ``DEFAULT_SPACE``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from scratchcnn.engine.schedules import SCHEDULES
from scratchcnn.errors import ConfigError
from scratchcnn.nn.presets import PRESETS

__all__ = ["Param", "SEARCHABLE", "DEFAULT_SPACE", "parse_param", "parse_space", "load_space_file",
           "default_space", "suggest", "grid_space", "distribution", "check_compatible"]

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")

# Each searchable run option: its kind ("float", "int", "bool" or the tuple of allowed names) and, for
# numbers, the values scratchcnn.train accepts (a test, and how a message states it).
_POSITIVE = (lambda v: 0 < v < math.inf, "> 0")
_NON_NEGATIVE = (lambda v: 0 <= v < math.inf, ">= 0")
_FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")
SEARCHABLE = {
    "lr": ("float", _POSITIVE),
    "batch_size": ("int", _POSITIVE),
    "weight_decay": ("float", _NON_NEGATIVE),
    "momentum": ("float", _FRACTION),
    "label_smoothing": ("float", _FRACTION),
    "lr_schedule": (tuple(SCHEDULES), None),
    "optimizer": (("adam", "sgd"), None),
    "augment": ("bool", None),
    "model": (tuple(sorted(PRESETS)), None),
}

# What a study searches when no --search is given: the choices a user of the main job makes first.
DEFAULT_SPACE = (
    "lr=1e-4:1e-2:log",
    "batch_size=32,64,128",
    "lr_schedule=constant,cosine,onecycle",
    "weight_decay=0,1e-5,1e-4,1e-3",
    "label_smoothing=0,0.05,0.1",
    "augment=false,true",
)


@dataclass(frozen=True)
class Param:
    """One searched option: a range (``low``..``high``, ``log`` scale or not) or ``choices``."""

    name: str
    kind: str  # "float", "int", "bool" or "choice"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple = ()

    @property
    def is_range(self) -> bool:
        return not self.choices

    def text(self) -> str:
        """The ``--search`` spelling of this parameter (``parse_param`` reads it back)."""
        if self.is_range:
            return f"{self.name}={self.low!r}:{self.high!r}" + (":log" if self.log else "")
        return f"{self.name}=" + ",".join(str(c).lower() if isinstance(c, bool) else repr(c) if
                                          isinstance(c, float) else str(c) for c in self.choices)


def _fail(spec: str, why: str) -> ConfigError:
    return ConfigError(f"--search {spec!r}: {why}")


def _number(spec: str, name: str, kind: str, text: str, what: str):
    """One number of a range or list, of the option's kind, inside its interval."""
    try:
        value = int(text) if kind == "int" else float(text)
    except ValueError:
        raise _fail(spec, f"{what} {text!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
    allowed, bound = SEARCHABLE[name][1]
    if not allowed(value):
        raise _fail(spec, f"{what} {text} is out of range: {name} must be {bound}")
    return value


def parse_param(spec: str) -> Param:
    """Read one ``NAME=LOW:HIGH[:log]`` or ``NAME=V1,V2,...`` (module docstring).

    Raises
    ------
    ConfigError
        One line quoting ``spec``: no ``=``, an unknown name, a value that is not
        of the option's kind or out of its range, ``low >= high``, ``:log`` with
        ``low <= 0``, a range of a named choice, a repeated value.
    """
    name, sep, body = spec.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not body.strip():
        raise _fail(spec, "expected NAME=LOW:HIGH[:log] or NAME=V1,V2,... (e.g. lr=1e-4:1e-2:log, "
                          "batch_size=32,64,128)")
    if name not in SEARCHABLE:
        raise _fail(spec, f"unknown parameter {name!r}; searchable: {', '.join(SEARCHABLE)}")
    kind = SEARCHABLE[name][0]
    body = body.strip()
    if ":" in body:
        if kind not in ("float", "int"):
            raise _fail(spec, f"{name} takes a list of values ({','.join(_names(kind))}), not a range")
        parts = body.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
            raise _fail(spec, "a range is LOW:HIGH or LOW:HIGH:log")
        low = _number(spec, name, kind, parts[0], "lower bound")
        high = _number(spec, name, kind, parts[1], "upper bound")
        if not low < high:
            raise _fail(spec, f"the lower bound {parts[0]} must be below the upper bound {parts[1]}")
        log = len(parts) == 3
        if log and low <= 0:
            raise _fail(spec, f"a log-scale range needs a lower bound > 0, got {parts[0]}")
        return Param(name, kind, low, high, log)
    texts = [t.strip() for t in body.split(",")]
    if any(not t for t in texts):
        raise _fail(spec, "an empty value in the list")
    if kind == "bool":
        bad = [t for t in texts if t.lower() not in _TRUE + _FALSE]
        if bad:
            raise _fail(spec, f"{bad[0]!r} is not true or false")
        values = [t.lower() in _TRUE for t in texts]
    elif isinstance(kind, tuple):
        bad = [t for t in texts if t not in kind]
        if bad:
            raise _fail(spec, f"unknown {name} {bad[0]!r}; expected one of {', '.join(kind)}")
        values = texts
    else:
        values = [_number(spec, name, kind, t, "value") for t in texts]
    if len(set(values)) != len(values):
        raise _fail(spec, "a value is repeated")
    return Param(name, "choice" if isinstance(kind, tuple) else kind, choices=tuple(values))


def _names(kind) -> tuple:
    return ("false", "true") if kind == "bool" else kind


def parse_space(specs) -> dict[str, Param]:
    """``{name: Param}`` for a sequence of ``--search`` strings.

    Raises
    ------
    ConfigError
        As ``parse_param``, or for a name given twice.
    """
    space = {}
    for spec in specs:
        param = parse_param(spec)
        if param.name in space:
            raise _fail(spec, f"{param.name} is already searched ({space[param.name].text()})")
        space[param.name] = param
    return space


def load_space_file(path) -> list[str]:
    """The ``--search`` strings a JSON search-space file stands for (module docstring).

    Raises
    ------
    ConfigError
        If the file cannot be read, is not a JSON object, or holds a value that is
        neither a string nor a non-empty list of strings, numbers or booleans.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"--search-file {path}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ConfigError(f"--search-file {path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"--search-file {path}: expected a JSON object such as "
                          '{"lr": "1e-4:1e-2:log", "batch_size": [32, 64, 128]}')
    specs = []
    for name, value in data.items():
        if isinstance(value, str):
            specs.append(f"{name}={value}")
        elif (isinstance(value, list) and value
              and all(isinstance(v, (str, int, float, bool)) for v in value)):
            specs.append(f"{name}=" + ",".join(str(v).lower() if isinstance(v, bool) else str(v) for v in value))
        else:
            raise ConfigError(f"--search-file {path}: field {name!r} is {value!r}, expected a string "
                              "such as \"1e-4:1e-2:log\" or a list of values")
    return specs


def default_space(fixed: set) -> dict[str, Param]:
    """``DEFAULT_SPACE`` without the options in ``fixed`` (those the user gave on the command line)."""
    return {name: param for name, param in parse_space(DEFAULT_SPACE).items() if name not in fixed}


def suggest(trial, space: dict[str, Param]) -> dict:
    """The values an Optuna ``trial`` draws for each parameter of ``space``: ``{name: value}``."""
    values = {}
    for name, p in space.items():
        if p.choices:
            values[name] = trial.suggest_categorical(name, list(p.choices))
        elif p.kind == "int":
            values[name] = trial.suggest_int(name, p.low, p.high, log=p.log)
        else:
            values[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
    return values


def distribution(param: Param):
    """The Optuna distribution ``suggest`` draws ``param`` from."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.choices:
        return CategoricalDistribution(list(param.choices))
    if param.kind == "int":
        return IntDistribution(param.low, param.high, log=param.log)
    return FloatDistribution(param.low, param.high, log=param.log)


def check_compatible(space: dict[str, Param], trials) -> None:
    """Refuse a parameter that earlier ``trials`` of the study drew otherwise than Optuna can continue:
    a range where they had a list (or the reverse), or other list values.

    Raises
    ------
    ConfigError
        Naming the parameter, its new and its old spelling.
    """
    from optuna.distributions import check_distribution_compatibility

    seen = {}
    for trial in trials:
        for name, dist in trial.distributions.items():
            seen.setdefault(name, dist)
    for name, param in space.items():
        if name in seen:
            try:
                check_distribution_compatibility(seen[name], distribution(param))
            except ValueError:
                raise ConfigError(f"--search {param.text()}: the study's earlier trials searched {name} as "
                                  f"{_spelling(name, seen[name])}; Optuna can narrow or widen a range, not "
                                  "turn it into a list or change a list (choose another --study)") from None


def _spelling(name: str, dist) -> str:
    if hasattr(dist, "choices"):
        return f"{name}=" + ",".join(str(c) for c in dist.choices)
    return f"{name}={dist.low!r}:{dist.high!r}" + (":log" if dist.log else "")


def grid_space(space: dict[str, Param]) -> dict[str, list]:
    """The grid of Optuna's ``GridSampler``: every parameter's list of values.

    Raises
    ------
    ConfigError
        If a parameter is a range (a grid needs lists).
    """
    for p in space.values():
        if p.is_range:
            raise ConfigError(f"--sampler grid needs a list of values for every parameter, but {p.text()} is a "
                              f"range; give it as --search {p.name}=V1,V2,...")
    return {name: list(p.choices) for name, p in space.items()}
