"""Does the way ten-crop combines its ten views matter? Val images right, per model, for the plain mean of
the views' probabilities (what the pipeline does), the mean of probabilities softened at temperature T,
the mean of log-probabilities (a geometric mean) and a majority vote of the views' classes.

    python benchmarks/tencrop_combine.py [--data data/prepared/val.npz] MODEL [MODEL ...]

Each model's ten views are scored once; the rows only combine them differently. Val only: how test-time
views are combined is chosen on validation data, never on test. Prints a Markdown table of images right,
and the change against the plain mean."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from emotion.errors import one_line_errors
from emotion.evaluation import TENCROP_SIDE, tta_views
from emotion.fileio import load_npz
from emotion.inference import load_classifier
from emotion.labelled import refuse_test_split

TEMPERATURES = (0.5, 0.77, 1.5, 2.0, 3.0)


def view_probas(classifier, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Probabilities of each of ten-crop's views: 10×N×classes, in `tta_views` order."""
    return np.stack([classifier.predict_proba(np.ascontiguousarray(view), batch_size=batch_size)
                     for view in tta_views(images, "tencrop", TENCROP_SIDE)])


def combinations(views: np.ndarray) -> dict[str, np.ndarray]:
    """Each way of combining the views, as N class scores (argmax is the prediction)."""
    out = {"plain mean (the pipeline)": views.mean(axis=0)}
    for t in TEMPERATURES:
        softened = views ** (1 / t)
        out[f"mean softened at T = {t}"] = (softened / softened.sum(axis=-1, keepdims=True)).mean(axis=0)
    out["mean of log-probabilities"] = np.log(np.clip(views, 1e-12, 1)).mean(axis=0)
    votes = np.eye(views.shape[-1])[views.argmax(axis=-1)].sum(axis=0)
    out["majority vote (ties: the plain mean)"] = votes + 1e-3 * views.mean(axis=0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="export folders or model files")
    parser.add_argument("--data", type=Path, default=Path("data/prepared/val.npz"))
    args = parser.parse_args()
    refuse_test_split(args.data, "how ten-crop's views are combined")
    data = load_npz(args.data)
    rights = []
    for path in args.models:
        scores = combinations(view_probas(load_classifier(path), data["images"]))
        rights.append({name: int((s.argmax(axis=1) == data["labels"]).sum()) for name, s in scores.items()})
        print(f"scored {path}", flush=True)
    print(f"\nimages right of {len(data['labels'])} from {args.data} (change against the plain mean)\n")
    print("| combination | " + " | ".join(str(p) for p in args.models) + " |")
    print("|---|" + "---:|" * len(args.models))
    for name in rights[0]:
        cells = []
        for right in rights:
            base = right["plain mean (the pipeline)"]
            cells.append(f"{right[name]}" + ("" if name.startswith("plain") else f" ({right[name] - base:+d})"))
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    one_line_errors(main)()
