"""Shared pieces of the command-line tools: process set-up, argument types, one-line errors, exit codes."""
from __future__ import annotations

import argparse
import errno
import os
import sys

import kernels
from scratchcnn.errors import ScratchCNNError

__all__ = ["ArgumentParser", "path", "printable", "int_between", "NAME_TOO_LONG",
           "positive_int", "positive_float", "fraction", "seed", "non_negative_float", "run_main", "configure_process",
           "set_openmp_defaults", "GOMP_SPINCOUNT", "EXIT_ERROR", "EXIT_USAGE", "EXIT_DIVERGED",
           "EXIT_INTERRUPTED", "EXIT_TERMINATED"]

# 130 and 143 are the shells' 128 + signal number for SIGINT and SIGTERM.
EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 3, 130, 143

# How long an idle OpenMP thread of the cpu backend spins before it sleeps. Spinning makes the next
# kernel start at once; sleeping leaves the cores to other work. 10,000 keeps nearly all of the speed
# on a quiet machine and most of it on a busy one (the measurements: benchmarks/README.md, "Figures
# behind the code's choices").
GOMP_SPINCOUNT = "10000"


def set_openmp_defaults() -> None:
    """Set ``GOMP_SPINCOUNT`` (see above) unless the user chose a spin count or ``OMP_WAIT_POLICY``.

    OpenMP reads it once, when Numba starts its thread pool (the first parallel
    kernel, or ``numba.set_num_threads``), so this must run before either.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)


def configure_process() -> None:
    """Process-wide settings of the command-line tools, made once at start-up (``run_main`` calls it).

    Library imports change no setting; the tools want OpenMP's spin time above
    and matplotlib's file-only "Agg" backend (they write PNG files, with or
    without a screen).
    """
    set_openmp_defaults()
    import matplotlib

    matplotlib.use("Agg")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``prog: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


# What ENAMETOOLONG means, said once for every tool.
NAME_TOO_LONG = "File name too long (ENAMETOOLONG: a path component is longer than 255 bytes)"


def printable(text: str) -> str:
    """``text`` with control characters (escape codes, newlines, tabs) written as Python escapes
    (``\\x1b``, ``\\n``), so that a name from a file can neither move the cursor nor add a line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _shown(text: str) -> str:
    return printable(text if len(text) <= 60 else f"{text[:28]}...{text[-28:]}")


def path(text: str) -> str:
    """argparse type: a path whose components each fit the file system's limit (``NAME_MAX``,
    255 bytes), so that an over-long one is a usage error instead of an OSError later."""
    for part in text.split(os.sep):
        if len(os.fsencode(part)) > 255:
            raise argparse.ArgumentTypeError(f"{_shown(text)}: {NAME_TOO_LONG}")
    return text


def int_between(low: int, high: int):
    """argparse type factory: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {value}")
        return value
    return parse


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {value}")
    return value


def seed(text: str) -> int:
    """argparse type: an integer in [0, 2**32), what NumPy's generators take as a seed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {value}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def run_main(prog: str, body, argv) -> int:
    """Run ``body(argv)``; turn scratchcnn's own errors into ``prog: error: ...`` and exit code 1,
    and a Ctrl-C that ``body`` did not handle itself into one line and exit code 130.
    Calls ``configure_process`` first."""
    configure_process()
    try:
        return body(argv)
    except (ScratchCNNError, kernels.BackendUnavailable) as exc:
        print(f"{prog}: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # A path built from the arguments (a run folder's file) that the checks of ``path`` did not see.
        print(f"{prog}: error: {_shown(str(exc.filename))}: {NAME_TOO_LONG}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
