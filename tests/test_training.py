import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from emotion.data import CLASSES
from emotion.errors import EmotionError
from emotion.config import APPLICATIONS
from emotion.models import BACKBONES, MODELS, build_model, set_backbone_trainable
from emotion.synthetic import synthetic_face
from conftest import skip_or_fail
from emotion import training
from emotion.training import BatchFeed, class_weights, learning_rate, phases, resolve_precision, seed_everything, train


class FakeLive:
    def __init__(self):
        self.metrics, self.steps = {}, 0

    def log_metric(self, name, value, plot=True):
        self.metrics.setdefault(name, []).append(value)

    def next_step(self):
        self.steps += 1


def fit_and_save(params, train_set, val_set, path, live):
    """train() as the train stage uses it: the returned best model saved to `path`."""
    model, summary = train(params, train_set, val_set, live, Path(path).parent / f"{Path(path).stem}-state")
    model.save(path)
    return summary


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
    wider = build_model(dataclasses.replace(tiny_train, model="vgg", head="dense", dense_units=512))
    assert wider.count_params() > dense.count_params()


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


def test_the_cpu_is_recorded_with_its_family_model_and_cores():
    # a Zen 4 and a Zen 5 EPYC both name themselves "AMD EPYC" in a VM: only the numbers tell them apart
    first = "processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n"
    second = "processor\t: 1\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: Other\n"
    described = training.describe_cpu(first + "\n" + second, cores=2)
    assert described == "AMD EPYC (family 25, model 17), 2 cores"
    assert training.describe_cpu("", cores=None, fallback="arm64") == "arm64"
    assert training.describe_cpu("model name\t: Apple M2\n", cores=8) == "Apple M2, 8 cores"
    assert training.cpu_name().endswith("cores")


def test_training_learns_saves_best_model_and_logs_every_epoch(tiny_train, tmp_path):
    # batch norm's moving averages (momentum 0.99) need several hundred steps before inference works
    params = dataclasses.replace(tiny_train, epochs=5, lr=0.003, batch_size=4, class_weight="balanced")
    live = FakeLive()
    path = tmp_path / "model.keras"
    summary = fit_and_save(params, fake_split(60, 0), fake_split(4, 1), path, live)
    assert live.steps == summary["epochs_run"] == 5
    assert len(live.metrics["val/accuracy"]) == 5 and "train/loss" in live.metrics
    scored = live.metrics["val/accuracy"] + live.metrics.get("val/ema_accuracy", [])  # raw and averaged weights
    # train.recompute_bn: the kept epoch scored again with plain-face batch-norm statistics; the better counts
    assert summary["val_accuracy_bn_trained"] == pytest.approx(max(scored), abs=1e-6)
    assert summary["batchnorm"] == ("recomputed" if summary["val_accuracy_bn_recomputed"] > max(scored) else "trained")
    assert summary["best_val_accuracy"] == pytest.approx(max(max(scored), summary["val_accuracy_bn_recomputed"]))
    assert summary["best_val_accuracy"] > 0.5  # chance is 1/7: it learned the stripes
    # the hidden inputs are recorded with the metrics, so `dvc exp show` tells runs apart
    assert summary["precision"] == "float32" and summary["backend"] == keras.backend.backend()
    assert summary["versions"]["keras"] == keras.__version__ and summary["cpu"]
    saved = keras.models.load_model(path)
    assert saved.name == "cnn_small" and saved.dtype_policy.name == "float32"
    val = fake_split(4, 1)
    accuracy = (np.asarray(saved(val["images"][..., None].astype("float32"))).argmax(1) == val["labels"]).mean()
    assert accuracy == pytest.approx(summary["best_val_accuracy"], abs=1e-6)  # the best epoch was kept


def test_the_weight_average_is_scored_each_epoch_and_kept_only_when_it_wins(tiny_train, tmp_path):
    params = dataclasses.replace(tiny_train, epochs=4, lr=0.003, batch_size=4)
    data = fake_split(20, 0), fake_split(4, 1)
    runs = {}
    for ema in (0.0, 0.9):
        live = FakeLive()
        model, summary = train(dataclasses.replace(params, ema=ema), *data, live, tmp_path / f"state-{ema}")
        runs[ema] = live, model, summary
    (plain, _, plain_summary), (averaged, model, summary) = runs[0.0], runs[0.9]
    assert "val/ema_accuracy" not in plain.metrics and plain_summary["best_weights"] == "raw"
    # scoring the average swaps the raw weights back: training itself is untouched
    assert averaged.metrics["val/accuracy"] == plain.metrics["val/accuracy"]
    assert len(averaged.metrics["val/ema_accuracy"]) == 4
    assert summary["best_val_accuracy_raw"] == max(averaged.metrics["val/accuracy"])
    assert summary["best_val_accuracy_ema"] == max(averaged.metrics["val/ema_accuracy"])
    winner = "ema" if summary["best_val_accuracy_ema"] > summary["best_val_accuracy_raw"] else "raw"
    assert summary["best_weights"] == winner
    val = data[1]
    accuracy = (np.asarray(model(val["images"][..., None].astype("float32"))).argmax(1) == val["labels"]).mean()
    assert accuracy == pytest.approx(summary["best_val_accuracy"], abs=1e-6)  # the winner's weights are returned


@pytest.mark.parametrize("patience, stops_at", [(2, 4), (0, None)])
def test_early_stopping_waits_patience_epochs_after_the_best_and_zero_turns_it_off(patience, stops_at):
    best = training.KeepBest(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), patience)
    best.set_model(best.classifier)
    best.model.stop_training = False  # fit sets it before the first epoch
    for epoch, accuracy in enumerate([0.5, 0.6, 0.55, 0.58, 0.59, 0.57]):  # best at epoch 1 (0-based)
        best.on_epoch_end(epoch, {"val_accuracy": accuracy})
        if best.model.stop_training:
            break
    assert best.best_epoch == 1
    assert (epoch + 1 if best.model.stop_training else None) == stops_at


def test_recomputed_batchnorm_statistics_are_the_mean_of_the_batch_statistics():
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.BatchNormalization()])
    images = np.random.default_rng(0).integers(0, 256, (10, 6, 6), dtype=np.uint8)
    training.recompute_batchnorm(model, images, batch_size=4)  # batches of 4, 4 and 2: not the pooled mean
    batches = [training.as_model_input(images[i:i + 4]) for i in range(0, 10, 4)]
    layer = model.layers[0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), [np.mean([b.mean() for b in batches])],
                               rtol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance),
                               [np.mean([b.var() for b in batches])], rtol=1e-4)
    assert layer.momentum == 0.99  # the layer's own momentum is back for any later training


@pytest.mark.parametrize("scores, kept", [((0.5, 0.6), "recomputed"), ((0.6, 0.5), "trained"), ((0.5, 0.5), "trained")])
def test_recomputed_batchnorm_statistics_are_kept_only_when_val_accuracy_rises(tiny_train, monkeypatch, scores, kept):
    model = build_model(tiny_train, 48)
    trained = model.get_weights()
    answers = iter(scores)  # val accuracy with the trained, then with the recomputed statistics
    monkeypatch.setattr(training, "accuracy_of", lambda *args, **kwargs: next(answers))
    summary = training.keep_recomputed_batchnorm_if_better(model, fake_split(4, 0), fake_split(2, 1))
    assert summary == {"batchnorm": kept, "val_accuracy_bn_trained": scores[0], "val_accuracy_bn_recomputed": scores[1]}
    unchanged = all(np.array_equal(a, b) for a, b in zip(model.get_weights(), trained))
    assert unchanged == (kept == "trained")


def test_training_is_repeatable_with_the_same_seed(tiny_train, tmp_path):
    params = dataclasses.replace(tiny_train, epochs=1)
    runs = []
    for name in ("a", "b"):
        fit_and_save(params, fake_split(6, 0), fake_split(2, 1), tmp_path / f"{name}.keras", FakeLive())
        runs.append(keras.models.load_model(tmp_path / f"{name}.keras").get_weights())
    for left, right in zip(*runs):
        np.testing.assert_array_equal(left, right)


def test_config_and_zoo_name_the_same_backbones():
    assert set(APPLICATIONS) == set(BACKBONES)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbones_build_from_scratch_on_upsampled_grey_images(tiny_train, name):
    model = build_model(dataclasses.replace(tiny_train, model=name, weights="none", resize=32))
    assert model.get_layer("resize").output.shape[1:3] == (32, 32)
    assert model.get_layer("backbone").input.shape[1:] == (32, 32, 3)
    out = np.asarray(model(np.full((2, 48, 48, 1), 128, "float32")))
    assert out.shape == (2, len(CLASSES))


def test_imagenet_weights_are_requested_from_keras_applications(tiny_train, monkeypatch):
    seen = {}

    def fake_vgg16(**kwargs):
        seen.update(kwargs)
        return keras.applications.VGG16(**{**kwargs, "weights": None})

    monkeypatch.setitem(BACKBONES, "vgg16", (fake_vgg16, BACKBONES["vgg16"][1]))
    build_model(dataclasses.replace(tiny_train, model="vgg16", weights="imagenet", resize=64))
    assert seen["weights"] == "imagenet" and seen["input_shape"] == (64, 64, 3) and seen["include_top"] is False


def test_two_phase_schedule(tiny_train):
    assert phases(dataclasses.replace(tiny_train, frozen_epochs=0)) == [(0, tiny_train.epochs, tiny_train.lr, "all")]
    two = phases(dataclasses.replace(tiny_train, epochs=10, frozen_epochs=3, lr=0.01, finetune_lr_factor=0.1,
                                     unfreeze_top=5))
    assert two == [(0, 3, 0.01, None), (3, 10, pytest.approx(0.001), 5)]


def test_unfreezing_the_top_layers_keeps_batch_norm_and_lower_layers_frozen(tiny_train):
    model = build_model(dataclasses.replace(tiny_train, model="resnet50v2", resize=32))
    backbone = model.get_layer("backbone")
    set_backbone_trainable(model, None)
    assert not backbone.trainable and not model.get_layer("backbone").trainable_weights
    set_backbone_trainable(model, 10)
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert trainable and all(layer in backbone.layers[-10:] for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)


def test_two_phase_fine_tuning_trains_only_what_each_phase_allows(tiny_train, tmp_path, monkeypatch):
    class KeepLast(training.KeepBest):  # save every epoch, so the file shows what phase 2 did
        def on_epoch_end(self, epoch, logs=None):
            self.best = -np.inf
            super().on_epoch_end(epoch, logs)

    monkeypatch.setattr(training, "KeepBest", KeepLast)
    params = dataclasses.replace(tiny_train, model="vgg16", resize=32, epochs=2, frozen_epochs=1, unfreeze_top=3,
                                 batch_size=8, lr=0.01)
    seed_everything(params.seed)
    initial = build_model(params)  # the same initial weights train() starts from
    path = tmp_path / "model.keras"
    summary = fit_and_save(params, fake_split(3, 0), fake_split(1, 1), path, FakeLive())
    assert summary["epochs_run"] == 2
    trained = keras.models.load_model(path)
    kernel = lambda model, name: model.get_layer("backbone").get_layer(name).get_weights()[0]  # noqa: E731
    # the top 3 layers are global pooling, block5_pool and block5_conv3: only that conv may change
    for frozen in ("block1_conv1", "block5_conv2"):
        np.testing.assert_array_equal(kernel(trained, frozen), kernel(initial, frozen))
    assert not np.array_equal(kernel(trained, "block5_conv3"), kernel(initial, "block5_conv3"))
    assert not np.array_equal(trained.get_layer("probabilities").get_weights()[0],
                              initial.get_layer("probabilities").get_weights()[0])


def test_one_cycle_rises_then_anneals(tiny_train):
    schedule = learning_rate(dataclasses.replace(tiny_train, lr=0.1, epochs=10, schedule="onecycle"), 100)
    lrs = [float(schedule(step)) for step in (0, 150, 300, 650, 999)]
    assert lrs[0] == pytest.approx(0.1 / 25) and lrs[2] == pytest.approx(0.1, rel=1e-3)
    assert lrs[0] < lrs[1] < lrs[2] > lrs[3] > lrs[4] and lrs[4] < 1e-4


def test_balanced_sampling_evens_out_classes_and_repeats_with_the_seed():
    labels = np.array([0] * 700 + [1] * 20 + [2] * 280)
    images = np.zeros((len(labels), 48, 48), np.uint8)
    feed = BatchFeed(images, labels, batch_size=100, balanced=True, mixer=None, seed=3)
    counts = np.bincount(labels[feed.order], minlength=3)
    assert counts.min() > 250 and counts.max() < 420  # ~333 each instead of 700/20/280
    again = BatchFeed(images, labels, batch_size=100, balanced=True, mixer=None, seed=3)
    np.testing.assert_array_equal(feed.order, again.order)
    first = feed.order.copy()
    feed.on_epoch_end()
    assert not np.array_equal(first, feed.order)
    x, y = feed[0]
    assert x.shape == (100, 48, 48, 1) and x.dtype == np.float32 and y.shape == (100, len(CLASSES))
    assert len(feed) == 10


def test_soft_targets_replace_the_one_hot_labels_batch_for_batch():
    labels = np.arange(20) % len(CLASSES)
    images = np.zeros((20, 48, 48), np.uint8)
    targets = np.random.default_rng(0).dirichlet(np.ones(len(CLASSES)), 20).astype("float32")
    feed = BatchFeed(images, labels, batch_size=8, balanced=False, mixer=None, seed=1, targets=targets)
    rows = feed.order[:8]
    np.testing.assert_array_equal(feed[0][1], targets[rows])
    plain = BatchFeed(images, labels, batch_size=8, balanced=False, mixer=None, seed=1)
    np.testing.assert_array_equal(plain[0][1].argmax(1), labels[rows])


def test_training_on_targets_equal_to_the_labels_gives_the_same_weights_and_soft_ones_differ(tiny_train, tmp_path):
    params = dataclasses.replace(tiny_train, epochs=1)
    train_set, val_set = fake_split(6, 0), fake_split(2, 1)
    one_hot = keras.utils.to_categorical(train_set["labels"], len(CLASSES))
    soft = (0.5 * one_hot + 0.5 / len(CLASSES)).astype("float32")
    runs = {}
    for name, extra in (("labels", {}), ("one_hot", {"targets": one_hot}), ("soft", {"targets": soft})):
        fit_and_save(params, {**train_set, **extra}, val_set, tmp_path / f"{name}.keras", FakeLive())
        runs[name] = keras.models.load_model(tmp_path / f"{name}.keras").get_weights()
    for left, right in zip(runs["labels"], runs["one_hot"]):
        np.testing.assert_array_equal(left, right)
    assert any(not np.array_equal(left, right) for left, right in zip(runs["labels"], runs["soft"]))


def test_targets_of_the_wrong_shape_stop_before_training(tiny_train, tmp_path):
    train_set = fake_split(2, 0)
    with pytest.raises(EmotionError, match=r"'targets' has shape \(14, 6\), expected \(14, 7\)"):
        train(tiny_train, {**train_set, "targets": np.zeros((14, 6), "float32")}, fake_split(1, 1), FakeLive(),
              tmp_path / "state")


def test_training_runs_on_the_jax_backend_without_tensorflow(tmp_path):
    """The GPU machines have JAX but no TensorFlow: train with every batch-level option there, with
    TensorFlow made unimportable, then check TensorFlow reads the saved model identically."""
    try:
        import jax  # noqa: F401
    except ImportError:
        skip_or_fail("jax is not installed (it is in requirements.txt)")
    script = tmp_path / "train_jax.py"
    script.write_text(JAX_SCRIPT)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": f"{NO_TF}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "backend jax" in run.stdout and "tensorflow imported: False" in run.stdout
    jax_proba = np.load(tmp_path / "proba.npy")
    saved = keras.models.load_model(tmp_path / "model.keras")
    val = fake_split(2, 1)
    tf_proba = np.asarray(saved(val["images"][..., None].astype("float32")))
    np.testing.assert_allclose(tf_proba, jax_proba, atol=1e-5)


NO_TF = Path(__file__).parent / "no_tensorflow"
JAX_SCRIPT = """
import dataclasses, sys
from pathlib import Path
import numpy as np
from emotion.config import load_params
sys.path.insert(0, %r)
from test_training import FakeLive, fake_split, fit_and_save
out = Path(sys.argv[1])
base = load_params(%r).train
params = dataclasses.replace(base, model="cnn_small", width=8, epochs=1, batch_size=16, precision="float32",
                             schedule="onecycle", class_weight="none", sampling="balanced",
                             augment=dataclasses.replace(base.augment, mixup=0.2, cutmix=1.0, crop=0.1))
fit_and_save(params, fake_split(6, 0), fake_split(2, 1), out / "model.keras", FakeLive())
import keras
model = keras.models.load_model(out / "model.keras")
np.save(out / "proba.npy", np.asarray(model(fake_split(2, 1)["images"][..., None].astype("float32"))))
print("tensorflow imported:", "tensorflow" in sys.modules)
""" % (str(Path(__file__).parent), str(Path(__file__).parents[1] / "params.yaml"))


def test_an_interrupted_run_resumes_to_bit_identical_weights(tiny_train, tmp_path, monkeypatch):
    """In-process version of tests/test_reproducibility.py's SIGKILL test: stop right after the state of
    epoch 2 is written, resume from it, and compare every weight with an uninterrupted run."""
    # default augmentation: every random layer; the weight average is optimizer state that must resume too
    params = dataclasses.replace(tiny_train, epochs=4, dropout=0.25, ema=0.9)
    data = fake_split(6, 0), fake_split(2, 1)
    uninterrupted, _ = train(params, *data, FakeLive(), tmp_path / "a")

    save = training.TrainingState.on_epoch_end

    def stop_after_epoch_2(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.TrainingState, "on_epoch_end", stop_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(params, *data, FakeLive(), tmp_path / "b", "same inputs")
    monkeypatch.setattr(training.TrainingState, "on_epoch_end", save)
    assert training.saved_state(tmp_path / "b", "same inputs")["epoch"] == 2
    assert training.saved_state(tmp_path / "b", "other inputs") is None  # stale state is not resumed
    live = FakeLive()
    resumed, summary = train(params, *data, live, str(tmp_path / "b"), "same inputs")  # a str folder resumes too
    assert live.steps == 2 and summary["epochs_run"] == 4  # only epochs 3 and 4 ran again
    for left, right in zip(uninterrupted.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(left, right)


def test_a_state_is_resumed_only_where_params_resolve_the_same(tiny_train, monkeypatch):
    """A state is a persistent output that can move between machines: where `precision: auto` resolves
    differently (bf16 on Zen 4/5, float32 on Zen 3) or other devices are chosen, it must start over."""
    float32 = training.run_fingerprint("inputs", dataclasses.replace(tiny_train, precision="float32"))
    assert float32 == training.run_fingerprint("inputs", dataclasses.replace(tiny_train, precision="float32"))
    assert float32 != training.run_fingerprint("other inputs", dataclasses.replace(tiny_train, precision="float32"))
    assert float32 != training.run_fingerprint("inputs", dataclasses.replace(tiny_train, precision="mixed_bfloat16"))
    auto = dataclasses.replace(tiny_train, precision="auto")
    monkeypatch.setattr(training, "resolve_precision", lambda choice: "float32")
    assert training.run_fingerprint("inputs", auto) == float32
    monkeypatch.setattr(training, "resolve_precision", lambda choice: "mixed_bfloat16")
    assert training.run_fingerprint("inputs", auto) != float32
    monkeypatch.setattr(training.keras.distribution, "list_devices", lambda: ["gpu:0", "gpu:1"])
    assert training.run_fingerprint("inputs", dataclasses.replace(tiny_train, devices=1)) != \
        training.run_fingerprint("inputs", dataclasses.replace(tiny_train, devices=2))


def test_a_summary_torn_by_a_kill_is_dropped_and_dvclive_resumes(tmp_path):
    from dvclive import Live

    folder = tmp_path / "dvclive"
    with Live(str(folder), save_dvc_exp=False, dvcyaml=None) as live:
        for epoch in range(3):
            live.log_metric("val/accuracy", 0.1 * epoch)
            live.next_step()
    training.drop_torn_live_summary(folder)
    assert (folder / "metrics.json").exists()  # a whole summary is kept
    (folder / "metrics.json").write_text('{"step": 2, "val": {"accur')  # a kill in the middle of its rewrite
    training.drop_torn_live_summary(folder)
    assert not (folder / "metrics.json").exists()
    with Live(str(folder), save_dvc_exp=False, dvcyaml=None, resume=True) as live:
        live.step = 3  # as LiveLogger sets it from the saved state
        live.log_metric("val/accuracy", 0.3)
        live.next_step()
    steps = (folder / "plots/metrics/val/accuracy.tsv").read_text().splitlines()[1:]
    assert [line.split("\t")[0] for line in steps] == ["0", "1", "2", "3"]
    training.drop_torn_live_summary(tmp_path / "nothing here")  # no summary yet: nothing to do


FREE_AND_ALLOCATE = """
import resource, sys
import numpy as np
from emotion.training import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
for step in range(31):
    if step == 1:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = np.ones(64 << 20, np.uint8)  # a training step's large buffer, freed at the end of the step
    del buffer
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_keeping_freed_memory_stops_the_page_faults_of_every_step():
    if not Path("/proc/self/maps").exists() or not os.confstr("CS_GNU_LIBC_VERSION"):
        pytest.skip("glibc only")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    faults = {}
    for mode in ("as-is", "keep"):
        out = subprocess.run([sys.executable, "-c", FREE_AND_ALLOCATE, mode], capture_output=True, text=True,
                             env=env, timeout=300, check=True).stdout.split()
        faults[mode] = int(out[-1])
        assert out[-2] == ("True" if mode == "keep" else "None")
    assert faults["as-is"] >= 30  # each of the 30 steps faults its buffer in again (in 4 KiB or 2 MiB pages)
    assert faults["keep"] < faults["as-is"] / 10


def test_equal_models_are_saved_as_equal_bytes(tiny_train, tmp_path):
    """The lock hashes models/model.keras: two separately built models with the same weights must give
    the same file (no save date, no zip times, no Python object ids)."""
    for name in ("a", "b"):
        keras.backend.clear_session()  # layer names restart, as in a new process
        seed_everything(1)
        training.save_model(build_model(dataclasses.replace(tiny_train, model="vgg", width=4)), tmp_path / f"{name}.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    assert keras.models.load_model(tmp_path / "a.keras").name == "vgg"
