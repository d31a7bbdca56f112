"""Two checkouts' cpu backend and PyTorch side by side: did a change make training or inference slower?

    git worktree add /tmp/before <commit>
    python benchmarks/before_after.py /tmp/before . ROUNDS STEPS [NETWORKS]   # e.g. 5 10 classic,resnet20

Each contender is a ``benchmarks/worker.py`` process of its own tree (the worker puts its tree first
on PYTHONPATH), so both versions run in one process tree; rounds are interleaved and rotated; the
figure is the median of per-step seconds (batch 64, 2 threads), printed as images/s for the networks
named (default: classic,vgg-small; any preset both trees build), with the ratios after/before and
after/PyTorch.
"""
import importlib.util, json, os, sys, time
import numpy as np

def load_worker(tree):
    sys.path.insert(0, f"{tree}/benchmarks")
    spec = importlib.util.spec_from_file_location(f"worker_{abs(hash(tree))}", f"{tree}/benchmarks/worker.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    sys.path.pop(0)
    return mod.Worker

before, after = sys.argv[1], sys.argv[2]
rounds, steps = int(sys.argv[3]), int(sys.argv[4])
networks = sys.argv[5].split(",") if len(sys.argv) > 5 else ["classic", "vgg-small"]
W0, W1 = load_worker(before), load_worker(after)
workers = {"cpu-before": W0("cpu", 2), "cpu-after": W1("cpu", 2), "torch": W1("torch", 2)}
print("load before:", open("/proc/loadavg").read().strip(), flush=True)
result = {}
for network in networks:
    names = list(workers)
    for mode in ("train", "infer"):
        secs = {n: [] for n in names}
        for n in names:
            workers[n].run(mode, steps, network)
        for r in range(rounds):
            for n in names[r % 3:] + names[:r % 3]:
                secs[n] += workers[n].run(mode, steps, network)
        rate = {n: 64 / float(np.median(secs[n])) for n in names}
        result[f"{network} {mode}"] = rate
        print(f"{network:9s} {mode:5s} " + "  ".join(f"{n} {rate[n]:8.0f} img/s" for n in names)
              + f"  after/before {rate['cpu-after']/rate['cpu-before']:.3f}  after/torch {rate['cpu-after']/rate['torch']:.2f}", flush=True)
print("load after:", open("/proc/loadavg").read().strip())
print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"), "rates": result}))
