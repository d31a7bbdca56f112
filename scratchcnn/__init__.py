"""scratchcnn: a CNN framework written from scratch in NumPy, with Numba CPU and CUDA kernels.

Subpackages, each importing only those below it (``tests/test_import_layers.py``):
``kernels`` (top level) <- ``nn`` (layers, Sequential, plan) <- ``engine`` (training loop,
profiling, explanations) <- ``files`` (model files, checkpoints, run folders) <- ``apps``
and the command-line tools; ``data`` and ``errors`` at the bottom.

The network's Keras-style ``fit``/``evaluate``/``predict`` are the engine's: this
package, above both, hands them to ``nn.model`` when it is imported.
"""
from scratchcnn.engine import inference as _inference
from scratchcnn.engine import training as _training
from scratchcnn.nn import model as _model

_model.provide_training(_model.TrainingAPI(_training.fit, _inference.loss_and_accuracy, _inference.predict_logits))
