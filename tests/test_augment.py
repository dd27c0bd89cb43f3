import dataclasses

import keras
import numpy as np

from emotion.augment import build_augmenter


def images():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (4, 48, 48, 1)).astype("float32")


def test_augmentation_changes_images_in_training_only(params):
    augmenter = build_augmenter(params.train.augment, seed=1)
    x = images()
    assert not np.allclose(np.asarray(augmenter(x, training=True)), x)
    np.testing.assert_array_equal(np.asarray(augmenter(x, training=False)), x)


def test_layers_follow_params(params):
    only_flip = dataclasses.replace(params.train.augment, rotation=0.0, shift=0.0, zoom=0.0, contrast=0.0, erasing=0.0)
    names = [type(layer).__name__ for layer in build_augmenter(only_flip, seed=0).layers]
    assert names == ["RandomFlip"]
    everything = [type(layer).__name__ for layer in build_augmenter(params.train.augment, seed=0).layers]
    assert {"RandomFlip", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomContrast",
            "RandomErasing"} <= set(everything)


def test_all_augmentation_off_is_identity(params):
    off = dataclasses.replace(params.train.augment, flip=False, rotation=0.0, shift=0.0, zoom=0.0, contrast=0.0,
                              erasing=0.0)
    augmenter = build_augmenter(off, seed=0)
    assert isinstance(augmenter, keras.layers.Identity)
    np.testing.assert_array_equal(np.asarray(augmenter(images(), training=True)), images())


def test_augmentation_stays_in_grey_level_range(params):
    out = np.asarray(build_augmenter(params.train.augment, seed=3)(images(), training=True))
    assert out.min() >= 0 and out.max() <= 255 and out.shape == (4, 48, 48, 1)
