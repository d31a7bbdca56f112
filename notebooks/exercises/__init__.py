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
import inspect
import os
import sys
import types

import numpy as np

__all__ = ["SOLUTIONS", "ExerciseFailed", "exercise", "check", "checker", "solution", "expect", "expect_close",
           "chapter_of", "run_answer", "PASSED"]

SOLUTIONS = os.environ.get("SCRATCHCNN_SOLUTIONS", "") == "1"
_CHECKS: dict = {}
PASSED: set = set()  # the exercises whose check passed in this session: later cells may build on them


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
    PASSED.add(exercise_id)
    print(f"Exercise {exercise_id} passed: {summary}")


class _TooManySteps(Exception):
    """Raised inside an answer by the line counter of :func:`run_answer` when it exceeds its budget."""


def _code_objects(obj, seen=None) -> set:
    """The code objects that run when ``obj`` is called: a function's (through ``__wrapped__`` decorators and
    NumPy's dispatchers), a method's, every function of a class or a module."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    codes = set()
    if isinstance(obj, types.ModuleType):
        for value in vars(obj).values():
            home = getattr(value, "__module__", None) or ""
            if (home == obj.__name__ or home.startswith(obj.__name__ + ".")) and (inspect.isfunction(value) or
                                                                                   inspect.isclass(value)):
                codes |= _code_objects(value, seen)
        return codes
    if inspect.isclass(obj):
        for value in vars(obj).values():
            codes |= _code_objects(getattr(value, "__func__", value), seen)
        return codes
    for attribute in ("__code__",):
        if isinstance(getattr(obj, attribute, None), types.CodeType):
            codes.add(getattr(obj, attribute))
    for attribute in ("__func__", "__wrapped__", "py_func", "fget"):
        inner = getattr(obj, attribute, None)
        if inner is not None and inner is not obj:
            codes |= _code_objects(inner, seen)
    return codes


def run_answer(answer, *args, forbid: dict | None = None, line_budget: int | None = None, what: str = ""):
    """Call ``answer(*args)`` while watching which functions it calls; return what it returns.

    ``forbid`` maps a name to a function, class or module that the exercise asks the student
    to write rather than call (the framework's own implementation); calling any of them, however
    it was imported, fails the check with that name. ``line_budget`` bounds the Python lines the
    answer may execute (a formula, not a loop over pixels). Functions are recognised by their code
    objects through ``sys.settrace``, which is restored afterwards.

    Raises
    ------
    ExerciseFailed
        If the answer called a forbidden function or exceeded ``line_budget``.
    """
    codes = {}
    for name, obj in (forbid or {}).items():
        for code in _code_objects(obj):
            codes.setdefault(code, name)
    called, lines = [], [0]

    def count_lines(frame, event, arg):
        if event == "line":
            lines[0] += 1
            if lines[0] > line_budget:
                raise _TooManySteps
        return count_lines

    def on_call(frame, event, arg):
        if event == "call" and frame.f_code in codes:
            called.append(codes[frame.f_code])
        return count_lines if line_budget is not None else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        result = answer(*args)
    except _TooManySteps:
        raise ExerciseFailed(f"{what or 'your answer'} ran more than {line_budget:,} lines of Python: it counts "
                             "or loops where a formula is asked for") from None
    finally:
        sys.settrace(previous)
    if called:
        raise ExerciseFailed(f"your answer calls {called[0]}, the implementation this exercise asks you to write "
                             "yourself; work it out from the formulas instead")
    return result


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
