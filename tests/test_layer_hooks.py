"""A layer owns its behaviour: every registered layer class answers every hook of ``Layer`` (or says
explicitly that it has none), and defining a class is all it takes to register it."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from scratchcnn.nn.layers import LAYER_CLASSES, BatchNorm2D, Conv2D, Layer, ReLU, basic_block
from scratchcnn.nn.layers.base import HOOKS
from scratchcnn.nn.model import Sequential


class _FakeHelper:
    """Stands in for ``onnx.helper``: records the nodes a layer asks for."""

    @staticmethod
    def make_node(op_type, inputs, outputs, name=None, **attributes):
        return {"op_type": op_type, "inputs": list(inputs), "outputs": list(outputs), "name": name, **attributes}


# One small instance of every layer class of the package, with an input it takes.
EXAMPLES = {
    "Conv2D": (lambda rng: Conv2D(2, 3, 3, padding=1, rng=rng), (2, 2, 5, 5)),
    "ReLU": (lambda rng: ReLU(), (2, 3, 4, 4)),
    "MaxPool2D": (lambda rng: LAYER_CLASSES["MaxPool2D"](2), (2, 3, 4, 4)),
    "Flatten": (lambda rng: LAYER_CLASSES["Flatten"](), (2, 3, 2, 2)),
    "Dense": (lambda rng: LAYER_CLASSES["Dense"](4, 3, rng=rng), (2, 4)),
    "Dropout": (lambda rng: LAYER_CLASSES["Dropout"](0.5, seed=1), (2, 3, 4, 4)),
    "BatchNorm2D": (lambda rng: BatchNorm2D(3), (2, 3, 4, 4)),
    "BatchNorm1D": (lambda rng: LAYER_CLASSES["BatchNorm1D"](4), (2, 4)),
    "GlobalAvgPool2D": (lambda rng: LAYER_CLASSES["GlobalAvgPool2D"](), (2, 3, 4, 4)),
    "Residual": (lambda rng: basic_block(2, 3, stride=2), (2, 2, 5, 5)),
}


def _registered_package_layers():
    return {name: cls for name, cls in LAYER_CLASSES.items() if cls.__module__.startswith("scratchcnn.")}


def test_every_package_layer_has_an_example():
    assert set(_registered_package_layers()) <= set(EXAMPLES), "a layer class has no example here"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_every_layer_answers_every_hook(name, rng):
    cls = LAYER_CLASSES[name]
    for hook in HOOKS:  # defined by the class itself or a layer base below Layer, never Layer's default
        owner = next(klass for klass in cls.__mro__ if hook in vars(klass))
        assert owner is not Layer, f"{name} does not answer the hook {hook!r}"
    factory, shape = EXAMPLES[name]
    layer = factory(rng)
    assert isinstance(layer.elementwise, bool)
    x = rng.standard_normal(shape).astype(np.float32)
    out = np.array(layer.forward(x, training=False))
    names = []
    nodes = layer.onnx_nodes("x", "y", lambda key: names.append(key) or f"{name}.{key}", _FakeHelper)
    # The last node writes "y"; a layer of several nodes names its intermediate tensors under "y/".
    assert isinstance(nodes, list) and (not nodes or nodes[-1]["outputs"] == ["y"])
    assert all(out == "y" or out.startswith("y/") for node in nodes for out in node["outputs"])
    assert set(names) <= set(layer.params) | set(layer.buffers)
    scale, shift = np.full(out.shape[1], 2.0), np.arange(out.shape[1], dtype=np.float64)
    absorbed = layer.with_channel_affine(scale, shift)
    if absorbed is not None:  # the same layer computing scale*out + shift per output channel
        want = out * scale.reshape((1, -1) + (1,) * (out.ndim - 2)) + shift.reshape((1, -1) + (1,) * (out.ndim - 2))
        np.testing.assert_allclose(absorbed.forward(x, training=False), want, rtol=1e-5, atol=1e-5)
    assert layer.fold_into(ReLU()) is None  # nothing folds into a ReLU
    unit = layer.explain_unit(x, out, 0, 0, 0, 0) if out.ndim == 4 else None
    assert unit is None or (isinstance(unit, dict) and unit["framework_output"] == pytest.approx(out[0, 0, 0, 0]))
    if out.ndim == 4 and unit is not None:
        assert unit["output"] == pytest.approx(unit["framework_output"], rel=1e-5, abs=1e-6)


def test_batchnorm_folds_into_the_convolution_before_it(rng):
    conv, bn = Conv2D(2, 3, 3, rng=rng), BatchNorm2D(3)
    bn.params["gamma"][...] = [0.5, 2.0, -1.0]
    bn.params["beta"][...] = [0.1, -0.2, 0.3]
    bn.buffers["running_mean"][...] = [1.0, -1.0, 0.5]
    bn.buffers["running_var"][...] = [4.0, 0.25, 1.0]
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    want = np.array(bn.forward(conv.forward(x, training=False), training=False))
    folded = bn.fold_into(conv)
    assert isinstance(folded, Conv2D) and folded.bias
    np.testing.assert_allclose(folded.forward(x, training=False), want, rtol=1e-5, atol=1e-5)


def test_defining_a_layer_registers_it_and_a_model_file_can_name_it():
    class Scale2(Layer):
        """A test layer: doubles its input."""

        elementwise = True

        def forward(self, x, training=True):
            return x * 2

        def backward(self, dout):
            return dout * 2

        def onnx_nodes(self, x, out, weight, helper):
            return []

        def fold_into(self, previous):
            return None

        def with_channel_affine(self, scale, shift):
            return None

        def explain_unit(self, x, out, image, channel, row, col):
            return None

    try:
        assert LAYER_CLASSES["Scale2"] is Scale2
        model = Sequential([Scale2(), LAYER_CLASSES["Flatten"]()], input_shape=(1, 2, 2), backend="numpy")
        again = Sequential.from_config(model.get_config(), backend="numpy")
        assert [type(layer) for layer in again.layers] == [Scale2, LAYER_CLASSES["Flatten"]]
        with pytest.raises(TypeError, match="taken"):
            type("Scale2", (Layer,), {})  # another class of the same name would make files ambiguous
    finally:
        del LAYER_CLASSES["Scale2"]


def test_private_bases_and_opted_out_classes_stay_out_of_the_registry():
    assert "_BatchNorm" not in LAYER_CLASSES

    class NotSaved(ReLU, register=False):
        pass

    assert "NotSaved" not in LAYER_CLASSES


def test_loading_allocates_no_weights_for_layers_with_arrays():
    for cls in (Conv2D, LAYER_CLASSES["Dense"], BatchNorm2D):
        assert "rng" in inspect.signature(cls).parameters  # the from_config convention
    conv = Conv2D.from_config({"in_channels": 1, "out_channels": 2, "kernel_size": 3}, initialize=False)
    assert conv.params == {}
