"""The degradation experiment's table and plot: training and held-out error per epoch of two runs.

    python benchmarks/degradation_plot.py RUN_PLAIN RUN_RESNET --out DIR

Reads each run folder's ``history.csv`` (per epoch: the running training accuracy,
with BN in training mode, and the validation accuracy) and ``metrics.json`` (the
test accuracy, scored once at the end), writes ``DIR/degradation.md`` (a markdown
table, also printed) and ``DIR/degradation.png`` (He et al., 2016, Figure 6's
layout: thin lines training error, bold lines held-out error, in percent).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_run(run: Path) -> dict:
    """``{"name", "epoch", "train_error", "val_error", "test_error", "seconds"}`` of a run folder (errors in %)."""
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    metrics = json.loads((run / "metrics.json").read_text())
    return {"name": metrics["model"], "epoch": [int(r["epoch"]) for r in rows],
            "train_error": [100 * (1 - float(r["accuracy"])) for r in rows],
            "val_error": [100 * (1 - float(r["val_accuracy"])) for r in rows],
            "test_error": 100 * (1 - metrics["test_accuracy"]), "seconds": metrics["train_seconds"],
            "parameters": metrics["parameters"]}


def table(runs: list[dict]) -> str:
    lines = ["| network | parameters | training error, last epoch | validation error | test error | "
             "training time |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        lines.append(f"| {r['name']} | {r['parameters']:,} | {r['train_error'][-1]:.2f}% | {r['val_error'][-1]:.2f}% "
                     f"| {r['test_error']:.2f}% | {r['seconds'] / 60:.0f} min |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (plain network first)")
    p.add_argument("--out", type=Path, required=True, help="folder for degradation.md and degradation.png")
    args = p.parse_args(argv)
    runs = [read_run(run) for run in args.runs]
    text = table(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "degradation.md").write_text(text + "\n")
    print(text)
    fig, ax = plt.subplots(figsize=(6, 4))
    for r, colour in zip(runs, ("tab:orange", "tab:blue", "tab:green", "tab:red")):
        ax.plot(r["epoch"], r["train_error"], color=colour, linewidth=1, linestyle="--",
                label=f"{r['name']} training")
        ax.plot(r["epoch"], r["val_error"], color=colour, linewidth=2.5, label=f"{r['name']} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_title("Fashion-MNIST: plain vs residual, same budget")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "degradation.png", dpi=120)


if __name__ == "__main__":
    main()
