"""``CompileLog``: which kernels Numba compiled inside a ``with`` block, and for how long.

Lives with the kernels (what compiles is theirs), so that ``Sequential.warm_up`` and
the profilers (``scratchcnn.engine.profiling`` re-exports it) share one record.
"""
from __future__ import annotations

import time

__all__ = ["CompileLog"]

_now = time.perf_counter


class CompileLog:
    """Records the Numba compilations that happen inside a ``with`` block.

    Attributes (after the block)
    ----------------------------
    names : list of str
        Qualified names of the Python functions compiled (one per signature),
        including Numba's own helpers compiled on the way; a cache hit is not a compilation.
    seconds : float
        Wall-clock seconds spent compiling (outermost compilations only, so nested ones count once).

    >>> with CompileLog() as log:  # doctest: +SKIP
    ...     kernels.get("cpu").relu_forward(np.zeros(3, np.float32))
    >>> log.names, log.seconds  # doctest: +SKIP
    (['_relu_forward_core'], 0.8)   # or ([], 0.0) when loaded from the cache
    """

    def __init__(self, on_first=None):
        """``on_first()``, if given, is called once, as the first compilation in the block starts."""
        self.names: list[str] = []
        self.seconds = 0.0
        self._on_first = on_first
        self._depth, self._start, self._listener = 0, 0.0, None

    def __enter__(self) -> "CompileLog":
        from numba.core import event

        log = self

        class Listener(event.Listener):
            def on_start(self, ev):
                if log._depth == 0:
                    if not log.names and log._on_first is not None:
                        log._on_first()
                    log._start = _now()
                log._depth += 1
                log.names.append(ev.data["dispatcher"].py_func.__qualname__)

            def on_end(self, ev):
                log._depth -= 1
                if log._depth == 0:
                    log.seconds += _now() - log._start

        self._listener = Listener()
        event.register("numba:compile", self._listener)
        return self

    def __exit__(self, *exc) -> None:
        from numba.core import event

        event.unregister("numba:compile", self._listener)
