"""Training with Keras 3 APIs only, so the same code runs on TensorFlow (CPU here) and JAX (GPU)."""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from pathlib import Path

import keras
import numpy as np

from emotion.augment import batch_mixer, build_augmenter
from emotion.config import TrainParams
from emotion.data import CLASSES
from emotion.fileio import atomic_path
from emotion.models import build_model, set_backbone_trainable


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend; make TensorFlow ops deterministic where it is the backend."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # only here: the training path itself stays backend-agnostic

        tf.config.experimental.enable_op_determinism()


def resolve_precision(choice: str) -> str:
    """'auto' → mixed_bfloat16 on a GPU or on a CPU with native bf16 (AVX512-BF16/AMX), else float32."""
    if choice != "auto":
        return choice
    if any(d.startswith("gpu") for d in keras.distribution.list_devices()):
        return "mixed_bfloat16"
    if platform.system() == "Linux" and os.path.exists("/proc/cpuinfo"):
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
        if "avx512_bf16" in flags or "amx_bf16" in flags:
            return "mixed_bfloat16"
    return "float32"


def class_weights(labels: np.ndarray, mode: str) -> dict[int, float] | None:
    """'balanced' = n / (k · n_c); 'sqrt' = its square root (milder); weights average 1 over samples."""
    if mode == "none":
        return None
    counts = np.bincount(labels, minlength=len(CLASSES)).astype(float)
    weights = np.where(counts > 0, len(labels) / (len(CLASSES) * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        weights = np.sqrt(weights)
    weights /= (weights * counts).sum() / len(labels)
    return {i: float(w) for i, w in enumerate(weights)}


def learning_rate(params: TrainParams, steps_per_epoch: int, lr: float | None = None, epochs: int | None = None):
    """The schedule for `epochs` epochs (default: all) peaking at `lr` (default: params.lr)."""
    lr, epochs = lr or params.lr, epochs or params.epochs
    if params.schedule == "onecycle":
        return OneCycle(lr, epochs * steps_per_epoch)
    if params.schedule != "cosine":
        return lr
    warmup = params.warmup_epochs * steps_per_epoch
    total = max(epochs * steps_per_epoch - warmup, 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr / 10 if warmup else lr, decay_steps=total, alpha=0.01,
        warmup_target=lr if warmup else None, warmup_steps=warmup)


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle policy (Smith & Topin 2017): linear rise from max_lr/25 over the first 30% of steps,
    then cosine annealing to max_lr/25e4. Momentum is not cycled."""

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = 0.3):
        self.max_lr, self.total_steps, self.pct_start = float(max_lr), int(total_steps), float(pct_start)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        start, peak, end = self.max_lr / 25, self.max_lr, self.max_lr / 25e4
        up = max(self.pct_start * self.total_steps, 1.0)
        rising = start + (peak - start) * step / up
        progress = keras.ops.clip((step - up) / max(self.total_steps - up, 1.0), 0.0, 1.0)
        falling = end + (peak - end) * 0.5 * (1 + keras.ops.cos(math.pi * progress))
        return keras.ops.where(step < up, rising, falling)

    def get_config(self):
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start}


def make_optimizer(params: TrainParams, steps_per_epoch: int, lr: float | None = None, epochs: int | None = None):
    lr = learning_rate(params, steps_per_epoch, lr, epochs)
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=params.weight_decay)
    return keras.optimizers.AdamW(lr, weight_decay=params.weight_decay)


def as_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W → float32 N×H×W×1 grey levels (the models rescale internally)."""
    return images.astype("float32")[..., None]


class BatchFeed(keras.utils.PyDataset):
    """Batches for `fit` when plain shuffled arrays are not enough: class-balanced sampling (each epoch
    draws n images with probability ∝ 1 / class size) and/or MixUp/CutMix. Seeded per epoch and batch,
    so a run is repeatable; runs in the main thread (workers=1)."""

    def __init__(self, images, labels, batch_size: int, balanced: bool, mixer, seed: int, epoch: int = 0):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.balanced, self.mixer, self.seed, self.epoch = balanced, mixer, seed, epoch
        self.one_hot = keras.utils.to_categorical(labels, len(CLASSES))
        self.order = self._order()

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.balanced:
            return rng.permutation(len(self.labels))
        weight = 1.0 / np.bincount(self.labels, minlength=len(CLASSES))[self.labels]
        return rng.choice(len(self.labels), len(self.labels), p=weight / weight.sum())

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = as_model_input(self.images[rows]), self.one_hot[rows]
        if self.mixer:
            x, y = self.mixer(x, y, np.random.default_rng([self.seed, self.epoch, index]))
        return x, y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


class LiveLogger(keras.callbacks.Callback):
    """Per-epoch metrics to DVCLive. dvclive.keras imports tf.keras, so it would break JAX."""

    def __init__(self, live):
        super().__init__()
        self.live = live
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            name = key.replace("val_", "val/", 1) if key.startswith("val_") else f"train/{key}"
            self.live.log_metric("lr" if key == "learning_rate" else name, float(value))
        self.live.log_metric("time/elapsed_s", round(time.perf_counter() - self.started, 1), plot=False)
        self.live.next_step()


class KeepBest(keras.callbacks.Callback):
    """Best-checkpoint on validation accuracy: keeps the best weights in memory, restores them at the
    end and saves the classifier (without augmentation, in float32) to `path` on every improvement."""

    def __init__(self, classifier: keras.Model, save, monitor: str = "val_accuracy"):
        super().__init__()
        self.classifier, self.save, self.monitor = classifier, save, monitor
        self.best, self.best_epoch, self.weights = -math.inf, -1, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best, self.best_epoch = float(value), epoch
            self.weights = self.classifier.get_weights()
            self.save(self.weights)

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.classifier.set_weights(self.weights)


def train(params: TrainParams, train_set: dict, val_set: dict, model_path: Path, live) -> dict:
    """Train the model named in params on uint8 arrays; save the best-on-validation model to model_path.
    With train.frozen_epochs, a pretrained backbone first stays frozen, then its top layers train at a
    lower learning rate (two-phase fine-tuning)."""
    seed_everything(params.seed)
    precision = resolve_precision(params.precision)
    keras.mixed_precision.set_dtype_policy(precision)
    image_size = train_set["images"].shape[1]
    classifier = build_model(params, image_size)
    trainer = keras.Sequential([keras.Input((image_size, image_size, 1)),
                                build_augmenter(params.augment, params.seed), classifier])
    steps = math.ceil(len(train_set["labels"]) / params.batch_size)
    print(f"train: {params.model}, {classifier.count_params():,} parameters, {precision}, "
          f"backend {keras.backend.backend()}, {len(train_set['labels'])} images, {steps} steps/epoch", flush=True)

    def save(weights):
        keras.mixed_precision.set_dtype_policy("float32")
        plain = build_model(dataclasses.replace(params, weights="none"), image_size)  # no second download
        keras.mixed_precision.set_dtype_policy(precision)
        plain.set_weights(weights)
        with atomic_path(model_path) as tmp:
            plain.save(tmp)

    best = KeepBest(classifier, save)
    callbacks = [LiveLogger(live), best,
                 keras.callbacks.EarlyStopping("val_accuracy", patience=params.patience, mode="max")]
    if params.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(params.patience // 3, 1)))
    inputs, epochs_run = fit_inputs(params, train_set, val_set), 0
    for first, last, lr, trainable_top in phases(params):
        if trainable_top != "all":
            set_backbone_trainable(classifier, trainable_top)
            what = "frozen" if trainable_top is None else f"top {trainable_top or 'all'} layers train"
            print(f"train: epochs {first + 1}-{last}: backbone {what}, lr {lr:g}", flush=True)
        trainer.compile(optimizer=make_optimizer(params, steps, lr, last - first),
                        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
                        metrics=["accuracy"])
        history = trainer.fit(**inputs(first), initial_epoch=first, epochs=last, shuffle=True, callbacks=callbacks,
                              verbose=2)
        epochs_run += len(history.history["loss"])  # early stopping ends a phase, not the fine-tuning
    keras.mixed_precision.set_dtype_policy("float32")
    return {"best_epoch": best.best_epoch + 1, "best_val_accuracy": best.best,
            "epochs_run": epochs_run, "precision": precision}


def phases(params: TrainParams) -> list[tuple[int, int, float, object]]:
    """(first epoch, last epoch, peak lr, backbone setting) per training phase; "all" = leave as built."""
    if not params.frozen_epochs:
        return [(0, params.epochs, params.lr, "all")]
    return [(0, params.frozen_epochs, params.lr, None),
            (params.frozen_epochs, params.epochs, params.lr * params.finetune_lr_factor, params.unfreeze_top)]


def fit_inputs(params: TrainParams, train_set: dict, val_set: dict):
    """What every phase's `fit` shares, prepared once: validation arrays, class weights, and the training
    set as arrays, or (for balanced sampling or MixUp/CutMix) a BatchFeed starting at a given epoch."""
    one_hot = lambda labels: keras.utils.to_categorical(labels, len(CLASSES))  # noqa: E731
    shared = {"validation_data": (as_model_input(val_set["images"]), one_hot(val_set["labels"])),
              "class_weight": class_weights(train_set["labels"], params.class_weight)}
    mixer = batch_mixer(params.augment, params.seed)
    if params.sampling == "shuffle" and mixer is None:
        x, y = as_model_input(train_set["images"]), one_hot(train_set["labels"])
        return lambda first: {**shared, "x": x, "y": y, "batch_size": params.batch_size}
    return lambda first: {**shared, "x": BatchFeed(train_set["images"], train_set["labels"], params.batch_size,
                                                   params.sampling == "balanced", mixer, params.seed, epoch=first)}
