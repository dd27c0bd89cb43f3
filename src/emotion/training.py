"""Training with Keras 3 APIs only, so the same code runs on TensorFlow (CPU here) and JAX (GPU)."""
from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import json
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
from emotion.errors import EmotionError
from emotion.fileio import atomic_path, fix_zip_times, load_npz, save_npz
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


def use_devices(choice, backend: str | None = None) -> int:
    """Data parallelism with Keras's distribution API over the devices `chosen_devices` picks. Above one,
    each batch is split across the devices and the gradients are averaged by the engine
    (keras.distribution.DataParallel, JAX backend only). Returns the number of devices used."""
    backend = backend or keras.backend.backend()
    chosen = chosen_devices(choice)
    if len(chosen) > 1:
        if backend != "jax":
            raise EmotionError(f"params.yaml: 'train.devices' is {len(chosen)}, which needs the JAX backend "
                               f"(KERAS_BACKEND=jax; this run uses {backend}); or set it to 1")
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=chosen))
    else:
        keras.distribution.set_distribution(None)  # one device: no sharding (clears an earlier run's setting)
    return len(chosen)


def chosen_devices(choice) -> list[str]:
    """The devices `train.devices` picks: `auto` = every accelerator (one CPU counts as one device), N =
    the first N, accelerators first. Other hosts are joined first, so their devices count too."""
    join_hosts()
    devices = keras.distribution.list_devices()
    accelerators = [d for d in devices if not d.lower().startswith("cpu")]
    count = (len(accelerators) or 1) if choice == "auto" else int(choice)
    if count > len(devices):
        raise EmotionError(f"params.yaml: 'train.devices' is {count} but this machine has {len(devices)} "
                           f"({', '.join(devices)}); set it to auto or at most {len(devices)}")
    return accelerators[:count] if len(accelerators) >= count else devices[:count]


_hosts_joined = False


def join_hosts() -> None:
    """Several hosts (KERAS_DISTRIBUTION_NUM_PROCESSES > 1): start Keras's multi-process runtime, which
    reads the coordinator's host:port (KERAS_DISTRIBUTION_JOB_ADDRESSES) and this host's id
    (KERAS_DISTRIBUTION_PROCESS_ID); the devices of every host then count in train.devices. Once per
    process: the runtime refuses a second start, and it must come before anything asks for a device."""
    global _hosts_joined
    processes = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "").strip()
    if _hosts_joined or not processes or processes == "1":
        return
    missing = [k for k in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_PROCESS_ID") if not os.environ.get(k)]
    if missing:
        raise EmotionError(f"KERAS_DISTRIBUTION_NUM_PROCESSES={processes} starts several hosts but {' and '.join(missing)} "
                           "is not set: give the coordinator's host:port and this host's id (0 on the coordinator)")
    keras.distribution.initialize()
    _hosts_joined = True


def run_fingerprint(inputs_fingerprint: str, params: TrainParams) -> str:
    """The stage's inputs plus what this machine decides for the run: the devices, the precision that
    `auto` resolves to, the backend. A saved state is resumed only under the same fingerprint, so a state
    moved to a machine that would train differently (bf16 instead of float32, say) starts over."""
    run = {"inputs": inputs_fingerprint, "devices": chosen_devices(params.devices),
           "precision": resolve_precision(params.precision), "backend": keras.backend.backend()}
    return hashlib.sha256(json.dumps(run, sort_keys=True).encode()).hexdigest()


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory in the process (what MALLOC_MMAP_MAX_=0 and a huge
    MALLOC_TRIM_THRESHOLD_ do): as it comes, it returns TensorFlow's large per-step buffers to the kernel
    and faults them in again every step, which cost a 2-core float32 CPU a third of its epoch time
    (README: Training speed on CPUs without bf16). Changes no number the training computes; about 10%
    more resident memory. Returns False where the C library is not glibc (nothing to change)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def drop_torn_live_summary(folder: Path = Path("dvclive")) -> None:
    """DVCLive rewrites metrics.json in place, so a run killed at that moment leaves it empty or cut
    short, and resuming (Live(resume=True)) would stop on it. The summary is rewritten whole at the
    next epoch, and the resumed run sets its step from the saved state, so a torn one is dropped."""
    summary = Path(folder) / "metrics.json"
    try:
        json.loads(summary.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError:
        print(f"train: {summary} was cut short when the run stopped; dropping it (the next epoch rewrites it)",
              flush=True)
        summary.unlink()


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
        initial_learning_rate=lr / 10 if warmup else lr, decay_steps=total, alpha=0.0,  # to zero at the end
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
    average = {"use_ema": True, "ema_momentum": params.ema} if params.ema else {}
    if params.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=params.weight_decay, **average)
    return keras.optimizers.AdamW(lr, weight_decay=params.weight_decay, **average)


def as_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 N×H×W → float32 N×H×W×1 grey levels (the models rescale internally)."""
    return images.astype("float32")[..., None]


class BatchFeed(keras.utils.PyDataset):
    """Batches for `fit` when plain shuffled arrays are not enough: class-balanced sampling (each epoch
    draws n images with probability ∝ 1 / class size) and/or MixUp/CutMix. Seeded per epoch and batch,
    so a run is repeatable; runs in the main thread (workers=1). `targets` (N×7 probabilities, e.g. a
    teacher's for distillation) replace the one-hot labels as what the loss compares with."""

    def __init__(self, images, labels, batch_size: int, balanced: bool, mixer, seed: int, epoch: int = 0,
                 whole_batches: bool = False, targets: np.ndarray | None = None):
        super().__init__()
        self.images, self.labels, self.batch_size, self.whole_batches = images, labels, batch_size, whole_batches
        self.balanced, self.mixer, self.seed, self.epoch = balanced, mixer, seed, epoch
        self.targets = keras.utils.to_categorical(labels, len(CLASSES)) if targets is None else targets
        self.order = self._order()

    def _order(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.balanced:
            return rng.permutation(len(self.labels))
        weight = 1.0 / np.bincount(self.labels, minlength=len(CLASSES))[self.labels]
        return rng.choice(len(self.labels), len(self.labels), p=weight / weight.sum())

    def __len__(self) -> int:
        # whole_batches: a batch split across devices must divide evenly, so the last partial one is dropped
        return (math.floor if self.whole_batches else math.ceil)(len(self.labels) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x, y = as_model_input(self.images[rows]), self.targets[rows]
        if self.mixer:
            x, y = self.mixer(x, y, np.random.default_rng([self.seed, self.epoch, index]))
        return x, y

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()


class LiveLogger(keras.callbacks.Callback):
    """Per-epoch metrics to DVCLive. dvclive.keras imports tf.keras, so it would break JAX."""

    def __init__(self, live, elapsed_s: float = 0.0):
        super().__init__()
        self.live = live
        self.started = time.perf_counter() - elapsed_s  # a resumed run continues the clock

    @property
    def elapsed_s(self) -> float:
        return round(time.perf_counter() - self.started, 1)

    def on_epoch_end(self, epoch, logs=None):
        self.live.step = epoch  # a resumed run continues at the epoch it resumes from
        for key, value in (logs or {}).items():
            name = key.replace("val_", "val/", 1) if key.startswith("val_") else f"train/{key}"
            self.live.log_metric("lr" if key == "learning_rate" else name, float(value))
        self.live.log_metric("time/elapsed_s", self.elapsed_s, plot=False)
        self.live.next_step()


class ScoreAverage(keras.callbacks.Callback):
    """train.ema: the optimizer keeps an exponential moving average of the trainable weights (Polyak
    averaging, `use_ema`). At each epoch end this scores the average on val as `val_ema_accuracy` and
    keeps its weights in `self.weights` for KeepBest; the raw weights go back and train on untouched.
    Batch-norm statistics are not averaged: the average runs with the current ones."""

    def __init__(self, classifier: keras.Model, val_set: dict, devices: int = 1, batch_size: int = 256):
        super().__init__()
        self.classifier, self.batch_size, self.labels = classifier, batch_size, val_set["labels"]
        self.images = split_evenly(as_model_input(val_set["images"]), devices)
        self.weights = None

    def on_epoch_end(self, epoch, logs=None):
        optimizer = self.model.optimizer
        pairs = [(v, a) for v, a in zip(optimizer._trainable_variables, optimizer._model_variables_moving_average)
                 if a is not None]  # the same private pairing keras.callbacks.SwapEMAWeights swaps
        raw = [keras.ops.convert_to_numpy(v.value) for v, _ in pairs]
        for variable, average in pairs:
            variable.assign(keras.ops.convert_to_numpy(average.value))  # a copy: JAX may donate the original
        logs["val_ema_accuracy"] = accuracy_of(self.classifier, self.images, self.labels, self.batch_size)
        self.weights = self.classifier.get_weights()
        for (variable, _), value in zip(pairs, raw):
            variable.assign(value)


def split_evenly(images: np.ndarray, devices: int) -> np.ndarray:
    """images padded with copies of their first few so that every batch splits evenly over `devices`;
    whoever reads predictions keeps the first len(images)."""
    return np.concatenate([images, images[:-len(images) % devices]])


def accuracy_of(classifier: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Single-view accuracy on model-ready images (possibly padded by split_evenly) with these labels."""
    proba = classifier.predict(images, batch_size=batch_size, verbose=0)
    return float((np.argmax(proba[:len(labels)], axis=1) == labels).mean())


def batchnorm_layers(model: keras.Model) -> list:
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_batchnorm(classifier: keras.Model, images: np.ndarray, devices: int = 1, batch_size: int = 256) -> None:
    """Replace each batch-norm layer's moving statistics with the mean of its batch statistics over
    `images`, in order, in training mode (the random crop window on, as in training; no other
    augmentation). Training leaves momentum-weighted statistics of augmented faces; inference sees plain
    ones. Momentum i/(i+1) at batch i makes the running value the exact mean over batches."""
    layers = batchnorm_layers(classifier)
    momenta = [layer.momentum for layer in layers]
    images = as_model_input(images)
    for i, start in enumerate(range(0, len(images), batch_size)):
        for layer in layers:
            layer.momentum = i / (i + 1)
        classifier(split_evenly(images[start:start + batch_size], devices), training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def keep_recomputed_batchnorm_if_better(classifier: keras.Model, train_set: dict, val_set: dict,
                                        devices: int = 1) -> dict:
    """train.recompute_bn: recompute the batch-norm statistics on the training images and keep them only
    if single-view val accuracy rises; otherwise the trained weights go back. Returns both scores."""
    val_images, labels = split_evenly(as_model_input(val_set["images"]), devices), val_set["labels"]
    trained_weights = classifier.get_weights()
    trained = accuracy_of(classifier, val_images, labels)
    recompute_batchnorm(classifier, train_set["images"], devices)
    recomputed = accuracy_of(classifier, val_images, labels)
    kept = "recomputed" if recomputed > trained else "trained"
    if kept == "trained":
        classifier.set_weights(trained_weights)
    print(f"train: batch-norm statistics recomputed on the training images: val accuracy {trained:.4f} -> "
          f"{recomputed:.4f}; keeping the {kept} ones", flush=True)
    return {"batchnorm": kept, "val_accuracy_bn_trained": trained, "val_accuracy_bn_recomputed": recomputed}


class KeepBest(keras.callbacks.Callback):
    """Best weights on validation accuracy, kept in memory and restored at the end, and early stopping:
    a phase ends after `patience` epochs without a new best (counted from the phase's start at the
    earliest, so early stopping ends a phase, not the fine-tuning); patience 0 runs every epoch. With a
    ScoreAverage before it, the weight average competes too: the better of the raw and the averaged
    weights on val is kept."""

    def __init__(self, classifier: keras.Model, patience: int, average: ScoreAverage | None = None):
        super().__init__()
        self.classifier, self.patience, self.average = classifier, patience, average
        self.best, self.best_epoch, self.weights, self.phase_start = -math.inf, -1, None, 0
        self.best_source, self.best_by_source = "raw", {}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for source, key in (("raw", "val_accuracy"), ("ema", "val_ema_accuracy")):
            value = logs.get(key)
            if value is None:
                continue
            self.best_by_source[source] = max(self.best_by_source.get(source, -math.inf), float(value))
            if value > self.best:
                self.best, self.best_epoch, self.best_source = float(value), epoch, source
                self.weights = self.average.weights if source == "ema" else self.classifier.get_weights()
        if self.patience and epoch - max(self.best_epoch, self.phase_start) >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.classifier.set_weights(self.weights)


def saved_state(folder: Path, fingerprint: str) -> dict | None:
    """The metadata of an unfinished run's state in `folder` if it has this fingerprint, else None."""
    try:
        meta = json.loads((Path(folder) / "state.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("fingerprint") != fingerprint or meta.get("complete") or not (Path(folder) / "state.npz").exists():
        return None
    return meta


class TrainingState(keras.callbacks.Callback):
    """What a killed run needs to continue exactly where it stopped, written atomically to `folder` at
    every epoch end: the trainer's variables, the optimizer's (moments, step count), the random
    layers' seed states, the best weights so far, the epoch, and a fingerprint of the stage's inputs.
    State with another fingerprint (a changed param, data or code) is stale and ignored."""

    def __init__(self, folder: Path, fingerprint: str, trainer: keras.Model, best: KeepBest, logger: LiveLogger):
        super().__init__()
        self.folder, self.fingerprint, self.trainer, self.best, self.logger = Path(folder), fingerprint, trainer, best, logger
        self.phase = self.epochs_run = 0

    def restore(self, meta: dict) -> None:
        """Put the saved variables back (call once the optimizer is built)."""
        arrays = load_npz(self.folder / "state.npz")
        for name, variables in self._groups().items():
            for i, variable in enumerate(variables):
                variable.assign(arrays[f"{name}{i:04d}"])
        n_best = sum(key.startswith("best") for key in arrays)
        self.best.weights = [arrays[f"best{i:04d}"] for i in range(n_best)] or None
        self.best.best, self.best.best_epoch, self.epochs_run = meta["best"], meta["best_epoch"], meta["epochs_run"]
        self.best.best_source, self.best.best_by_source = meta["best_source"], meta["best_by_source"]

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_run += 1
        arrays = {f"{name}{i:04d}": keras.ops.convert_to_numpy(v.value)
                  for name, variables in self._groups().items() for i, v in enumerate(variables)}
        arrays.update({f"best{i:04d}": w for i, w in enumerate(self.best.weights or [])})
        meta = {"fingerprint": self.fingerprint, "epoch": epoch + 1, "phase": self.phase, "best": self.best.best,
                "best_epoch": self.best.best_epoch, "best_source": self.best.best_source,
                "best_by_source": self.best.best_by_source, "elapsed_s": self.logger.elapsed_s, "epochs_run": self.epochs_run,
                "stopped": bool(self.trainer.stop_training), "complete": False}
        write_state(self.folder, meta, arrays)

    def _groups(self) -> dict:
        seeds = [g.state for layer in self.trainer._flatten_layers(include_self=False)
                 for g in getattr(layer, "_seed_generators", [])]  # not part of save_weights
        return {"model": self.trainer.weights, "optimizer": self.trainer.optimizer.variables, "seed": seeds}



def write_state(folder: Path, meta: dict, arrays: dict | None = None) -> None:
    with atomic_path(folder, is_dir=True) as tmp:
        if arrays is not None:
            save_npz(tmp / "state.npz", **arrays)
        (tmp / "state.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def mark_finished(folder: Path, fingerprint: str, epochs_run: int) -> None:
    """Training ended and its model is saved: drop the arrays, keep a marker so a later run starts fresh."""
    write_state(folder, {"fingerprint": fingerprint, "epochs_run": epochs_run, "complete": True})


def train(params: TrainParams, train_set: dict, val_set: dict, live, state_dir: Path,
          fingerprint: str = "") -> tuple[keras.Model, dict]:
    """Train the model named in params on uint8 arrays; return the best-on-validation classifier (float32,
    without augmentation) and a summary. Training state is saved to `state_dir` every epoch, and a run
    with the same `fingerprint` (the stage's inputs) continues from it, giving the same weights as an
    uninterrupted run. With train.frozen_epochs, a pretrained backbone first stays frozen, then its top
    layers train at a lower learning rate (two-phase fine-tuning)."""
    seed_everything(params.seed)
    devices = use_devices(params.devices)
    precision = resolve_precision(params.precision)
    keras.mixed_precision.set_dtype_policy(precision)
    image_size = train_set["images"].shape[1]
    classifier = build_model(params, image_size)
    trainer = keras.Sequential([keras.Input((image_size, image_size, 1)),
                                build_augmenter(params.augment, params.seed), classifier])
    if params.batch_size % devices:
        raise EmotionError(f"params.yaml: 'train.batch_size' ({params.batch_size}) must divide evenly across "
                           f"'train.devices' ({devices})")
    steps = (math.floor if devices > 1 else math.ceil)(len(train_set["labels"]) / params.batch_size)
    print(f"train: {params.model}, {classifier.count_params():,} parameters, {precision}, "
          f"backend {keras.backend.backend()} on {devices} device(s), {len(train_set['labels'])} images, "
          f"{steps} steps/epoch", flush=True)

    saved = saved_state(state_dir, fingerprint)
    if saved:
        print(f"train: resuming after epoch {saved['epoch']} from {state_dir}", flush=True)
    average = ScoreAverage(classifier, val_set, devices) if params.ema else None
    best, logger = KeepBest(classifier, params.patience, average), LiveLogger(live, (saved or {}).get("elapsed_s", 0.0))
    state = TrainingState(state_dir, fingerprint, trainer, best, logger)
    # the average is scored before KeepBest reads it; state before the log: a kill in between loses a
    # log line, never doubles one
    callbacks = [average, best, state, logger] if average else [best, state, logger]
    if params.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(params.patience // 3, 1)))
    inputs, resume_phase = fit_inputs(params, train_set, val_set, devices), (saved or {}).get("phase", 0)
    for phase, (first, last, lr, trainable_top) in enumerate(phases(params)):
        if trainable_top != "all":
            set_backbone_trainable(classifier, trainable_top)
        if phase < resume_phase:
            continue  # finished before the run was stopped
        if trainable_top != "all":
            what = "frozen" if trainable_top is None else f"top {trainable_top or 'all'} layers train"
            print(f"train: epochs {first + 1}-{last}: backbone {what}, lr {lr:g}", flush=True)
        trainer.compile(optimizer=make_optimizer(params, steps, lr, last - first),
                        loss=keras.losses.CategoricalCrossentropy(label_smoothing=params.label_smoothing),
                        metrics=["accuracy"])
        trainer.optimizer.build(trainer.trainable_variables)  # as a resumed run must, so both take one path
        start, state.phase, best.phase_start = first, phase, first
        if saved and saved["phase"] == phase:
            state.restore(saved)
            start = last if saved["stopped"] else saved["epoch"]  # an early-stopped phase stays stopped
        # shuffle=False: Keras would reorder the feed's batches with Python's global RNG, which a resumed
        # process cannot replay; the feed already draws its own order from (seed, epoch)
        trainer.fit(**inputs(start), initial_epoch=start, epochs=last, callbacks=callbacks, shuffle=False, verbose=2)
    keras.mixed_precision.set_dtype_policy("float32")
    plain = build_model(dataclasses.replace(params, weights="none"), image_size)  # float32; no second download
    plain.set_weights(classifier.get_weights())
    batchnorm = keep_recomputed_batchnorm_if_better(plain, train_set, val_set, devices) if params.recompute_bn else {}
    kept_recomputed = batchnorm.get("batchnorm") == "recomputed"
    best_val = batchnorm["val_accuracy_bn_recomputed"] if kept_recomputed else best.best
    return plain, {"best_epoch": best.best_epoch + 1, "best_val_accuracy": best_val, "best_weights": best.best_source,
                   **batchnorm,
                   **{f"best_val_accuracy_{source}": value for source, value in best.best_by_source.items()},
                   "epochs_run": state.epochs_run,
                   "precision": precision, "devices": devices, **environment()}


def save_model(model: keras.Model, path: Path) -> None:
    """model.save, atomically and without what differs between equal models: Keras's save date, zip
    times, and `shared_object_id`s (Python object ids, renumbered here in order of appearance), so equal
    weights give equal bytes and dvc.lock the same hash on every machine that trains them."""
    def stable(name: str, data: bytes) -> bytes:
        if name == "metadata.json":
            return json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
        if name == "config.json":
            return json.dumps(_renumber_shared_ids(json.loads(data), {})).encode()
        return data

    with atomic_path(path) as tmp:
        model.save(tmp)
        fix_zip_times(tmp, stable)


def _renumber_shared_ids(node, ids: dict):
    if isinstance(node, dict):
        return {key: ids.setdefault(value, len(ids)) if key == "shared_object_id" else _renumber_shared_ids(value, ids)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_renumber_shared_ids(item, ids) for item in node]
    return node


def environment() -> dict:
    """The hidden inputs of a run, recorded with its metrics so `dvc exp show` tells them apart."""
    versions = {"keras": keras.__version__, "numpy": np.__version__, "python": platform.python_version()}
    backend = keras.backend.backend()
    if backend in ("tensorflow", "jax", "torch"):
        versions[backend] = __import__(backend).__version__
    devices = keras.distribution.list_devices()
    return {"backend": backend, "device": devices[0].split(":")[0] if devices else "cpu", "cpu": cpu_name(),
            "versions": versions}


def cpu_name() -> str:
    """The CPU as a run's timings need it: model name, family and model numbers, usable cores. Virtual
    machines often name only "AMD EPYC", and a Zen 4 and a Zen 5 EPYC (about 2x apart in epoch time)
    differ only in their numbers."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text(errors="ignore") if cpuinfo.exists() else ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return describe_cpu(text, cores, fallback=platform.processor() or platform.machine())


def describe_cpu(cpuinfo: str, cores: int | None, fallback: str = "unknown CPU") -> str:
    """"AMD EPYC (family 25, model 17), 2 cores" from /proc/cpuinfo's text (its first processor)."""
    fields = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or fallback
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return f"{name}, {cores} cores" if cores else name


def phases(params: TrainParams) -> list[tuple[int, int, float, object]]:
    """(first epoch, last epoch, peak lr, backbone setting) per training phase; "all" = leave as built."""
    if not params.frozen_epochs:
        return [(0, params.epochs, params.lr, "all")]
    return [(0, params.frozen_epochs, params.lr, None),
            (params.frozen_epochs, params.epochs, params.lr * params.finetune_lr_factor, params.unfreeze_top)]


def fit_inputs(params: TrainParams, train_set: dict, val_set: dict, devices: int = 1):
    """What every phase's `fit` shares, prepared once: validation arrays, class weights, and the training
    set as a BatchFeed starting at a given epoch. Its order depends only on (seed, epoch), not on how many
    epochs this process has run, so a resumed run sees the same batches as an uninterrupted one. A
    training set with a `targets` array (soft labels, N×7) trains on those instead of its labels."""
    targets = train_set.get("targets")
    if targets is not None and targets.shape != (len(train_set["labels"]), len(CLASSES)):
        raise EmotionError(f"training set: 'targets' has shape {targets.shape}, expected "
                           f"({len(train_set['labels'])}, {len(CLASSES)}): one probability row per image")
    one_hot = keras.utils.to_categorical(val_set["labels"], len(CLASSES))
    validation = (as_model_input(val_set["images"]), one_hot)
    if devices > 1:  # every batch must split evenly: pad with copies that weigh nothing in the metrics
        pad = -len(one_hot) % devices
        weights = np.r_[np.ones(len(one_hot), "float32"), np.zeros(pad, "float32")]
        validation = tuple(np.concatenate([a, a[:pad]]) for a in validation) + (weights,)
    shared = {"validation_data": validation,
              "class_weight": class_weights(train_set["labels"], params.class_weight)}
    mixer = batch_mixer(params.augment, params.seed)
    return lambda first: {**shared, "x": BatchFeed(train_set["images"], train_set["labels"], params.batch_size,
                                                   params.sampling == "balanced", mixer, params.seed, epoch=first,
                                                   whole_batches=devices > 1, targets=targets)}
