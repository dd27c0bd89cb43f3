"""What test-time augmentation buys the apps, and what it costs: val accuracy and ms per face for each
runtime of an export folder, with no TTA, flip (image + mirror) and ten-crop.

    python benchmarks/tta_cost.py [--model models/export] [--data data/prepared/val.npz] [--repeats 5]

Scores on validation data (the decision is made on val, never on test). ms per face is the median
over repeats of scoring a batch of 256 faces with all the views, divided by 256 (one thread pool, the
way `emotion predict` batches faces). Prints a Markdown table."""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from emotion.errors import one_line_errors
from emotion.evaluation import TENCROP_SIDE, predict_proba
from emotion.fileio import load_npz
from emotion.inference import RUNTIME_ORDER, load_classifier
from emotion.labelled import refuse_test_split
from emotion.training import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/export"))
    parser.add_argument("--data", type=Path, default=Path("data/prepared/val.npz"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tta-crop", type=float, default=TENCROP_SIDE)
    args = parser.parse_args()
    refuse_test_split(args.data, "a TTA")
    data = load_npz(args.data)
    batch = data["images"][:256]
    print(f"{cpu_name()}; {len(data['labels'])} images from {args.data}\n")
    print("| runtime | TTA | views | val accuracy | ms per face |")
    print("|---|---|---:|---:|---:|")
    for name in RUNTIME_ORDER:
        path = args.model / name
        if not path.exists():
            continue
        classifier = load_classifier(path)
        for tta, views in (("none", 1), ("flip", 2), ("tencrop", 10)):
            proba = predict_proba(classifier, data["images"], 256, tta, args.tta_crop)
            accuracy = float(np.mean(proba.argmax(1) == data["labels"]))
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                predict_proba(classifier, batch, 256, tta, args.tta_crop)
                times.append((time.perf_counter() - start) / len(batch) * 1000)
            print(f"| {classifier.runtime} ({name}) | {tta} | {views} | {accuracy:.2%} | "
                  f"{statistics.median(times):.3f} |", flush=True)


if __name__ == "__main__":
    one_line_errors(main)()
