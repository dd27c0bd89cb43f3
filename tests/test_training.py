import dataclasses

import keras
import numpy as np
import pytest

from emotion.data import CLASSES
from emotion.models import MODELS, build_model
from emotion.synthetic import synthetic_face
from emotion.training import class_weights, learning_rate, resolve_precision, train


class FakeLive:
    def __init__(self):
        self.metrics, self.steps = {}, 0

    def log_metric(self, name, value, plot=True):
        self.metrics.setdefault(name, []).append(value)

    def next_step(self):
        self.steps += 1


def fake_split(n_per_class, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    images = np.stack([synthetic_face(int(label), rng) for label in labels])
    return {"images": images, "labels": labels}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_grey_images_to_probabilities(tiny_train, name):
    model = build_model(dataclasses.replace(tiny_train, model=name))
    out = np.asarray(model(np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype("float32")))
    assert out.shape == (3, len(CLASSES))
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)


def test_vgg_heads_differ_in_size(tiny_train):
    dense = build_model(dataclasses.replace(tiny_train, model="vgg", head="dense"))
    gap = build_model(dataclasses.replace(tiny_train, model="vgg", head="gap"))
    assert dense.count_params() > gap.count_params()


def test_class_weights():
    labels = np.array([0] * 90 + [1] * 10 + [2, 3, 4, 5, 6] * 2)
    assert class_weights(labels, "none") is None
    balanced, sqrt = class_weights(labels, "balanced"), class_weights(labels, "sqrt")
    assert balanced[1] / balanced[0] == pytest.approx(9.0)
    assert sqrt[1] / sqrt[0] == pytest.approx(3.0)
    counts = np.bincount(labels)
    assert sum(balanced[c] * counts[c] for c in range(7)) == pytest.approx(len(labels))


def test_cosine_schedule_warms_up_then_decays(tiny_train):
    params = dataclasses.replace(tiny_train, lr=0.01, epochs=10, warmup_epochs=1, schedule="cosine")
    schedule = learning_rate(params, steps_per_epoch=100)
    lrs = [float(schedule(step)) for step in (0, 100, 550, 999)]
    assert lrs[0] < lrs[1] == pytest.approx(0.01) and lrs[1] > lrs[2] > lrs[3]


def test_precision_choice():
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("auto") in ("float32", "mixed_bfloat16")


def test_training_learns_saves_best_model_and_logs_every_epoch(tiny_train, tmp_path):
    # batch norm's moving averages (momentum 0.99) need several hundred steps before inference works
    params = dataclasses.replace(tiny_train, epochs=5, lr=0.003, batch_size=4, class_weight="balanced")
    live = FakeLive()
    path = tmp_path / "model.keras"
    summary = train(params, fake_split(60, 0), fake_split(4, 1), path, live)
    assert live.steps == summary["epochs_run"] == 5
    assert len(live.metrics["val/accuracy"]) == 5 and "train/loss" in live.metrics
    assert summary["best_val_accuracy"] == pytest.approx(max(live.metrics["val/accuracy"]))
    assert summary["best_val_accuracy"] > 0.5  # chance is 1/7: it learned the stripes
    saved = keras.models.load_model(path)
    assert saved.name == "cnn_small" and saved.dtype_policy.name == "float32"
    val = fake_split(4, 1)
    accuracy = (np.asarray(saved(val["images"][..., None].astype("float32"))).argmax(1) == val["labels"]).mean()
    assert accuracy == pytest.approx(summary["best_val_accuracy"], abs=1e-6)  # the best epoch was kept


def test_training_is_repeatable_with_the_same_seed(tiny_train, tmp_path):
    params = dataclasses.replace(tiny_train, epochs=1)
    runs = []
    for name in ("a", "b"):
        train(params, fake_split(6, 0), fake_split(2, 1), tmp_path / f"{name}.keras", FakeLive())
        runs.append(keras.models.load_model(tmp_path / f"{name}.keras").get_weights())
    for left, right in zip(*runs):
        np.testing.assert_array_equal(left, right)
