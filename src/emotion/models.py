"""Model zoo. Every model takes float32 N×48×48×1 grey levels in 0..255 (scaling is inside the
model, so exported files need no extra preprocessing) and returns 7 softmax probabilities."""
from __future__ import annotations

import keras
from keras import layers

from emotion.config import TrainParams
from emotion.data import CLASSES


def build_model(params: TrainParams, image_size: int = 48) -> keras.Model:
    try:
        builder = MODELS[params.model]
    except KeyError:
        raise ValueError(f"unknown model {params.model!r}; choose one of {', '.join(MODELS)}") from None
    inputs = keras.Input((image_size, image_size, 1), name="image")
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = builder(x, params)
    outputs = layers.Dense(len(CLASSES), activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=params.model)


def _conv_bn_relu(x, filters: int):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
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
        x = layers.Dense(256, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    return layers.Dropout(params.dropout)(x)


MODELS = {"cnn_small": cnn_small, "vgg": vgg}
