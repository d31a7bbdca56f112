"""Reference solutions of the notebooks' exercises, one module per notebook (``chNN.py``).

Each module maps exercise numbers to functions in ``ANSWERS``. Try an exercise before
reading its solution; ``SCRATCHCNN_SOLUTIONS=1`` makes the notebooks use these
(``notebooks/exercises/__init__.py`` explains how CI runs them).
"""
