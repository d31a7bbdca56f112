"""Softmax cross-entropy on logits."""
from __future__ import annotations

import numpy as np

import kernels
from kernels import numpy_ref

__all__ = ["SoftmaxCrossEntropy", "softmax"]


def softmax(logits) -> np.ndarray:
    """Class probabilities from logits on the host: the one softmax outside the kernels.

    Parameters
    ----------
    logits : array-like, shape (..., num_classes)

    Returns
    -------
    ndarray, float64, same shape: ``exp(z - max(z)) / sum(exp(z - max(z)))`` along the last axis
    (the maximum subtracted so that no exponential overflows; Goodfellow, Bengio & Courville,
    2016, Deep Learning, Section 4.1).
    """
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class SoftmaxCrossEntropy:
    """Mean cross-entropy between ``softmax(logits)`` and integer class labels, optionally label-smoothed.

    ``L = -(1/N) * sum_n log softmax(logits)[n, labels[n]]``, computed with the
    log-sum-exp shift so no exponent overflows; its gradient is
    ``dL/dlogits = (softmax(logits) - onehot(labels)) / N`` (Bishop, 2006,
    Pattern Recognition and Machine Learning, Eq. 4.109; Goodfellow et al., 2016,
    Section 6.2.2.3).

    Computes with the NumPy reference until ``to`` (or the ``Sequential.build``
    of the model it is compiled into) places it on another backend.
    With ``label_smoothing = eps > 0`` the target of each row is
    ``(1 - eps) * onehot + eps / num_classes`` (Szegedy et al., 2016, "Rethinking the
    Inception Architecture", Section 7; PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``
    computes the same): ``L = -(1/N) sum_n sum_k target[n, k] log softmax(logits)[n, k]``,
    ``dL/dlogits = (softmax(logits) - target) / N``. The reported loss is then the
    smoothed one, which cannot reach 0.

    Parameters
    ----------
    label_smoothing : float in [0, 1)

    Raises
    ------
    ValueError
        If ``label_smoothing`` is outside [0, 1).

    Examples
    --------
    >>> loss_fn = SoftmaxCrossEntropy()
    >>> loss = loss_fn(np.zeros((2, 4), np.float32), np.array([0, 3]))  # mean loss, a float
    >>> round(loss, 4)  # log(4)
    1.3863
    >>> loss_fn.backward().shape
    (2, 4)
    """

    K = numpy_ref  # until ``to``: the constructor touches no backend

    def __init__(self, label_smoothing=0.0):
        if not 0.0 <= float(label_smoothing) < 1.0:
            raise ValueError(f"SoftmaxCrossEntropy: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self._cache: dict = {}
        self._workspace: dict = {}

    def to(self, backend) -> "SoftmaxCrossEntropy":
        """Compute on ``backend`` (a name or kernel module) from now on; returns self."""
        self.K = kernels.get(backend) if isinstance(backend, str) else backend
        self._workspace.clear()
        self._cache.clear()
        return self

    def _buffer(self, key, shape, dtype):
        buf = self._workspace.get(key)
        if buf is None or tuple(buf.shape) != tuple(shape) or buf.dtype != np.dtype(dtype):
            buf = self._workspace[key] = self.K.empty(shape, dtype)
        return buf

    def forward(self, logits, labels, stats=None):
        """Softmax and loss of a batch; returns the backend array ``stats``.

        Parameters
        ----------
        logits : array, float, shape (N, num_classes)
        labels : array, int64, shape (N,), values in [0, num_classes)
        stats : array, float64, shape (2,), optional
            Where to write ``[sum of the N per-sample losses, number correct]``; the
            trainer passes one row per step so that a GPU need not report every step.

        Raises
        ------
        ValueError
            If logits are not (N, num_classes) or labels are not (N,).
        """
        if len(logits.shape) != 2 or tuple(labels.shape) != (logits.shape[0],):
            raise ValueError(f"SoftmaxCrossEntropy: expected logits (N, num_classes) and labels (N,), "
                             f"got {tuple(logits.shape)} and {tuple(labels.shape)}")
        probs, stats = self.K.softmax_xent_forward(
            logits, labels, probs=self._buffer("probs", logits.shape, logits.dtype),
            stats=self._buffer("stats", (2,), np.float64) if stats is None else stats,
            smoothing=self.label_smoothing)
        self._cache = {"probs": probs, "labels": labels}
        return stats

    def __call__(self, logits, labels) -> float:
        """Mean loss over the batch, as a Python float."""
        stats = self.K.to_numpy(self.forward(logits, labels))
        return float(stats[0]) / logits.shape[0]

    def backward(self):
        """dL/dlogits, shape (N, num_classes), for the mean loss of the last ``forward``."""
        probs, labels = self._cache.pop("probs"), self._cache.pop("labels")
        return self.K.softmax_xent_backward(probs, labels,
                                            out=self._buffer("dlogits", probs.shape, probs.dtype),
                                            smoothing=self.label_smoothing)
