"""benchmarks/training_efficiency.py times `fit` as the train stage runs it, before anything else, and
counts its page faults: the row that showed a third of a float32 epoch going to the allocator."""
import dataclasses

import keras
import pytest

from conftest import load_script
from emotion.config import load_params
from emotion.training import seed_everything


def test_fit_is_measured_first_with_its_page_faults():
    bench = load_script("benchmarks/training_efficiency.py")
    params = dataclasses.replace(load_params().train, model="cnn_small", width=8, batch_size=8, weights="none")
    result = bench.measure(params, steps=2)
    assert list(result["rates"])[0] == "fit, as the train stage runs it"
    assert set(result["rates"]) == {"fit, as the train stage runs it", "train step", "train step, no augmentation",
                                    "forward only"}
    assert all(rate > 0 for rate in result["rates"].values())
    assert result["faults"] >= 0 and result["flops"] > 0
    assert result["deterministic"] == (keras.backend.backend() == "tensorflow")  # as the train stage runs


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="jit_compile=True is TensorFlow's switch")
def test_jit_compile_reaches_the_steps_keras_can_compile_even_after_training_made_ops_deterministic():
    from tensorflow.python.framework import config

    seed_everything(0)  # what any earlier train stage in this process leaves behind; Keras refuses XLA under it
    bench = load_script("benchmarks/training_efficiency.py")
    params = dataclasses.replace(load_params().train, model="cnn_small", width=8, batch_size=8, weights="none")
    result = bench.measure(params, steps=1, jit_compile=True)
    assert result["xla"]["without"] is True and result["deterministic"] is False
    assert config.is_op_determinism_enabled()  # the process's setting is restored
