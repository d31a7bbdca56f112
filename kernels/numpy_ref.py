"""NumPy reference kernels: the readable definition of every kernel in scratchcnn.

Read this file first. Each function computes one step of a CNN's forward or
backward pass with whole-array NumPy operations, no Python loop over pixels or
images: the only loops run over the ``kh x kw`` offsets of a window, as in
Chainer's ``im2col_cpu``. The Numba CPU and CUDA backends compute the same
numbers faster, and the tests hold them to this file.

Conventions: arrays are C-contiguous NumPy arrays; images are NCHW; float32 in
training, float64 in gradient checks (every kernel keeps its input's dtype).
Kernels that take ``out=`` write into it when given and allocate otherwise, so
that layers can reuse their buffers between steps.
"""
from __future__ import annotations

import numpy as np

from kernels import _hash
from kernels._api import KERNELS, check_nchw, check_out, conv_output_size, gemm_shape

name = "numpy"

__all__ = list(KERNELS)  # the contract, kernels/_api.py


# ----------------------------------------------------------------------------- memory

def empty(shape, dtype=np.float32):
    """An uninitialised backend array of ``shape`` and ``dtype`` (here: ``np.empty``)."""
    return np.empty(shape, dtype)


def zeros(shape, dtype=np.float32):
    """A zero-filled backend array of ``shape`` and ``dtype`` (here: ``np.zeros``)."""
    return np.zeros(shape, dtype)


def asarray(a, dtype=None):
    """Host array -> C-contiguous backend array (here: no copy when already contiguous)."""
    return np.ascontiguousarray(a, dtype=dtype)


def to_numpy(a):
    """Backend array -> NumPy array on the host (here: the array itself)."""
    return np.asarray(a)


def synchronize():
    """Wait until queued work is done (here: nothing is ever queued)."""


def _window(a, i, j, stride, h_out, w_out):
    """View of ``a[..., i + stride*oh, j + stride*ow]`` for all output positions (oh, ow)."""
    return a[..., i:i + stride * h_out:stride, j:j + stride * w_out:stride]


# ----------------------------------------------------------------------------- convolution

def im2col(x, kh, kw, stride=1, padding=0, out=None):
    """Unfold every ``kh x kw`` window of ``x`` into a column, so convolution is one GEMM.

    Parameters
    ----------
    x : ndarray, float32 or float64, shape (N, C, H, W)
    kh, kw : int
        Kernel height and width (pixels).
    stride, padding : int
        Step between windows and zero padding on each border (pixels).
    out : ndarray, optional
        Where to write the result, shape (C*kh*kw, N*H_out*W_out), same dtype as ``x``.

    Returns
    -------
    cols : ndarray, shape (C*kh*kw, N*H_out*W_out)
        Row ``(c*kh + i)*kw + j`` holds pixel ``(oh*stride + i - padding,
        ow*stride + j - padding)`` of channel ``c`` for each output position,
        columns ordered ``(n, oh, ow)``; ``H_out = (H + 2*padding - kh)//stride + 1``.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D, the window does not fit, or ``out`` has the wrong shape/dtype.

    References
    ----------
    Chellapilla, Puri & Simard (2006), "High Performance Convolutional Neural
    Networks for Document Processing", Section 3.

    Examples
    --------
    >>> im2col(np.zeros((2, 1, 5, 5), np.float32), 3, 3).shape
    (9, 18)
    """
    n, c, h, w = check_nchw(x)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    if out is None:
        out = np.empty((c * kh * kw, n * h_out * w_out), x.dtype)
    check_out(out, (c * kh * kw, n * h_out * w_out), x.dtype, "im2col out")
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    rows = out.reshape(c, kh, kw, n, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            # Offset (i, j) of every window at once: one strided slice per offset.
            rows[:, i, j] = _window(x_padded, i, j, stride, h_out, w_out).transpose(1, 0, 2, 3)
    return out


def col2im(cols, x_shape, kh, kw, stride=1, padding=0, out=None):
    """Fold columns back onto the image, summing where windows overlap (adjoint of im2col).

    Parameters
    ----------
    cols : ndarray, shape (C*kh*kw, N*H_out*W_out)
        Gradient with respect to the columns, in ``im2col``'s layout.
    x_shape : tuple (N, C, H, W)
        Shape of the image the columns came from.
    kh, kw, stride, padding : int
        As for ``im2col`` (pixels).
    out : ndarray, optional, shape ``x_shape``, dtype of ``cols``

    Returns
    -------
    dx : ndarray, shape (N, C, H, W)
        ``dx[n, c, h, w]`` is the sum of every column entry that read pixel (h, w).

    Raises
    ------
    ValueError
        If ``cols`` does not have the shape ``im2col`` gives for ``x_shape``.

    Notes
    -----
    Within one offset ``(i, j)`` the strided slice visits each pixel at most once,
    so ``+=`` on the slice is exact; overlapping windows are summed across offsets.
    No ``np.add.at`` is needed.
    """
    n, c, h, w = (int(s) for s in x_shape)
    h_out = conv_output_size(h, kh, stride, padding)
    w_out = conv_output_size(w, kw, stride, padding)
    check_out(cols, (c * kh * kw, n * h_out * w_out), cols.dtype, "col2im cols")
    x_padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), cols.dtype)
    rows = cols.reshape(c, kh, kw, n, h_out, w_out)
    for i in range(kh):
        for j in range(kw):
            _window(x_padded, i, j, stride, h_out, w_out)[...] += rows[:, i, j].transpose(1, 0, 2, 3)
    dx = x_padded[:, :, padding:padding + h, padding:padding + w]
    if out is None:
        return np.ascontiguousarray(dx)
    check_out(out, (n, c, h, w), cols.dtype, "col2im out")
    out[...] = dx
    return out


def gemm(a, b, trans_a=False, trans_b=False, out=None):
    """General matrix product ``out = op(a) @ op(b)``, ``op`` transposing when asked.

    Parameters
    ----------
    a : ndarray, shape (M, K), or (K, M) with ``trans_a``
    b : ndarray, shape (K, N), or (N, K) with ``trans_b``
    out : ndarray, optional, shape (M, N), dtype of ``a``

    Returns
    -------
    out : ndarray, shape (M, N)

    Raises
    ------
    ValueError
        If the operands are not 2-D or their inner dimensions differ.

    Notes
    -----
    The product itself is BLAS ``sgemm``/``dgemm`` through NumPy; transposes are
    views, which BLAS reads without copying.
    """
    m, _, n = gemm_shape(a.shape, b.shape, trans_a, trans_b)
    if out is None:
        out = np.empty((m, n), a.dtype)
    check_out(out, (m, n), a.dtype, "gemm out")
    return np.matmul(a.T if trans_a else a, b.T if trans_b else b, out=out)


def bias_add_nchw(y, b, n, out=None):
    """Add a per-channel bias to a convolution's GEMM output and reorder it to NCHW.

    Parameters
    ----------
    y : ndarray, shape (C, N*P)
        ``W_cols @ cols``, channel-major, ``P = H_out*W_out`` positions per image.
    b : ndarray, shape (C,)
    n : int
        Batch size N.
    out : ndarray, optional, shape (N, C, P)

    Returns
    -------
    out : ndarray, shape (N, C, P), ``out[n, c, p] = y[c, n*P + p] + b[c]``.
    """
    c = y.shape[0]
    p = y.shape[1] // n
    if out is None:
        out = np.empty((n, c, p), y.dtype)
    check_out(out, (n, c, p), y.dtype, "bias_add_nchw out")
    np.add(y.reshape(c, n, p).transpose(1, 0, 2), b[None, :, None], out=out)
    return out


def bias_grad_nchw(dout, db=None, dout_cm=None):
    """Per-channel bias gradient of an NCHW gradient, and the gradient reordered for GEMM.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H, W)
        Gradient of the loss with respect to a convolution's output.
    db : ndarray, optional, shape (C,)
    dout_cm : ndarray, optional, shape (C, N*H*W)

    Returns
    -------
    db : ndarray, shape (C,), ``db[c] = sum over n, h, w of dout[n, c, h, w]``
    dout_cm : ndarray, shape (C, N*H*W), ``dout`` channel-major, as ``gemm`` needs it
        for ``dW = dout_cm @ cols.T`` and ``dcols = W_cols.T @ dout_cm``.
    """
    n, c, h, w = check_nchw(dout, "dout")
    if db is None:
        db = np.empty(c, dout.dtype)
    if dout_cm is None:
        dout_cm = np.empty((c, n * h * w), dout.dtype)
    check_out(db, (c,), dout.dtype, "bias_grad_nchw db")
    check_out(dout_cm, (c, n * h * w), dout.dtype, "bias_grad_nchw dout_cm")
    dout_cm.reshape(c, n, h, w)[...] = dout.transpose(1, 0, 2, 3)
    db[...] = dout_cm.sum(axis=1)
    return db, dout_cm


def bias_add(y, b):
    """Add a bias row to every row of a dense layer's output, in place.

    y : (N, F), b : (F,); returns ``y`` with ``y[n, f] += b[f]``.
    """
    y += b
    return y


def bias_grad(dout, out=None):
    """Bias gradient of a dense layer: ``db[f] = sum_n dout[n, f]``; dout (N, F) -> (F,)."""
    return np.sum(dout, axis=0, out=out)


# ----------------------------------------------------------------------------- activations

def relu_forward(x, out=None):
    """Rectified linear unit ``max(x, 0)``, element-wise, any shape (Nair & Hinton, 2010)."""
    return np.maximum(x, 0, out=out)


def relu_backward(dout, y, out=None):
    """Gradient of ReLU: ``dx = dout * (y > 0)``, with ``y`` the forward output.

    At exactly 0 the derivative is taken as 0, as in PyTorch.
    """
    return np.multiply(dout, y > 0, out=out)


# ----------------------------------------------------------------------------- max-pooling

def maxpool_forward(x, kernel_size, stride, out=None, argmax=None):
    """Max over each ``kernel_size x kernel_size`` window, remembering where it was.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size, stride : int
        Window side and step (pixels); windows overlap when ``stride < kernel_size``.
    out : ndarray, optional, shape (N, C, H_out, W_out), dtype of ``x``
    argmax : ndarray, optional, int8, shape (N, C, H_out, W_out)

    Returns
    -------
    out : ndarray, shape (N, C, H_out, W_out), ``H_out = (H - kernel_size)//stride + 1``
    argmax : ndarray, int8, same shape
        Position ``i*kernel_size + j`` of the maximum inside its window. Ties go to
        the first position in row-major order, so the routing is deterministic.
    """
    n, c, h, w = check_nchw(x)
    h_out = conv_output_size(h, kernel_size, stride, 0)
    w_out = conv_output_size(w, kernel_size, stride, 0)
    if out is None:
        out = np.empty((n, c, h_out, w_out), x.dtype)
    if argmax is None:
        argmax = np.empty((n, c, h_out, w_out), np.int8)
    check_out(out, (n, c, h_out, w_out), x.dtype, "maxpool_forward out")
    check_out(argmax, (n, c, h_out, w_out), np.int8, "maxpool_forward argmax")
    out[...] = _window(x, 0, 0, stride, h_out, w_out)
    argmax[...] = 0
    for i in range(kernel_size):
        for j in range(kernel_size):
            candidate = _window(x, i, j, stride, h_out, w_out)
            better = candidate > out  # strict: an equal value later in the window does not win
            np.copyto(out, candidate, where=better)
            np.copyto(argmax, i * kernel_size + j, where=better)
    return out, argmax


def maxpool_backward(dout, argmax, x_shape, kernel_size, stride, out=None):
    """Route each output gradient to the input pixel that was the window's maximum.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out)
    argmax : ndarray, int8, shape (N, C, H_out, W_out), from ``maxpool_forward``
    x_shape : tuple (N, C, H, W)
    kernel_size, stride : int (pixels)
    out : ndarray, optional, shape ``x_shape``

    Returns
    -------
    dx : ndarray, shape (N, C, H, W); zero except at the maxima, where overlapping
        windows that chose the same pixel add up.
    """
    if out is None:
        out = np.empty(x_shape, dout.dtype)
    check_out(out, tuple(x_shape), dout.dtype, "maxpool_backward out")
    h_out, w_out = dout.shape[2], dout.shape[3]
    out[...] = 0
    for i in range(kernel_size):
        for j in range(kernel_size):
            routed = np.where(argmax == i * kernel_size + j, dout, 0)
            _window(out, i, j, stride, h_out, w_out)[...] += routed
    return out


# ----------------------------------------------------------------------------- fused conv block

def conv_relu_pool_forward(y, b, n, h, w, kernel_size, stride, out=None, argmax=None):
    """Bias, ReLU and max-pooling applied to a convolution's GEMM output in one pass.

    Parameters
    ----------
    y : ndarray, shape (C, N*H*W)
        Channel-major GEMM output ``W_cols @ cols`` of a convolution (no bias yet).
    b : ndarray, shape (C,)
    n, h, w : int
        Batch size and the convolution's output height and width (pixels).
    kernel_size, stride : int
        Of the max-pooling (pixels).
    out : ndarray, optional, shape (N, C, H_out, W_out)
    argmax : ndarray, optional, int8, same shape

    Returns
    -------
    out : ndarray, ``maxpool(relu(y + b))`` in NCHW
    argmax : ndarray, int8, the window position of the maximum of ``y + b``

    Notes
    -----
    ReLU is monotone, so ``maxpool(relu(z)) = relu(maxpool(z))``: pooling first and
    clipping the pooled values is the same function with 1/kernel_size**2 of the
    ReLU work. Defined here by composition of the reference kernels.
    """
    z = bias_add_nchw(y, b, n).reshape(n, y.shape[0], h, w)
    out, argmax = maxpool_forward(z, kernel_size, stride, out, argmax)
    relu_forward(out, out=out)
    return out, argmax


def relu_pool_backward_cm(dout, argmax, out, h, w, kernel_size, stride, dy=None, db=None):
    """Gradient of ``conv_relu_pool_forward`` with respect to ``y`` and ``b``.

    Parameters
    ----------
    dout : ndarray, shape (N, C, H_out, W_out)
    argmax, out : ndarray, from ``conv_relu_pool_forward``
    h, w, kernel_size, stride : int
        As in the forward pass.
    dy : ndarray, optional, shape (C, N*H*W)
    db : ndarray, optional, shape (C,)

    Returns
    -------
    dy : ndarray, shape (C, N*H*W), channel-major, ready for the weight and input GEMMs
    db : ndarray, shape (C,)

    Notes
    -----
    The chain rule through the three steps, in reverse: ReLU passes ``dout`` where
    ``out > 0``; pooling routes it to the argmax; the bias gradient sums it per channel.
    """
    n, c = dout.shape[:2]
    dz = maxpool_backward(relu_backward(dout, out), argmax, (n, c, h, w), kernel_size, stride)
    db, dy = bias_grad_nchw(dz, db=db, dout_cm=dy)
    return dy, db


# ----------------------------------------------------------------------------- dropout

def dropout_forward(x, p, seed, counter, out=None, mask=None):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by 1/(1-p).

    Parameters
    ----------
    x : ndarray, any shape
    p : float in [0, 1)
        Drop probability.
    seed, counter : int
        The mask is a pure function of (seed, counter, element index), see
        ``kernels._hash``; use a new counter for every step.
    out, mask : ndarray, optional, shape and dtype of ``x``

    Returns
    -------
    out : ndarray, ``x * mask``
    mask : ndarray, ``0`` where dropped, ``1/(1-p)`` where kept

    References
    ----------
    Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural Networks
    from Overfitting", JMLR 15; the 1/(1-p) scaling at training time ("inverted")
    makes the layer the identity at inference.
    """
    if out is None:
        out = np.empty_like(x)
    if mask is None:
        mask = np.empty_like(x)
    with np.errstate(over="ignore"):
        key = _hash.stream_key(seed, counter)
        u = _hash.uniform(key, np.arange(x.size, dtype=np.uint64)).reshape(x.shape)
    # Compare in float32, the precision of u, so every backend draws the same mask.
    mask[...] = np.where(u >= np.float32(p), 1.0 / (1.0 - p), 0.0)
    np.multiply(x, mask, out=out)
    return out, mask


def dropout_backward(dout, mask, out=None):
    """Gradient of dropout: ``dx = dout * mask`` (same shape as ``dout``)."""
    return np.multiply(dout, mask, out=out)


# ----------------------------------------------------------------------------- batch norm

def _stat_axes(x):
    """Axes batch norm averages over: (N, H, W) for NCHW input, N for (N, F) input."""
    return (0, 2, 3) if x.ndim == 4 else (0,)


def _per_feature(v, x):
    """Reshape a per-channel vector (C,) so it broadcasts against ``x``."""
    return v.reshape(1, -1, 1, 1) if x.ndim == 4 else v.reshape(1, -1)


def batchnorm_forward(x, gamma, beta, running_mean, running_var, momentum, eps, training,
                      out=None, x_hat=None, inv_std=None):
    """Batch normalisation: normalise each channel, then scale by gamma and shift by beta.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W) (per channel over N, H, W) or (N, C) (per feature over N)
    gamma, beta : ndarray, shape (C,)
    running_mean, running_var : ndarray, shape (C,)
        Updated in place when ``training``:
        ``running = (1 - momentum)*running + momentum*batch`` (the batch variance
        unbiased, as in PyTorch); used instead of batch statistics otherwise.
    momentum, eps : float
    training : bool
    out, x_hat : ndarray, optional, shape and dtype of ``x``
    inv_std : ndarray, optional, shape (C,)

    Returns
    -------
    out : ``gamma * x_hat + beta``
    x_hat : ``(x - mean) * inv_std``, kept for the backward pass
    inv_std : ``1 / sqrt(var + eps)``, per channel (C,)

    References
    ----------
    Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network
    Training by Reducing Internal Covariate Shift", ICML, Algorithm 1 and 2.
    """
    axes = _stat_axes(x)
    if out is None:
        out = np.empty_like(x)
    if x_hat is None:
        x_hat = np.empty_like(x)
    if inv_std is None:
        inv_std = np.empty(x.shape[1], x.dtype)
    if training:
        m = x.size // x.shape[1]
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * (m / max(m - 1, 1))
    else:
        mean, var = running_mean, running_var
    inv_std[...] = 1.0 / np.sqrt(var + eps)
    x_hat[...] = (x - _per_feature(mean, x)) * _per_feature(inv_std, x)
    out[...] = _per_feature(gamma, x) * x_hat + _per_feature(beta, x)
    return out, x_hat, inv_std


def batchnorm_backward(dout, x_hat, inv_std, gamma, dgamma, dbeta, out=None):
    """Gradient of training-mode batch normalisation.

    Parameters
    ----------
    dout, x_hat : ndarray, shape (N, C, H, W) or (N, C)
    inv_std, gamma : ndarray, shape (C,)
    dgamma, dbeta : ndarray, shape (C,), written with ``sum(dout * x_hat)`` and ``sum(dout)``
    out : ndarray, optional, shape of ``dout``

    Returns
    -------
    dx : ndarray, ``gamma * inv_std / M * (M*dout - dbeta - x_hat*dgamma)`` with M the
        number of values per channel (Ioffe & Szegedy, 2015, Section 3, chain rule
        collected over the batch mean and variance).
    """
    axes = _stat_axes(dout)
    m = dout.size // dout.shape[1]
    dbeta[...] = dout.sum(axis=axes)
    dgamma[...] = (dout * x_hat).sum(axis=axes)
    scale = _per_feature(gamma * inv_std / m, dout)
    dx = scale * (m * dout - _per_feature(dbeta, dout) - x_hat * _per_feature(dgamma, dout))
    if out is None:
        return dx
    out[...] = dx
    return out


# ----------------------------------------------------------------------------- loss

def softmax_xent_forward(logits, labels, probs=None, stats=None):
    """Softmax of the logits and the cross-entropy against integer labels.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
    labels : ndarray, int64, shape (N,), values in [0, K)
    probs : ndarray, optional, shape (N, K)
    stats : ndarray, optional, float64, shape (2,)

    Returns
    -------
    probs : ndarray, shape (N, K), ``softmax(logits)`` row by row
    stats : ndarray, float64, shape (2,)
        ``[sum over the batch of -log probs[n, labels[n]], number of rows whose
        argmax (first on ties) equals the label]``. The mean loss is ``stats[0] / N``.

    Notes
    -----
    Subtracting each row's maximum before ``exp`` (log-sum-exp) keeps every
    exponent <= 0, so nothing overflows; the loss comes from the log-probability
    ``shifted - log(sum(exp(shifted)))`` rather than from ``log(probs)``, which
    would give ``-inf`` when a probability underflows to 0 (Goodfellow, Bengio &
    Courville, 2016, Deep Learning, Section 4.1).
    """
    n = logits.shape[0]
    if probs is None:
        probs = np.empty_like(logits)
    if stats is None:
        stats = np.empty(2, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs[...] = np.exp(log_probs)
    stats[0] = -log_probs[np.arange(n), labels].sum(dtype=np.float64)
    stats[1] = np.count_nonzero(logits.argmax(axis=1) == labels)
    return probs, stats


def softmax_xent_backward(probs, labels, out=None):
    """Gradient of the mean cross-entropy with respect to the logits: ``(probs - onehot) / N``.

    probs : (N, K) from ``softmax_xent_forward``; labels : (N,) int64; returns (N, K).
    """
    n = probs.shape[0]
    if out is None:
        out = np.empty_like(probs)
    out[...] = probs
    out[np.arange(n), labels] -= 1
    out /= n
    return out


# ----------------------------------------------------------------------------- optimizers

def adam_step(param, grad, m, v, lr, beta1, beta2, eps, t, weight_decay=0.0):
    """One Adam update of ``param`` in place (Kingma & Ba, 2015, Algorithm 1).

    Parameters
    ----------
    param, grad, m, v : ndarray, same shape and dtype
        Parameter, its gradient, and the first and second moment estimates
        (updated in place).
    lr : float
        Step size (per step).
    beta1, beta2 : float in [0, 1)
        Decay rates of the moment estimates.
    eps : float
        Added to ``sqrt(v_hat)`` in the denominator, as in Algorithm 1.
    t : int >= 1
        Number of this step, for the bias corrections ``1 - beta**t``.
    weight_decay : float
        L2 penalty added to the gradient (``g = grad + weight_decay*param``), as
        PyTorch's ``Adam(weight_decay=...)``.
    """
    g = grad + weight_decay * param if weight_decay else grad
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    param -= lr * m_hat / (np.sqrt(v_hat) + eps)


def sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay=0.0):
    """One SGD update of ``param`` in place, with optional (Nesterov) momentum.

    ``g = grad + weight_decay*param``; ``velocity = momentum*velocity + g``;
    ``param -= lr * (g + momentum*velocity if nesterov else velocity)``
    (Sutskever et al., 2013, "On the importance of initialization and momentum
    in deep learning", ICML, Eq. 1-4, in PyTorch's formulation). With
    ``momentum = 0`` this is plain gradient descent. All arrays share one shape.
    """
    g = grad + weight_decay * param if weight_decay else grad
    velocity *= momentum
    velocity += g
    param -= lr * (g + momentum * velocity if nesterov else velocity)
