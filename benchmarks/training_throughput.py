"""Images/s for training and prediction, per model in the zoo, on this machine, as a Markdown table.

    python benchmarks/training_throughput.py [--models vgg resnet ...] [--precision auto] [--steps 30]
                                             [--resize 96] [--batch-size 64]

Random data, augmentation as in params.yaml (per-image layers; MixUp/CutMix excluded); the first steps
(graph building) are not timed. Works on any Keras backend (KERAS_BACKEND=jax on a GPU box).
keras.applications backbones are measured at --resize (their usual upsampled input), own models at 48."""
import argparse
import dataclasses
import platform
import time

import keras
import numpy as np

from emotion.augment import build_augmenter
from emotion.config import APPLICATIONS, load_params
from emotion.models import MODELS, build_model
from emotion.training import resolve_precision


def measure(params, steps: int, batch: int) -> tuple[float, float, int]:
    keras.mixed_precision.set_dtype_policy(resolve_precision(params.precision))
    model = build_model(params)
    trainer = keras.Sequential([keras.Input((48, 48, 1)), build_augmenter(params.augment, 0), model])
    trainer.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, ((steps + 3) * batch, 48, 48, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 7, len(x)), 7)
    trainer.fit(x[: 3 * batch], y[: 3 * batch], batch_size=batch, epochs=1, verbose=0)  # warm-up
    start = time.perf_counter()
    trainer.fit(x[3 * batch:], y[3 * batch:], batch_size=batch, epochs=1, verbose=0)
    fit = steps * batch / (time.perf_counter() - start)
    model.predict(x[:512], batch_size=256, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=256, verbose=0)
    predict = len(x) / (time.perf_counter() - start)
    keras.mixed_precision.set_dtype_policy("float32")
    return fit, predict, model.count_params()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=[*MODELS, *APPLICATIONS])
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--resize", type=int, default=96, help="input side for keras.applications backbones")
    args = parser.parse_args()
    base = load_params().train
    devices = ", ".join(keras.distribution.list_devices())
    print(f"{platform.processor() or platform.machine()}; backend {keras.backend.backend()}; devices {devices}; "
          f"batch {args.batch_size}\n")
    print("| model | input | precision | parameters | train img/s | predict img/s | epoch of 25.5k images |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        resize = args.resize if name in APPLICATIONS else base.resize
        params = dataclasses.replace(base, model=name, precision=args.precision, resize=resize, weights="none",
                                     frozen_epochs=0)
        fit, predict, count = measure(params, args.steps, args.batch_size)
        print(f"| {name} | {resize}×{resize} | {resolve_precision(args.precision)} | {count:,} | {fit:,.0f} | "
              f"{predict:,.0f} | {25_500 / fit / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    main()
