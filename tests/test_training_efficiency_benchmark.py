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
    assert list(result["optimizers"]) == ["recipe", "recipe without the weight average", "plain SGD"]
    assert all(rate > 0 for rate in result["optimizers"].values())


def test_without_a_weight_average_the_optimizer_comparison_leaves_that_row_out():
    bench = load_script("benchmarks/training_efficiency.py")
    result = bench.measure(dataclasses.replace(tiny_params(), ema=0), steps=1)
    assert list(result["optimizers"]) == ["recipe", "plain SGD"]
    assert set(bench.optimizer_shares(result["optimizers"])) == {"optimizer"}


def test_optimizer_shares_are_gaps_in_time_per_image_not_in_rates():
    bench = load_script("benchmarks/training_efficiency.py")
    # 100 images/s = 10 ms an image; 125 = 8 ms; 200 = 5 ms
    shares = bench.optimizer_shares({"recipe": 100, "recipe without the weight average": 125, "plain SGD": 200})
    assert shares == pytest.approx({"optimizer": 0.5, "weight average": 0.2})


def test_interleaved_rates_time_every_step_in_every_round():
    bench = load_script("benchmarks/training_efficiency.py")
    calls = []
    steps = {name: (lambda name=name: calls.append(name)) for name in ("a", "b")}
    rates = bench.interleaved_rates(steps, batch=4, count=6, rounds=3)
    assert calls == ["a"] * 3 + ["b"] * 3 + ["a", "a", "b", "b"] * 3  # warm-up, then alternating slices of 2
    assert set(rates) == {"a", "b"} and all(rate > 0 for rate in rates.values())


def test_images_per_second_warms_up_then_times_every_step():
    bench = load_script("benchmarks/training_efficiency.py")
    calls = []
    assert bench.images_per_second(lambda: calls.append(1), batch=4, steps=5) > 0
    assert len(calls) == 3 + 5


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
