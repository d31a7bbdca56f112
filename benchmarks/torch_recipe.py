"""The README's time-to-accuracy recipe run in PyTorch: the same network, data, schedule and augmentation.

    python benchmarks/torch_recipe.py --data-dir ../shared/data            # the recipe (8 epochs, batch 128)
    python benchmarks/torch_recipe.py --data-dir ../shared/data --epochs 1 --train-limit 2000   # a quick look

What is the same as ``python -m scratchcnn.train --dataset fashion --model vgg-small
--epochs 8 --batch-size 128 --lr 4e-3 --lr-schedule onecycle --label-smoothing 0.1
--val-fraction 0`` (README, "Time to accuracy"): the data and its normalisation
(``load_dataset``), the initial weights (``build_model`` with the same seed, copied
by ``TorchTwin``), the shuffle order (and with ``--augment`` each batch's
augmentation: the same seeds and ``Augment``), the learning rate of every step (``schedules.learning_rate``),
Adam, label smoothing (``nn.CrossEntropyLoss(label_smoothing=...)``), and the
test-time flip averaging. PyTorch runs on as many threads as scratchcnn would
(``--threads``, default: Numba's count). The training time is the loop over the
batches, as scratchcnn's ``train_seconds``. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numba
import numpy as np
import torch
from torch import nn

from scratchcnn.data import load_dataset
from scratchcnn.nn.losses import SoftmaxCrossEntropy
from scratchcnn.nn.optimizers import Adam
from scratchcnn.nn.presets import build_model
from scratchcnn.apps.config import RunConfig
from scratchcnn.apps.run import make_augment
from scratchcnn.engine.schedules import learning_rate
from torch_twin import TorchTwin


def _accuracy(net, x, y, flip: bool, batch_size=512) -> float:
    net.eval()
    probs = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[s:s + batch_size])
            p = torch.softmax(net(xb), dim=1)
            if flip:
                p = (p + torch.softmax(net(torch.flip(xb, dims=[3])), dim=1)) / 2
            probs.append(p.numpy())
    return float((np.concatenate(probs).argmax(axis=1) == y).mean())


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--dataset", default="fashion")
    parser.add_argument("--model", default="vgg-small")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--lr-schedule", default="onecycle")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--augment", action="store_true", help="random shifts and mirror images, as scratchcnn's")
    parser.add_argument("--threads", type=int, default=numba.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # dropout masks (PyTorch's own generator)

    splits = load_dataset(args.dataset, args.data_dir, val_fraction=0.0, train_limit=args.train_limit,
                          seed=args.seed, progress=False)
    model = build_model(args.model, splits.input_shape, len(splits.class_names), seed=args.seed, backend="numpy")
    model.compile(Adam(args.lr), SoftmaxCrossEntropy())
    twin = TorchTwin(model)
    twin.loss_fn = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    augment = make_augment(RunConfig.from_values({"augment": args.augment, "dataset": args.dataset}), splits)
    x, y = splits.x_train, splits.y_train.astype(np.int64)
    n, steps = len(y), math.ceil(len(y) / args.batch_size)
    train_seconds = 0.0
    for epoch in range(args.epochs):
        order = np.random.default_rng([args.seed, epoch]).permutation(n)  # as scratchcnn.engine.training.Trainer
        t0 = time.perf_counter()
        for step in range(steps):
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            xb = x[idx] if augment is None else augment(x[idx], np.random.default_rng([args.seed, epoch, step]))
            for group in twin.optimizer.param_groups:
                group["lr"] = learning_rate(args.lr_schedule, args.lr, epoch, step, steps, args.epochs)
            twin.train_step(torch.from_numpy(np.ascontiguousarray(xb)), torch.from_numpy(y[idx]))
        train_seconds += time.perf_counter() - t0
    result = {"framework": f"PyTorch {torch.__version__}", "threads": torch.get_num_threads(),
              "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "lr_schedule": args.lr_schedule, "label_smoothing": args.label_smoothing, "augment": args.augment,
              "train_images": n, "train_seconds": round(train_seconds, 1),
              "test_accuracy": _accuracy(twin.net, splits.x_test, splits.y_test, flip=False),
              "test_accuracy_tta_flip": _accuracy(twin.net, splits.x_test, splits.y_test, flip=True)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
