"""benchmarks/resolution_transfer.py scores one set of weights at another input resolution: the copy must
keep every weight and change only the resize layer's size, or its table would compare different models."""
import dataclasses

import numpy as np
import pytest

from conftest import load_script
from emotion.errors import EmotionError
from emotion.models import build_model


def test_the_copy_keeps_the_weights_and_scales_the_window_to_the_new_size(tiny_train):
    bench = load_script("benchmarks/resolution_transfer.py")
    params = dataclasses.replace(tiny_train, model="vgg", width=4, input_crop=40, resize=36)
    model = build_model(params, 48)
    copy = bench.with_resize(model, 40)
    assert copy.get_layer("resize").size == 40 and model.get_layer("resize").size == 36
    for ours, theirs in zip(model.get_weights(), copy.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1)).astype("float32")
    assert not np.allclose(model.predict(faces, verbose=0), copy.predict(faces, verbose=0))


def test_a_model_without_a_resize_layer_is_refused_with_the_fix(tiny_train):
    bench = load_script("benchmarks/resolution_transfer.py")
    model = build_model(dataclasses.replace(tiny_train, model="vgg", width=4, input_crop=40, resize=48), 48)
    with pytest.raises(EmotionError, match="train.resize below the window"):
        bench.with_resize(model, 40)
