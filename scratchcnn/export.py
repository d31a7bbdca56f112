"""``python -m scratchcnn.export``: write a trained model as an ONNX file that other runtimes can run.

The graph is built with the ``onnx`` package's helper API (optional extra:
``pip install 'scratchcnn[onnx]'``), each layer giving its own node(s)
(``Layer.onnx_nodes``) in its inference form (ONNX operator specification, opset
``OPSET``, https://onnx.ai/onnx/operators/). For the layers of this package:

============  ==================================================================
scratchcnn    ONNX
============  ==================================================================
Conv2D        ``Conv`` (``W`` as is, (C_out, C_in, kH, kW); bias ``b`` if any)
ReLU          ``Relu``
MaxPool2D     ``MaxPool`` (floor: ``ceil_mode=0``, no padding)
Flatten       ``Flatten(axis=1)`` (the same C-order reshape)
Dense         ``Gemm(A=x, B=W, C=b)``: ``W`` is (in, out), so ``transB=0``
BatchNorm2D/  ``BatchNormalization`` with the running statistics (inference form:
BatchNorm1D   ``gamma*(x - running_mean)/sqrt(running_var + eps) + beta``)
Dropout       left out: the identity at inference
============  ==================================================================

The input ``images`` is (N, C, H, W) float32, already standardised as in
training, ``(pixels/scale - mean)/std``; the model file's ``class_names`` and
``normalization`` are stored in the ONNX file's metadata (``metadata_props``,
JSON values) so that a server can prepare images the same way. The output is
``logits`` (N, num_classes), plus ``probabilities`` with ``--softmax``.

Examples
--------
    python -m scratchcnn.export runs/fashion-20261123-120000 fashion.onnx
    python -m scratchcnn.export runs/fashion-20261123-120000/best_model.npz fashion.onnx --softmax
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from scratchcnn.apps import cli
from scratchcnn.errors import ConfigError
from scratchcnn.files.fileio import atomic_write
from scratchcnn.files.loading import load_saved_model

__all__ = ["OPSET", "to_onnx", "export_model", "main"]

PROG = "python -m scratchcnn.export"
# Opset 17 (ONNX 1.12, 2022): every operator used here has had its current form since opset 15
# or earlier, and every onnxruntime since 1.12 runs it.
OPSET = 17
INPUT, LOGITS, PROBABILITIES = "images", "logits", "probabilities"


def _onnx():
    """The ``onnx`` package, or a ConfigError saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'scratchcnn[onnx]'") from None
    return onnx


def _layer_nodes(layer, x: str, out: str, weights: dict, helper) -> list:
    """The ONNX node(s) computing ``layer`` from tensor ``x`` into tensor ``out`` (the layer's own
    ``onnx_nodes``); adds its arrays to ``weights`` (name -> float32 host array)."""
    arrays = {**layer.params, **layer.buffers}

    def weight(key):
        name = f"{layer.name}.{key}"
        weights[name] = np.ascontiguousarray(layer.K.to_numpy(arrays[key]), np.float32)
        return name

    try:
        return layer.onnx_nodes(x, out, weight, helper)
    except NotImplementedError:
        raise ConfigError(f"{layer.name}: layer class {type(layer).__name__} has no ONNX export") from None


def to_onnx(model, class_names=None, normalization=None, softmax: bool = False, graph_name: str = "scratchcnn"):
    """Build the ONNX model of a ``Sequential`` in inference mode, checked by ``onnx.checker``.

    Parameters
    ----------
    model : Sequential with a known ``input_shape`` (C, H, W)
    class_names : list of str, optional; stored as metadata ``class_names`` (JSON)
    normalization : dict, optional; stored as metadata ``normalization`` (JSON)
    softmax : bool
        Also output ``probabilities`` = Softmax(logits) over axis 1.
    graph_name : str

    Returns
    -------
    onnx.ModelProto with input ``images`` (N, C, H, W) float32 (N dynamic) and output
    ``logits`` (N, num_classes) float32 (and ``probabilities``).

    Raises
    ------
    ConfigError
        If onnx is not installed, the model's input shape is unknown, or a layer has no
        ONNX counterpart.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if model.input_shape is None:
        raise ConfigError("export needs the model's input_shape (pass it to Sequential)")
    num_classes = model.output_shapes()[-1][0]
    layers = model.layers
    nodes, weights, x = [], {}, INPUT
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        out = LOGITS if last else f"{layer.name}.out"
        new = _layer_nodes(layer, x, out, weights, helper)
        if not new:  # the identity at inference: the next layer reads x
            if not last:
                continue
            new = [helper.make_node("Identity", [x], [out], name=layer.name)]
        nodes += new
        x = out
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["N", num_classes])]
    if softmax:
        nodes.append(helper.make_node("Softmax", [LOGITS], [PROBABILITIES], name="softmax", axis=1))
        outputs.append(helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["N", num_classes]))
    graph = helper.make_graph(
        nodes, graph_name,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", *model.input_shape])], outputs,
        initializer=[numpy_helper.from_array(array, name) for name, array in weights.items()])
    onnx_model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                               producer_name="scratchcnn")
    onnx_model.doc_string = ("Input 'images': (N, C, H, W) float32, pixels/scale standardised with "
                             "metadata 'normalization' (mean, std per channel). Output 'logits'.")
    metadata = {"class_names": class_names, "normalization": normalization}
    helper.set_model_props(onnx_model, {k: json.dumps(v) for k, v in metadata.items() if v is not None})
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


def export_model(source, target, softmax: bool = False) -> Path:
    """Export a run folder's ``model.npz`` (or a model file) to the ONNX file ``target``, atomically.

    Raises
    ------
    ConfigError, ModelFileError
        For a missing or unreadable model, or a layer without ONNX counterpart.
    """
    model, meta, _ = load_saved_model(source, backend="numpy")
    onnx_model = to_onnx(model, meta["class_names"], meta["normalization"], softmax=softmax,
                         graph_name=f"scratchcnn-{meta.get('dataset', 'model')}")
    data = onnx_model.SerializeToString()
    return atomic_write(target, lambda f: f.write(data))


def build_parser() -> cli.ArgumentParser:
    p = cli.ArgumentParser(prog=PROG, description=f"Write a trained model as an ONNX file (opset {OPSET}), "
                           "checked by onnx.checker.")
    p.add_argument("run", metavar="RUN_DIR|MODEL.npz", help="a run folder (uses its model.npz) or a model file")
    p.add_argument("output", metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--softmax", action="store_true", help="also output class probabilities (Softmax)")
    return p


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    target = export_model(args.run, args.output, softmax=args.softmax)
    print(f"wrote {target} (ONNX opset {OPSET}; input '{INPUT}', output '{LOGITS}'"
          f"{', ' + repr(PROBABILITIES) if args.softmax else ''})")
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage)."""
    return cli.run_main(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
