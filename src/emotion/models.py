"""Model zoo. Every model takes float32 N×48×48×1 grey levels in 0..255 (resizing and scaling are
inside the model, so exported files need no extra preprocessing) and returns 7 softmax probabilities.

Own models (from scratch): cnn_small, vgg, resnet, mobilenet. keras.applications backbones
(efficientnetv2s, resnet50v2, vgg16) take the grey image repeated to 3 channels, with ImageNet
weights or none; their base model is the layer named "backbone" (see `set_backbone_trainable`)."""
from __future__ import annotations

import keras
from keras import layers

from emotion.config import TrainParams
from emotion.data import CLASSES


def build_model(params: TrainParams, image_size: int = 48) -> keras.Model:
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = inputs
    if params.input_crop < image_size:
        x = CropWindow(params.input_crop, seed=params.seed + 20, name="crop")(x)
    if params.resize != image_size:
        x = Resize(params.resize, name="resize")(x)
    if params.model in BACKBONES:
        x = application(x, params)
    elif params.model in MODELS:
        x = MODELS[params.model](layers.Rescaling(1 / 255.0)(x), params)
    else:
        raise ValueError(f"unknown model {params.model!r}; choose one of {', '.join([*MODELS, *BACKBONES])}")
    outputs = layers.Dense(len(CLASSES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=params.model)


@keras.saving.register_keras_serializable(package="emotion")
class Resize(layers.Layer):
    """Bilinear resize to size × size. Not keras.layers.Resizing: that preprocessing layer defaults to
    training=True, and in the graph model.export traces (hence the SavedModel and ONNX files) the layers
    after it then ran in training mode: batch norm used batch statistics."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, images):
        return keras.ops.image.resize(images, (self.size, self.size), interpolation="bilinear")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="emotion")
class CropWindow(layers.Layer):
    """A size × size window of each image: a random one per image in training (translation without
    invented borders, and fewer pixels per step: a 40 px window costs 0.69× the FLOPs of 48 px), the
    centre at inference, so saved and exported models still take whole 48×48 faces. Ten-crop TTA shifts
    the image so that this centre window falls on each corner (see evaluation.tta_views)."""

    def __init__(self, size: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.size, self.seed = size, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        margin = images.shape[1] - self.size
        if not training or margin == 0:
            start = margin // 2
            return images[:, start:start + self.size, start:start + self.size, :]
        # per-image offsets as one-hot row/column selections: exact, and the same code on every backend
        n = keras.ops.shape(images)[0]
        offsets = keras.random.randint((2, n), 0, margin + 1, seed=self.generator)
        window = keras.ops.arange(self.size)
        rows = keras.ops.one_hot(offsets[0][:, None] + window[None, :], images.shape[1], dtype=images.dtype)
        cols = keras.ops.one_hot(offsets[1][:, None] + window[None, :], images.shape[2], dtype=images.dtype)
        return keras.ops.einsum("nih,nhwc,njw->nijc", rows, images, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "seed": self.seed}


def _conv_bn_relu(x, filters: int, strides: int = 1):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def cnn_small(x, params: TrainParams):
    """Baseline: three single-conv blocks and global pooling (~0.1M parameters at width 32)."""
    for i in range(3):
        x = _conv_bn_relu(x, params.width * 2**i)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(params.dropout)(x)


def vgg(x, params: TrainParams):
    """VGG-style: four blocks of two 3×3 convs with batch norm; dense or global-pooling head."""
    for i in range(4):
        x = _conv_bn_relu(x, params.width * 2**i)
        x = _conv_bn_relu(x, params.width * 2**i)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(params.dropout / 4)(x)
    if params.head == "gap":
        x = layers.GlobalAveragePooling2D()(x)
    else:
        x = layers.Flatten()(x)
        x = layers.Dense(params.dense_units, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return layers.Dropout(params.dropout)(x)


def resnet(x, params: TrainParams):
    """ResNet-18 layout for small images: 3×3 stem without pooling, four stages of two basic blocks
    (widths w..8w, stride 2 from the second stage), global pooling."""
    x = _conv_bn_relu(x, params.width)
    for stage in range(4):
        for block in range(2):
            x = _basic_block(x, params.width * 2**stage, strides=2 if stage and not block else 1)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(params.dropout)(x)


def _basic_block(x, filters: int, strides: int):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    y = _conv_bn_relu(x, filters, strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization()(y)
    return layers.Activation("relu")(layers.Add()([shortcut, y]))


def mobilenet(x, params: TrainParams):
    """MobileNetV2-style, for fast inference: inverted residual blocks (expand ×4, depthwise 3×3,
    linear projection), widths w/2..4w over four resolutions, global pooling."""
    x = _conv_bn_relu(x, params.width)
    plan = [(params.width // 2, 1, 1), (params.width, 2, 2), (params.width * 2, 2, 3),
            (params.width * 3, 2, 3), (params.width * 4, 2, 2)]  # (channels, first stride, blocks)
    for filters, strides, blocks in plan:
        for block in range(blocks):
            x = _inverted_residual(x, filters, strides if block == 0 else 1)
    x = _conv_bn_relu(x, params.width * 8)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dropout(params.dropout)(x)


def _inverted_residual(x, filters: int, strides: int, expand: int = 4):
    y = layers.Conv2D(x.shape[-1] * expand, 1, use_bias=False)(x)
    y = layers.Activation("relu6")(layers.BatchNormalization()(y))
    y = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False)(y)
    y = layers.Activation("relu6")(layers.BatchNormalization()(y))
    y = layers.BatchNormalization()(layers.Conv2D(filters, 1, use_bias=False)(y))
    return layers.Add()([x, y]) if strides == 1 and x.shape[-1] == filters else y


# keras.applications constructor, and the input scaling its ImageNet weights expect as plain layers
# (Lambda layers would not survive saving). Inputs are grey levels 0..255 repeated to RGB, so
# VGG16's RGB→BGR swap is a no-op and only its mean subtraction remains.
BACKBONES = {
    "efficientnetv2s": (lambda **kw: keras.applications.EfficientNetV2S(include_preprocessing=True, **kw),
                        lambda: layers.Identity()),
    "resnet50v2": (keras.applications.ResNet50V2, lambda: layers.Rescaling(1 / 127.5, offset=-1.0)),
    "vgg16": (keras.applications.VGG16,
              lambda: layers.Rescaling(1.0, offset=[-103.939, -116.779, -123.68])),  # constants, ONNX-safe
}


def application(x, params: TrainParams):
    constructor, scaling = BACKBONES[params.model]
    rgb = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    backbone = constructor(include_top=False, weights=None if params.weights == "none" else params.weights,
                           input_shape=(params.resize, params.resize, 3), pooling="avg")
    backbone.name = "backbone"
    x = backbone(scaling()(rgb))
    return layers.Dropout(params.dropout)(x)


def set_backbone_trainable(model: keras.Model, top: int | None) -> None:
    """None: freeze the backbone. Otherwise train its top `top` layers (0 = all), except batch norm,
    whose ImageNet statistics are kept (the usual fine-tuning practice)."""
    backbone = model.get_layer("backbone")
    backbone.trainable = top is not None
    if top is None:
        return
    start = 0 if top == 0 else max(len(backbone.layers) - top, 0)
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)


MODELS = {"cnn_small": cnn_small, "vgg": vgg, "resnet": resnet, "mobilenet": mobilenet}
