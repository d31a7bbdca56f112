"""The same network in PyTorch, with the same weights, for a side-by-side comparison.

Only the layers of the default network are translated (Conv2D, ReLU, MaxPool2D,
Flatten, Dense, Dropout). PyTorch stores a linear layer's weight as
(out_features, in_features), scratchcnn's ``Dense`` as (in_features, out_features):
the weights are transposed on the way in and the gradients on the way out.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from scratchcnn.layers import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ReLU

__all__ = ["TorchTwin"]


def _translate(layer) -> nn.Module:
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
    if isinstance(layer, Flatten):
        return nn.Flatten()
    raise ValueError(f"no PyTorch translation for layer {layer.name} ({type(layer).__name__})")


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
            for layer, module in zip(self.layers, self.net):
                for key, value in layer.params.items():
                    host = np.array(model.K.to_numpy(value))
                    target = module.weight if key == "W" else module.bias
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
        """Same keys and layouts as ``workloads.reference_check``: eval logits, loss, gradients."""
        self.net.eval()  # no dropout: the function every contender must agree on
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.net(torch.from_numpy(x))
        loss = self.loss_fn(logits, torch.from_numpy(y))
        loss.backward()
        out = {"logits": logits.detach().numpy().copy(), "loss": np.array(loss.item())}
        for layer, module in zip(self.layers, self.net):
            for key in layer.params:
                grad = (module.weight if key == "W" else module.bias).grad.numpy()
                out[f"{layer.name}.{key}"] = grad.T.copy() if isinstance(layer, Dense) and key == "W" else grad.copy()
        self.optimizer.zero_grad(set_to_none=True)
        return out
