import dataclasses

import keras
import numpy as np

from emotion.augment import batch_mixer, build_augmenter


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
    with_shift = dataclasses.replace(params.train.augment, shift=0.1)
    everything = [type(layer).__name__ for layer in build_augmenter(with_shift, seed=0).layers]
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


def test_extra_policies_add_layers_and_stay_inactive_at_inference(params):
    extra = dataclasses.replace(params.train.augment, crop=0.2, brightness=0.2, randaugment=2, blur=0.3)
    augmenter = build_augmenter(extra, seed=0)
    names = [type(layer).__name__ for layer in augmenter.layers]
    assert {"RandomBrightness", "RandAugment", "RandomGaussianBlur"} <= set(names) and names.count("RandomZoom") == 1 + bool(extra.zoom)
    x = images()
    np.testing.assert_array_equal(np.asarray(augmenter(x, training=False)), x)
    out = np.asarray(augmenter(x, training=True))
    assert out.min() >= 0 and out.max() <= 255 and not np.allclose(out, x)


def test_blur_spreads_a_bright_pixel_in_every_image_at_probability_one(params):
    only_blur = dataclasses.replace(params.train.augment, flip=False, rotation=0.0, shift=0.0, zoom=0.0,
                                    contrast=0.0, erasing=0.0, blur=1.0)
    x = np.zeros((4, 48, 48, 1), "float32")
    x[:, 24, 24] = 255
    out = np.asarray(build_augmenter(only_blur, seed=0)(x, training=True))
    assert (out[:, 24, 24, 0] < 200).all() and (out[:, 24, 25, 0] > 5).all() and (out[:, 23, 24, 0] > 5).all()
    np.testing.assert_allclose(out.sum(axis=(1, 2, 3)), 255, rtol=0.02)  # a blur moves light, adds none
    assert "RandomGaussianBlur" not in [type(layer).__name__ for layer in build_augmenter(params.train.augment, 0).layers] \
        or params.train.augment.blur


def test_batch_mixer_mixes_labels_and_is_off_by_default(params):
    assert batch_mixer(params.train.augment, seed=0) is None or params.train.augment.mixup or params.train.augment.cutmix
    mix = batch_mixer(dataclasses.replace(params.train.augment, mixup=0.4, cutmix=1.0), seed=0)
    x, y = images(), keras.utils.to_categorical([0, 1, 2, 3], 7)
    soft = [mix(x, y, np.random.default_rng(i))[1] for i in range(6)]
    for labels in soft:
        np.testing.assert_allclose(labels.sum(axis=1), 1, rtol=1e-5)
    assert any((labels.max(axis=1) < 0.999).any() for labels in soft)  # some label mass was moved
