"""Exercises of the teaching notebooks: the ``@exercise`` marker and the ``check`` cells' checker.

A notebook's exercise is a function the student writes, marked with its number::

    @exercise("2.2")
    def im2col_stride2(x, kh, kw):
        raise NotImplementedError  # your code here

and a check cell, ``check("2.2", im2col_stride2)``, that tests it against the framework
(or a gradient check) and says what is wrong. ``check``:

- prints ``Exercise 2.2 passed: ...`` when the answer is right;
- raises :class:`ExerciseFailed` (an ``AssertionError``) naming the first thing that is
  wrong (a shape, an element, a property) when it is not;
- prints ``Exercise 2.2: not attempted yet`` when the function still raises
  ``NotImplementedError``, so "Run all" works on a fresh notebook.

With ``SCRATCHCNN_SOLUTIONS=1`` in the environment, ``@exercise`` replaces the student's
function by the reference solution in ``notebooks/solutions/chNN.py`` and a check that
is not passed fails: that is how CI (``tests/test_notebooks.py``) and
``tools/run_notebooks.py`` execute each notebook with its solutions. The checks live in
``notebooks/exercises/chNN.py``; ``tests/test_exercises.py`` proves each one fails on
deliberately wrong answers.
"""
from __future__ import annotations

import importlib
import os

import numpy as np

__all__ = ["SOLUTIONS", "ExerciseFailed", "exercise", "check", "checker", "solution", "expect", "expect_close",
           "chapter_of"]

SOLUTIONS = os.environ.get("SCRATCHCNN_SOLUTIONS", "") == "1"
_CHECKS: dict = {}


class ExerciseFailed(AssertionError):
    """An answer that the check found wrong; the message says what is wrong."""


def chapter_of(exercise_id: str) -> str:
    """``"2.1"`` -> ``"ch02"``, the module name of its checks and solutions."""
    return f"ch{int(exercise_id.split('.')[0]):02d}"


def checker(exercise_id: str):
    """Register the decorated function as the check of ``exercise_id``; it returns a one-line summary."""
    def register(fn):
        _CHECKS[exercise_id] = fn
        return fn
    return register


def solution(exercise_id: str):
    """The reference solution of ``exercise_id``, from ``notebooks/solutions/chNN.py``."""
    module = importlib.import_module(f"solutions.{chapter_of(exercise_id)}")
    return module.ANSWERS[exercise_id]


def exercise(exercise_id: str):
    """Mark a student's function as the answer to ``exercise_id``.

    Returns the function unchanged, or the reference solution when ``SCRATCHCNN_SOLUTIONS=1``.
    """
    def mark(fn):
        return solution(exercise_id) if SOLUTIONS else fn
    return mark


def check(exercise_id: str, answer) -> None:
    """Run the check of ``exercise_id`` on ``answer`` and print the verdict (passed, or not attempted yet).

    Raises
    ------
    ExerciseFailed
        If the answer is wrong (the message says how), or, with ``SCRATCHCNN_SOLUTIONS=1``,
        if it was not attempted.
    """
    importlib.import_module(f"exercises.{chapter_of(exercise_id)}")  # registers the chapter's checks
    if exercise_id not in _CHECKS:
        raise KeyError(f"no check for exercise {exercise_id!r}")
    try:
        summary = _CHECKS[exercise_id](answer)
    except NotImplementedError:
        if SOLUTIONS:
            raise ExerciseFailed(f"Exercise {exercise_id}: the answer raised NotImplementedError "
                                 "although SCRATCHCNN_SOLUTIONS=1") from None
        print(f"Exercise {exercise_id}: not attempted yet ({getattr(answer, '__name__', 'the answer')} raises "
              "NotImplementedError). Write it in the cell above, run that cell, then this one.")
        return
    print(f"Exercise {exercise_id} passed: {summary}")


def expect(condition, message: str) -> None:
    """Raise :class:`ExerciseFailed` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ExerciseFailed(message)


def expect_close(name: str, got, want, rtol: float = 1e-6, atol: float = 1e-8, where: str = "") -> None:
    """Compare an answer with the expected array: type, shape, then values (first mismatch named)."""
    context = f" ({where})" if where else ""
    expect(got is not None, f"{name}{context}: got None; did the function forget to return it?")
    got, want = np.asarray(got), np.asarray(want)
    expect(got.shape == want.shape, f"{name}{context}: shape {got.shape}, expected {want.shape}")
    bad = ~np.isclose(got, want, rtol=rtol, atol=atol)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ExerciseFailed(f"{name}{context}: {int(bad.sum())} of {bad.size} entries differ; first at index "
                             f"{index}: got {got[index]!r}, expected {want[index]!r}")
