"""Training-time augmentation as Keras 3 core layers (backend-agnostic; inactive at inference).

keras-cv is not used: it is archived (0.9.0, 2024), its RandAugment fails on 1-channel images, and
every layer needed here now lives in Keras core. Per-image layers run inside the model (on the
accelerator); MixUp and CutMix mix labels too, so they run on whole batches in `batch_mixer`."""
from __future__ import annotations

import keras
import numpy as np

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
    if params.crop:
        # Random-resized crop: zoom *in* by an independent amount per axis (area and aspect ratio vary);
        # unlike RandomCrop it is the identity at inference, so validation sees whole faces.
        layers.append(keras.layers.RandomZoom((-params.crop, 0), (-params.crop, 0), fill_mode="nearest",
                                              seed=seed + 6))
    if params.blur:
        # Webcam and phone faces arrive softer than FER2013's crops (small faces are upscaled); without
        # this a 1 px blur costs about 11 points. One sigma per batch, each image blurred with probability blur.
        layers.append(keras.layers.RandomGaussianBlur(factor=(params.blur, params.blur), kernel_size=7,
                                                      sigma=(0.5, 1.5), value_range=(0, 255), seed=seed + 9))
    if params.contrast:
        layers.append(keras.layers.RandomContrast(params.contrast, value_range=(0, 255), seed=seed + 4))
    if params.brightness:
        layers.append(keras.layers.RandomBrightness(params.brightness, value_range=(0, 255), seed=seed + 7))
    if params.randaugment:
        layers.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=params.randaugment, seed=seed + 8))
    if params.erasing:
        layers.append(keras.layers.RandomErasing(factor=params.erasing, scale=(0.02, 0.15),
                                                 value_range=(0, 255), seed=seed + 5))
    return keras.Sequential(layers, name="augment") if layers else keras.layers.Identity(name="augment")


def batch_mixer(params: AugmentParams, seed: int):
    """None, or a function (images, one-hot labels, rng) → mixed numpy batch (MixUp or CutMix)."""
    mixers = []
    if params.mixup:
        mixers.append(keras.layers.MixUp(alpha=params.mixup, seed=seed + 10))
    if params.cutmix:
        mixers.append(keras.layers.CutMix(factor=params.cutmix, seed=seed + 11))
    if not mixers:
        return None

    def mix(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
        layer = mixers[rng.integers(len(mixers))]
        out = layer({"images": images, "labels": labels}, training=True)
        return keras.ops.convert_to_numpy(out["images"]), keras.ops.convert_to_numpy(out["labels"])

    return mix
