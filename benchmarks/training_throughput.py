"""Images/s for training and prediction, per model in the zoo, on this machine.

    python benchmarks/training_throughput.py [--models vgg cnn_small] [--precision auto] [--steps 30]

Random data, batch 64, augmentation on (as in training); the first steps (graph building) are not
timed. Works on any Keras backend (KERAS_BACKEND=jax on a GPU box)."""
import argparse
import dataclasses
import time

import keras
import numpy as np

from emotion.augment import build_augmenter
from emotion.config import load_params
from emotion.models import MODELS, build_model
from emotion.training import resolve_precision


def measure(params, steps: int, batch: int = 64) -> tuple[float, float, int]:
    keras.mixed_precision.set_dtype_policy(resolve_precision(params.precision))
    model = build_model(params)
    trainer = keras.Sequential([keras.Input((48, 48, 1)), build_augmenter(params.augment, 0), model])
    trainer.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, ((steps + 5) * batch, 48, 48, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 7, len(x)), 7)
    trainer.fit(x[: 5 * batch], y[: 5 * batch], batch_size=batch, epochs=1, verbose=0)  # warm-up
    start = time.perf_counter()
    trainer.fit(x[5 * batch:], y[5 * batch:], batch_size=batch, epochs=1, verbose=0)
    fit = steps * batch / (time.perf_counter() - start)
    model.predict(x[:512], batch_size=256, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=256, verbose=0)
    predict = len(x) / (time.perf_counter() - start)
    return fit, predict, model.count_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=sorted(MODELS))
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    base = load_params().train
    print(f"backend {keras.backend.backend()}, devices {keras.distribution.list_devices()}")
    print(f"{'model':12s} {'precision':15s} {'params':>10s} {'fit img/s':>10s} {'predict img/s':>14s}")
    for name in args.models:
        params = dataclasses.replace(base, model=name, precision=args.precision)
        fit, predict, count = measure(params, args.steps)
        print(f"{name:12s} {resolve_precision(args.precision):15s} {count:10,d} {fit:10.0f} {predict:14.0f}", flush=True)


if __name__ == "__main__":
    main()
