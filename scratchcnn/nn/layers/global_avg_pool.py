"""Global average pooling: one number per channel."""
from __future__ import annotations

from scratchcnn.nn.layers.base import Layer

__all__ = ["GlobalAvgPool2D"]


class GlobalAvgPool2D(Layer):
    """The mean of each channel's feature map: (N, C, H, W) -> (N, C).

    Replaces Flatten before the classifier, so the dense layer sees C features
    whatever the input size (Lin, Chen & Yan, 2014, "Network In Network",
    Section 3.2; He et al., 2016, Section 4.2).

    Notes
    -----
    Forward: ``out[n, c] = sum_{h,w} x[n, c, h, w] / (H*W)``.
    Backward: ``dx[n, c, h, w] = dout[n, c] / (H*W)``: every pixel of a map took
    an equal share of its mean.
    """

    elementwise = False  # it averages each map away: no spatial unit survives it

    def onnx_nodes(self, x, out, weight, helper):
        """ONNX ``GlobalAveragePool`` gives (N, C, 1, 1); ``Flatten`` makes it (N, C)."""
        return [helper.make_node("GlobalAveragePool", [x], [f"{out}/pooled"], name=self.name),
                helper.make_node("Flatten", [f"{out}/pooled"], [out], name=f"{self.name}.flatten", axis=1)]

    def fold_into(self, previous):
        return None

    def with_channel_affine(self, scale, shift):
        return None

    def explain_unit(self, x, out, image, channel, row, col):
        return None  # each output is the plain mean of one input map

    def output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAvgPool2D needs (C, H, W) per sample, got {tuple(input_shape)}")
        return (int(input_shape[0]),)

    def flops(self, input_shape):
        c, h, w = input_shape
        return c * h * w  # one addition per pixel (and one division per map)

    def forward(self, x, training=True):
        if len(x.shape) != 4:
            raise ValueError(f"{self.name or 'GlobalAvgPool2D'}: expected input of rank 4 (N, C, H, W), "
                             f"got shape {tuple(x.shape)}")
        out = self.K.global_avgpool_forward(x, out=self.workspace("out", x.shape[:2], x.dtype))
        self._cache = {"x_shape": tuple(x.shape)}
        return out

    def backward(self, dout):
        x_shape = self._cache.pop("x_shape")
        if not self.requires_input_grad:
            return None
        return self.K.global_avgpool_backward(dout, x_shape, out=self.workspace("dx", x_shape, dout.dtype))
