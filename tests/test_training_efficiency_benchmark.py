"""benchmarks/training_efficiency.py times `fit` as the train stage runs it, before anything else, and
counts its page faults: the row that showed a third of a float32 epoch going to the allocator."""
import dataclasses

import keras
import pytest

from conftest import load_script
from emotion.config import load_params
from emotion.training import seed_everything

tensorflow_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                                     reason="op determinism and jit_compile=True are TensorFlow's switches")


@pytest.fixture
def determinism():
    """The test's TensorFlow op-determinism switch; the setting before comes back afterwards."""
    from tensorflow.python.framework import config

    before = config.is_op_determinism_enabled()
    yield config
    (config.enable_op_determinism if before else config.disable_op_determinism)()


def tiny_params():
    return dataclasses.replace(load_params().train, model="cnn_small", width=8, batch_size=8, weights="none")


def test_fit_is_measured_first_with_its_page_faults():
    bench = load_script("benchmarks/training_efficiency.py")
    result = bench.measure(tiny_params(), steps=2)
    assert list(result["rates"])[0] == "fit, as the train stage runs it"
    assert set(result["rates"]) == {"fit, as the train stage runs it", "train step over fit's batches", "train step",
                                    "train step, no augmentation", "forward only"}
    assert all(rate > 0 for rate in result["rates"].values())
    assert result["faults"] >= 0 and result["flops"] > 0


@tensorflow_only
def test_measures_with_the_train_stages_deterministic_ops_and_gives_the_setting_back(determinism):
    bench = load_script("benchmarks/training_efficiency.py")
    determinism.disable_op_determinism()
    policy = keras.mixed_precision.dtype_policy().name
    seen = {}
    original = bench._measure

    def spy(*args):
        seen["during"] = determinism.is_op_determinism_enabled()
        return original(*args)

    bench._measure = spy
    assert bench.measure(tiny_params(), steps=1)["deterministic"] is True and seen["during"] is True
    assert not determinism.is_op_determinism_enabled()
    assert bench.measure(tiny_params(), steps=1, deterministic=False)["deterministic"] is False
    assert seen["during"] is False
    with pytest.raises(RuntimeError), bench.seeded(0, deterministic=True):
        raise RuntimeError("a measurement that fails")
    assert not determinism.is_op_determinism_enabled()
    assert keras.mixed_precision.dtype_policy().name == policy  # measure() switched it to the recipe's precision


@tensorflow_only
def test_jit_compile_reaches_the_steps_keras_can_compile_even_after_training_made_ops_deterministic(determinism):
    seed_everything(0)  # what any earlier train stage in this process leaves behind; Keras refuses XLA under it
    bench = load_script("benchmarks/training_efficiency.py")
    result = bench.measure(tiny_params(), steps=1, jit_compile=True)
    assert result["xla"]["without"] is True and result["deterministic"] is False
    assert determinism.is_op_determinism_enabled()  # the process's setting is restored
