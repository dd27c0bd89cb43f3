"""Would more test-time windows beat ten-crop? Val accuracy of one or more models (and their equal-weight
mean) for view sets drawn from a 5×5 grid of window positions, 2 px apart, each with its mirror.

    python benchmarks/tta_grid.py [--data data/prepared/val.npz] MODEL [MODEL ...]

A window position is the image shifted with its edges repeated (as `emotion.evaluation.tta_views` does),
so each view stays 48×48 and a model that classifies its centre 40×40 sees that window. Every view is
scored once and the sets are averages of those probabilities, so rows differ only in which views they
average. Val only: TTA is chosen on validation data, never on test. Prints a Markdown table."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emotion.data import CLASSES
from emotion.errors import one_line_errors
from emotion.fileio import load_npz
from emotion.inference import load_classifier
from emotion.labelled import refuse_test_split

STEPS = range(5)  # positions 0, 2, 4, 6, 8 px into the image padded by 4 px on each side; 2 is the centre
VIEW_SETS = {
    "single view": [(2, 2)],
    "4 corners 8 px apart + centre (ten-crop with mirrors)": [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)],
    "3×3 positions, 4 px apart": [(a, b) for a in (0, 2, 4) for b in (0, 2, 4)],
    "3×3 positions, 2 px apart": [(a, b) for a in (1, 2, 3) for b in (1, 2, 3)],
    "5×5 positions, 2 px apart": [(a, b) for a in STEPS for b in STEPS],
}


def view_probas(classifier, images: np.ndarray) -> np.ndarray:
    """Probabilities for every (mirror, row, column) window position: 2×5×5×N×classes."""
    size = images.shape[1]
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4)), mode="edge")
    out = np.zeros((2, len(STEPS), len(STEPS), len(images), len(CLASSES)), np.float32)
    for row in STEPS:
        for col in STEPS:
            view = padded[:, 2 * row:2 * row + size, 2 * col:2 * col + size]
            out[0, row, col] = classifier.predict_proba(np.ascontiguousarray(view), batch_size=256)
            out[1, row, col] = classifier.predict_proba(np.ascontiguousarray(view[:, :, ::-1]), batch_size=256)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="export folders or model files")
    parser.add_argument("--data", type=Path, default=Path("data/prepared/val.npz"))
    args = parser.parse_args()
    refuse_test_split(args.data, "a set of test-time views")
    data = load_npz(args.data)
    probas = []
    for path in args.models:
        probas.append(view_probas(load_classifier(path), data["images"]))
        print(f"scored {path}", flush=True)
    columns = [str(p) for p in args.models] + (["mean of all"] if len(args.models) > 1 else [])
    print(f"\n{len(data['labels'])} images from {args.data}\n")
    print("| views | count | " + " | ".join(columns) + " |")
    print("|---|---:|" + "---:|" * len(columns))
    for name, cells in VIEW_SETS.items():
        for mirrors in ((0,), (0, 1)):
            means = [np.mean([p[m, r, c] for m in mirrors for r, c in cells], axis=0) for p in probas]
            if len(probas) > 1:
                means.append(np.mean(means, axis=0))
            accuracies = " | ".join(f"{np.mean(m.argmax(1) == data['labels']):.2%}" for m in means)
            label = name + (" + mirrors" if len(mirrors) == 2 else "")
            print(f"| {label} | {len(cells) * len(mirrors)} | {accuracies} |")


if __name__ == "__main__":
    one_line_errors(main)()
