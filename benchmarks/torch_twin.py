"""The same network in PyTorch, with the same weights, for a side-by-side comparison.

The layers of every preset are translated (Conv2D with or without bias, ReLU,
MaxPool2D, Flatten, Dense, Dropout, BatchNorm2D, BatchNorm1D, GlobalAvgPool2D and
the ``Residual`` block, as ``relu(main(x) + shortcut(x))``). PyTorch stores a
linear layer's weight as (out_features, in_features), scratchcnn's ``Dense`` as
(in_features, out_features): the weights are transposed on the way in and the
gradients on the way out. Batch normalisation maps ``gamma``/``beta`` to
``weight``/``bias`` and ``running_mean``/``running_var`` to the buffers of the same
names; both frameworks use PyTorch's momentum convention and the unbiased batch
variance for the running variance.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from scratchcnn.nn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D,
                                  MaxPool2D, ReLU, Residual)

__all__ = ["TorchTwin"]


class _Residual(nn.Module):
    """``relu(main(x) + shortcut(x))``, the shortcut the identity when it has no layers."""

    def __init__(self, block: Residual):
        super().__init__()
        self.main = nn.Sequential(*[_translate(layer) for layer in block.main])
        self.shortcut = nn.Sequential(*[_translate(layer) for layer in block.shortcut])

    def forward(self, x):
        return torch.relu(self.main(x) + self.shortcut(x))


def _translate(layer) -> nn.Module:
    if isinstance(layer, Residual):
        return _Residual(layer)
    if isinstance(layer, GlobalAvgPool2D):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if isinstance(layer, Conv2D):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, bias=layer.bias)
    if isinstance(layer, Dense):
        return nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
    if isinstance(layer, MaxPool2D):
        return nn.MaxPool2d(layer.kernel_size, layer.stride)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.p)
    if isinstance(layer, ReLU):
        return nn.ReLU()
    if isinstance(layer, (BatchNorm2D, BatchNorm1D)):
        kind = nn.BatchNorm2d if isinstance(layer, BatchNorm2D) else nn.BatchNorm1d
        return kind(layer.num_features, eps=layer.eps, momentum=layer.momentum)
    if isinstance(layer, Flatten):
        return nn.Flatten()
    raise ValueError(f"no PyTorch translation for layer {layer.name} ({type(layer).__name__})")


# scratchcnn's parameter and buffer names -> PyTorch's attribute names
_NAMES = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias",
          "running_mean": "running_mean", "running_var": "running_var"}


def _tensor(module, key):
    return getattr(module, _NAMES[key])


def _leaves(layers, modules):
    """``(layer, module)`` pairs of the layers that own arrays, blocks opened up (a block's children are
    named ``<block>.main.conv2d_0``, the names its gradients have in ``Sequential.parameters``)."""
    for layer, module in zip(layers, modules):
        if isinstance(layer, Residual):
            yield from _leaves(layer.main, module.main)
            yield from _leaves(layer.shortcut, module.shortcut)
        else:
            yield layer, module


class TorchTwin:
    """A PyTorch copy of a scratchcnn ``Sequential`` (weights and Adam hyperparameters included).

    Parameters
    ----------
    model : Sequential
        Built from the layers above, compiled with ``Adam``; its weights are copied.

    Raises
    ------
    ValueError
        If a layer has no translation or the optimizer is not Adam.
    """

    def __init__(self, model):
        opt = model.optimizer
        if type(opt).__name__ != "Adam":
            raise ValueError(f"TorchTwin translates Adam only, the model uses {type(opt).__name__}")
        self.layers = list(model.layers)
        self.net = nn.Sequential(*[_translate(layer) for layer in self.layers])
        with torch.no_grad():
            for layer, module in _leaves(self.layers, self.net):
                for key, value in list(layer.params.items()) + list(layer.buffers.items()):
                    host = np.array(model.K.to_numpy(value))
                    target = _tensor(module, key)
                    target.copy_(torch.from_numpy(host.T.copy() if isinstance(layer, Dense) and key == "W" else host))
        # PyTorch's Adam adds eps to sqrt(v_hat), as Kingma & Ba (2015), Algorithm 1, and scratchcnn do.
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=opt.lr, betas=(opt.beta1, opt.beta2),
                                          eps=opt.eps, weight_decay=opt.weight_decay)
        self.loss_fn = nn.CrossEntropyLoss()  # mean over the batch, as SoftmaxCrossEntropy

    def train_step(self, x, y):
        """One training step on torch tensors x (N, C, H, W) float32, y (N,) int64."""
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(x), y)
        loss.backward()
        self.optimizer.step()

    def infer(self, x):
        """Logits (N, classes) of x in inference mode, without autograd bookkeeping."""
        self.net.eval()
        with torch.inference_mode():
            return self.net(x)

    def reference_check(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Same keys and layouts as ``workloads.reference_check``.

        Training-mode forward with dropout switched off (batch statistics, as the
        scratchcnn side), loss, gradients and the updated running statistics, then
        the inference logits with those statistics.
        """
        self.net.train()
        dropouts = [m for m in self.net.modules() if isinstance(m, nn.Dropout)]
        rates = [m.p for m in dropouts]
        for m in dropouts:
            m.p = 0.0
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.net(torch.from_numpy(x))
        loss = self.loss_fn(logits, torch.from_numpy(y))
        loss.backward()
        for m, p in zip(dropouts, rates):
            m.p = p
        out = {"train_logits": logits.detach().numpy().copy(), "loss": np.array(loss.item())}
        for layer, module in _leaves(self.layers, self.net):
            for key in layer.params:
                grad = _tensor(module, key).grad.numpy()
                out[f"{layer.name}.{key}"] = grad.T.copy() if isinstance(layer, Dense) and key == "W" else grad.copy()
            for key in layer.buffers:
                out[f"{layer.name}.{key}"] = _tensor(module, key).detach().numpy().copy()
        out["logits"] = self.infer(torch.from_numpy(x)).numpy().copy()
        self.optimizer.zero_grad(set_to_none=True)
        return out
