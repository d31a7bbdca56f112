"""A worker process of a study: ``python -m scratchcnn.apps.tune --worker I --trials N [--timeout S]``.

Started by ``workers.run_workers``; reads the study's ``Spec`` as JSON on its
standard input and runs its share of the trials (``workers.run_trials``).
"""
from __future__ import annotations

import argparse
import json
import sys

from scratchcnn.apps import cli
from scratchcnn.errors import ConfigError

from .workers import Spec, run_trials

PROG = "python -m scratchcnn.apps.tune"


def _worker_main(argv) -> int:
    p = argparse.ArgumentParser(prog=PROG)
    p.add_argument("--worker", type=int, required=True)
    p.add_argument("--trials", type=int, required=True)
    p.add_argument("--timeout", type=float)
    args = p.parse_args(argv)
    try:
        spec = Spec(**json.loads(sys.stdin.read()))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"worker {args.worker}: bad study spec on standard input: {exc}") from None
    prefix = f"[worker {args.worker}] "
    run_trials(spec, args.trials, args.timeout, args.worker, say=lambda line: print(prefix + line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(PROG, _worker_main, None))
