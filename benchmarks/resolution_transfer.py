"""Does a model trained at a lower `train.resize` do better when scored at another one (the
train-test resolution discrepancy, Touvron et al. 2019, "FixRes")? If a 36 px model scored at 40 px
beat itself at 36, progressive resizing (most epochs at 36 px, the last at 40) would be worth building.

    python benchmarks/resolution_transfer.py MODEL.keras SIZE [SIZE ...] [--data data/prepared]

For each SIZE the model's `resize` layer is set to SIZE (the weights are kept: in `vgg` the last block's
map is 2×2 for windows of 32 to 47 px, so the dense head still fits), then val is scored single view and
with ten-crop, with the trained batch-norm statistics and with statistics recomputed at SIZE on the
training faces (as `train.recompute_bn` does). Val only; prints a Markdown table."""
from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from emotion.errors import EmotionError, one_line_errors
from emotion.evaluation import tta_views
from emotion.fileio import load_npz
from emotion.training import as_model_input, recompute_batchnorm


def with_resize(model: keras.Model, size: int) -> keras.Model:
    """A copy of `model` whose `resize` layer scales its window to size × size, with the same weights."""
    config = model.get_config()
    resize = [layer for layer in config["layers"] if layer["config"]["name"] == "resize"]
    if not resize:
        raise EmotionError(f"{model.name}: no 'resize' layer; train with train.resize below the window to compare sizes")
    resize[0]["config"]["size"] = size
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def accuracies(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Single-view and ten-crop accuracy. The fifth of the ten views is the image itself, the single view."""
    probas = [model.predict(as_model_input(view), batch_size=256, verbose=0) for view in tta_views(images, "tencrop")]
    single, tencrop = probas[4].argmax(1), np.mean(probas, axis=0).argmax(1)
    return float((single == labels).mean()), float((tencrop == labels).mean())


@one_line_errors
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("sizes", type=int, nargs="+")
    parser.add_argument("--data", type=Path, default=Path("data/prepared"))
    args = parser.parse_args()
    trained = keras.saving.load_model(args.model)
    train_set, val_set = load_npz(args.data / "train.npz"), load_npz(args.data / "val.npz")
    print("| size | single view | ten-crop | single view, statistics recomputed | ten-crop, statistics recomputed |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        model = with_resize(trained, size)
        before = accuracies(model, val_set["images"], val_set["labels"])
        recompute_batchnorm(model, train_set["images"])
        after = accuracies(model, val_set["images"], val_set["labels"])
        print(f"| {size} | " + " | ".join(f"{100 * value:.2f}" for value in (*before, *after)) + " |", flush=True)


if __name__ == "__main__":
    main()
