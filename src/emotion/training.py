"""Training with Keras 3 APIs only, so the same code runs on TensorFlow (CPU here) and JAX (GPU)."""
from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import keras
import numpy as np

from emotion.augment import build_augmenter
from emotion.config import TrainParams
from emotion.data import CLASSES
from emotion.fileio import atomic_path
from emotion.models import build_model


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


def learning_rate(params: TrainParams, steps_per_epoch: int):
    if params.schedule != "cosine":
        return params.lr
    warmup = params.warmup_epochs * steps_per_epoch
    total = max(params.epochs * steps_per_epoch - warmup, 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=params.lr / 10 if warmup else params.lr, decay_steps=total, alpha=0.01,
        warmup_target=params.lr if warmup else None, warmup_steps=warmup)


def make_optimizer(params: TrainParams, steps_per_epoch: int):
    lr = learning_rate(params, steps_per_epoch)
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=params.weight_decay)
    return keras.optimizers.AdamW(lr, weight_decay=params.weight_decay)


def as_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W → float32 N×H×W×1 grey levels (the models rescale internally)."""
    return images.astype("float32")[..., None]


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
    """Train the model named in params on uint8 arrays; save the best-on-validation model to model_path."""
    seed_everything(params.seed)
    precision = resolve_precision(params.precision)
    keras.mixed_precision.set_dtype_policy(precision)
    image_size = train_set["images"].shape[1]
    classifier = build_model(params, image_size)
    trainer = keras.Sequential([keras.Input((image_size, image_size, 1)),
                                build_augmenter(params.augment, params.seed), classifier])
    steps = math.ceil(len(train_set["labels"]) / params.batch_size)
    trainer.compile(optimizer=make_optimizer(params, steps),
                    loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
                    metrics=["accuracy"])
    print(f"train: {params.model}, {classifier.count_params():,} parameters, {precision}, "
          f"backend {keras.backend.backend()}, {len(train_set['labels'])} images, {steps} steps/epoch", flush=True)

    def save(weights):
        keras.mixed_precision.set_dtype_policy("float32")
        plain = build_model(params, image_size)
        keras.mixed_precision.set_dtype_policy(precision)
        plain.set_weights(weights)
        with atomic_path(model_path) as tmp:
            plain.save(tmp)

    best = KeepBest(classifier, save)
    callbacks = [LiveLogger(live), best,
                 keras.callbacks.EarlyStopping("val_accuracy", patience=params.patience, mode="max")]
    if params.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(params.patience // 3, 1)))
    one_hot = lambda labels: keras.utils.to_categorical(labels, len(CLASSES))  # noqa: E731
    history = trainer.fit(as_model_input(train_set["images"]), one_hot(train_set["labels"]),
                          validation_data=(as_model_input(val_set["images"]), one_hot(val_set["labels"])),
                          batch_size=params.batch_size, epochs=params.epochs, shuffle=True,
                          class_weight=class_weights(train_set["labels"], params.class_weight),
                          callbacks=callbacks, verbose=2)
    keras.mixed_precision.set_dtype_policy("float32")
    return {"best_epoch": best.best_epoch + 1, "best_val_accuracy": best.best,
            "epochs_run": len(history.history["loss"]), "precision": precision}
