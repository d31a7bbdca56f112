"""Layers: each computes its forward pass and its hand-derived backward pass.

===================  ========================================  ======================
layer                forward                                   file
===================  ========================================  ======================
``Conv2D``           im2col + GEMM + bias                      ``conv2d.py``
``ReLU``             ``max(x, 0)``                             ``relu.py``
``MaxPool2D``        window max, argmax kept for backward      ``maxpool2d.py``
``Flatten``          (N, C, H, W) -> (N, C*H*W)                ``flatten.py``
``Dense``            ``x @ W + b``                             ``dense.py``
``Dropout``          inverted dropout                          ``dropout.py``
``BatchNorm2D/1D``   batch normalisation                       ``batchnorm.py``
``GlobalAvgPool2D``  mean of each map, (N, C, H, W) -> (N, C)  ``global_avg_pool.py``
``Residual``         ``relu(F(x) + S(x))``: a block of layers  ``residual.py``
===================  ========================================  ======================

Each layer answers the hooks of ``Layer`` (``base.HOOKS``: ONNX nodes, folding,
unit explanation, elementwise) and registers itself by being defined; adding one
is its own file, an import here, its tests (DEVELOPING.md, "Adding a layer").
"""
from scratchcnn.nn.layers.base import Layer
from scratchcnn.nn.layers.batchnorm import BatchNorm1D, BatchNorm2D
from scratchcnn.nn.layers.conv2d import Conv2D
from scratchcnn.nn.layers.dense import Dense
from scratchcnn.nn.layers.dropout import Dropout
from scratchcnn.nn.layers.flatten import Flatten
from scratchcnn.nn.layers.global_avg_pool import GlobalAvgPool2D
from scratchcnn.nn.layers.maxpool2d import MaxPool2D
from scratchcnn.nn.layers.relu import ReLU
from scratchcnn.nn.layers.residual import Residual, basic_block

__all__ = ["Layer", "Conv2D", "ReLU", "MaxPool2D", "Flatten", "Dense", "Dropout",
           "BatchNorm2D", "BatchNorm1D", "GlobalAvgPool2D", "Residual", "basic_block", "LAYER_CLASSES"]

# The classes a saved model may name (loading never looks a class up by arbitrary name): every
# Layer subclass registers itself when defined (Layer.__init_subclass__); this is that registry.
LAYER_CLASSES = Layer.registry
