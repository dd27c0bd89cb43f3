"""train.input_crop: a random window per image in training, the exact centre at inference."""
import dataclasses

import keras
import numpy as np

from emotion.models import CropWindow, build_model


def ramp(n=16):
    """Images whose pixel values say where they are: value = 100·image + row·48 + column (float32)."""
    grid = np.arange(48 * 48, dtype="float32").reshape(48, 48)
    return np.stack([grid + 10_000 * i for i in range(n)])[..., None]


def test_inference_takes_the_centre_window_exactly():
    layer = CropWindow(40, seed=1)
    x = ramp(2)
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x[:, 4:44, 4:44])


def test_training_takes_an_exact_window_at_a_random_offset_per_image():
    x = ramp()
    out = np.asarray(CropWindow(40, seed=3)(x, training=True))
    assert out.shape == (16, 40, 40, 1)
    offsets = set()
    for i in range(len(x)):
        top, left = divmod(int(out[i, 0, 0, 0] - 10_000 * i), 48)  # the window's top-left pixel tells where it is
        assert 0 <= top <= 8 and 0 <= left <= 8
        np.testing.assert_array_equal(out[i], x[i, top:top + 40, left:left + 40])
        offsets.add((top, left))
    assert len(offsets) > 4  # per image, not one offset for the whole batch


def test_a_model_with_a_window_still_takes_whole_faces(tiny_train):
    model = build_model(dataclasses.replace(tiny_train, input_crop=40))
    assert model.input_shape == (None, 48, 48, 1) and model.get_layer("crop").size == 40
    plain = build_model(dataclasses.replace(tiny_train, input_crop=48))
    assert "crop" not in [layer.name for layer in plain.layers]
    restored = keras.models.model_from_json(model.to_json())
    assert restored.get_layer("crop").get_config()["size"] == 40
