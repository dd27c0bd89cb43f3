"""Training-time augmentation as Keras 3 core layers (backend-agnostic; inactive at inference).

keras-cv is not used: it is archived (0.9.0, 2024), its RandAugment fails on 1-channel images, and
every layer needed here now lives in Keras core."""
from __future__ import annotations

import keras

from emotion.config import AugmentParams


def build_augmenter(params: AugmentParams, seed: int) -> keras.Layer:
    layers = []
    if params.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if params.rotation:
        layers.append(keras.layers.RandomRotation(params.rotation, fill_mode="nearest", seed=seed + 1))
    if params.shift:
        layers.append(keras.layers.RandomTranslation(params.shift, params.shift, fill_mode="nearest", seed=seed + 2))
    if params.zoom:
        layers.append(keras.layers.RandomZoom(params.zoom, fill_mode="nearest", seed=seed + 3))
    if params.contrast:
        layers.append(keras.layers.RandomContrast(params.contrast, value_range=(0, 255), seed=seed + 4))
    if params.erasing:
        layers.append(keras.layers.RandomErasing(factor=params.erasing, scale=(0.02, 0.15),
                                                 value_range=(0, 255), seed=seed + 5))
    return keras.Sequential(layers, name="augment") if layers else keras.layers.Identity(name="augment")
