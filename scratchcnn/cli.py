"""Shared pieces of the command-line tools: argument types, one-line errors, exit codes."""
from __future__ import annotations

import argparse
import sys

import kernels
from scratchcnn.errors import ScratchCNNError

__all__ = ["ArgumentParser", "positive_int", "positive_float", "fraction", "run_main",
           "EXIT_ERROR", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_INTERRUPTED"]

EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 1, 2, 3, 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``prog: error: ...``) and exit code 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


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


def run_main(prog: str, body, argv) -> int:
    """Run ``body(argv)``; turn scratchcnn's own errors into ``prog: error: ...`` and exit code 1,
    and a Ctrl-C that ``body`` did not handle itself into one line and exit code 130."""
    try:
        return body(argv)
    except (ScratchCNNError, kernels.BackendUnavailable) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
