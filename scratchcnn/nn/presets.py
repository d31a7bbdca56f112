"""Ready-made networks: the classic two-convolution CNN, a small VGG-style CNN with BatchNorm, and ResNets."""
from __future__ import annotations

from scratchcnn.errors import ConfigError
from scratchcnn.nn.layers import (BatchNorm1D, BatchNorm2D, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool2D,
                               MaxPool2D, ReLU, basic_block)
from scratchcnn.nn.model import Sequential

__all__ = ["PRESETS", "classic", "vgg_small", "resnet", "resnet8", "resnet20", "plain20", "build_model"]


def classic(input_shape=(1, 28, 28), num_classes=10, dropout=0.25):
    """The classic MNIST CNN (as in Keras' ``mnist_convnet`` example), as a list of layers.

    Conv2D(C->32, 3x3) - ReLU - MaxPool 2 - Conv2D(32->64, 3x3) - ReLU - MaxPool 2 -
    Flatten - Dense(->128) - ReLU - Dropout - Dense(128->num_classes).
    Dropout 0.25 rather than Keras' 0.5: in five epochs on Fashion-MNIST it reached
    0.907 test accuracy against 0.900 (seed 0, Glorot init, Adam 1e-3). On 28x28 images Flatten gives 64*5*5 = 1600 features. Images smaller than
    16 pixels (the 8x8 digits) get padding 1 so that two convolutions and two
    poolings still leave a feature map.
    """
    c, h, w = input_shape
    pad = 0 if min(h, w) >= 16 else 1
    convs = [Conv2D(c, 32, 3, padding=pad), ReLU(), MaxPool2D(2),
             Conv2D(32, 64, 3, padding=pad), ReLU(), MaxPool2D(2), Flatten()]
    shape = tuple(input_shape)
    for layer in convs:
        shape = layer.output_shape(shape)
    flat = shape[0]
    return convs + [Dense(flat, 128), ReLU(), Dropout(dropout), Dense(128, num_classes)]


def _vgg_block(in_channels, channels):
    return [Conv2D(in_channels, channels, 3, padding=1, bias=False), BatchNorm2D(channels), ReLU(),
            Conv2D(channels, channels, 3, padding=1, bias=False), BatchNorm2D(channels), ReLU(),
            MaxPool2D(2), Dropout(0.25)]


def vgg_small(input_shape=(1, 28, 28), num_classes=10):
    """A small VGG-style network with batch normalisation, as a list of layers.

    Two blocks of [Conv3x3-BN-ReLU, Conv3x3-BN-ReLU, MaxPool 2, Dropout 0.25] with
    32 and 64 channels and padding 1, then Dense(->256)-BN-ReLU-Dropout 0.5-Dense.
    Layers followed by batch normalisation have no bias, which BN would cancel
    (Simonyan & Zisserman, 2015, "Very Deep Convolutional Networks", 3x3 stacks;
    Ioffe & Szegedy, 2015, batch normalisation before the non-linearity).
    """
    c, h, w = input_shape
    layers = _vgg_block(c, 32) + _vgg_block(32, 64) + [Flatten()]
    flat = 64 * (h // 4) * (w // 4)
    return layers + [Dense(flat, 256, bias=False), BatchNorm1D(256), ReLU(), Dropout(0.5),
                     Dense(256, num_classes)]


def resnet(input_shape=(1, 28, 28), num_classes=10, blocks_per_stage=3, shortcuts=True):
    """He et al.'s CIFAR-10 residual network (2016, Section 4.2), as a list of layers.

    A 3x3 stem convolution to 16 channels (BN, ReLU), three stages of
    ``blocks_per_stage`` basic blocks (two 3x3 convolutions each, ``basic_block``)
    at 16, 32 and 64 channels, the first block of the second and third stage
    with stride 2, global average pooling and one dense layer: ``6n + 2``
    layers with weights for ``n = blocks_per_stage`` (20 for n = 3). Where a
    block changes the shape its shortcut is a 1x1 convolution with stride 2 and
    BN (the paper's option B; its CIFAR models use option A, zero-padded
    identities, which have no parameters: 0.27M there, 2,752 more here). Any
    input size works: 28x28 gives 28 -> 14 -> 7 maps, 32x32 gives 32 -> 16 -> 8.
    ``shortcuts=False`` gives the plain network of the same depth (Figure 6's
    "plain-20"), for the degradation experiment.
    """
    c = input_shape[0]
    layers = [Conv2D(c, 16, 3, padding=1, init="he", bias=False), BatchNorm2D(16), ReLU()]
    channels = 16
    for stage, width in enumerate((16, 32, 64)):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            made = basic_block(channels, width, stride, shortcut=shortcuts)
            layers += made if isinstance(made, list) else [made]
            channels = width
    return layers + [GlobalAvgPool2D(), Dense(64, num_classes)]


def resnet20(input_shape=(1, 28, 28), num_classes=10):
    """ResNet-20 (He et al., 2016, Section 4.2, n = 3): three basic blocks per stage; see ``resnet``."""
    return resnet(input_shape, num_classes, blocks_per_stage=3)


def resnet8(input_shape=(1, 28, 28), num_classes=10):
    """ResNet-8 (n = 1): one basic block per stage, for quick runs; see ``resnet``."""
    return resnet(input_shape, num_classes, blocks_per_stage=1)


def plain20(input_shape=(1, 28, 28), num_classes=10):
    """ResNet-20 without its shortcuts (He et al., 2016, Figure 6, "plain-20"); see ``resnet``."""
    return resnet(input_shape, num_classes, blocks_per_stage=3, shortcuts=False)


PRESETS = {"classic": classic, "vgg-small": vgg_small, "resnet8": resnet8, "resnet20": resnet20, "plain20": plain20}


def build_model(preset: str, input_shape, num_classes: int, seed=None, backend=None) -> Sequential:
    """A ``Sequential`` of preset ``preset`` (a key of ``PRESETS``), initialised from ``seed``.

    Raises
    ------
    ConfigError
        For an unknown preset name.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown model {preset!r}; expected one of {', '.join(PRESETS)}")
    layers = PRESETS[preset](tuple(input_shape), num_classes)
    return Sequential(layers, input_shape=input_shape, seed=seed, backend=backend)
