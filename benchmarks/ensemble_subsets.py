"""Which members are worth averaging? Val accuracy of every model alone and of every subset of two or more,
with equal weights, single view and ten-crop (the pipeline's, as `emotion.evaluation.predict_proba` runs it).

    python benchmarks/ensemble_subsets.py [--data data/prepared/val.npz] MODEL MODEL [MODEL ...]

Each model is scored once per view; the subsets only average those probabilities. `emotion ensemble`
then chooses the weights of the subset you keep on val. Val only: members are chosen on validation data,
never on test. Prints a Markdown table, best ten-crop first."""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from emotion.errors import one_line_errors
from emotion.evaluation import predict_proba
from emotion.fileio import load_npz
from emotion.inference import load_classifier
from emotion.labelled import refuse_test_split


def subset_accuracies(probas: dict[str, np.ndarray], labels: np.ndarray) -> dict[tuple[str, ...], float]:
    """Accuracy of the equal-weight mean of every subset of the named probabilities (singletons too)."""
    names = list(probas)
    return {subset: float(np.mean(np.mean([probas[n] for n in subset], axis=0).argmax(axis=1) == labels))
            for size in range(1, len(names) + 1) for subset in itertools.combinations(names, size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+", help="export folders or model files")
    parser.add_argument("--data", type=Path, default=Path("data/prepared/val.npz"))
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("give two or more models to compare their ensembles")
    refuse_test_split(args.data, "ensemble members")
    data = load_npz(args.data)
    single, tencrop = {}, {}
    for path in args.models:
        classifier = load_classifier(path)
        single[str(path)] = predict_proba(classifier, data["images"])
        tencrop[str(path)] = predict_proba(classifier, data["images"], tta="tencrop")
        print(f"scored {path}", flush=True)
    by_single = subset_accuracies(single, data["labels"])
    by_tencrop = subset_accuracies(tencrop, data["labels"])
    print(f"\n{len(data['labels'])} images from {args.data}, equal weights\n")
    print("| members | single view | ten-crop |\n|---|---:|---:|")
    for subset in sorted(by_tencrop, key=lambda s: (-by_tencrop[s], len(s))):
        print(f"| {' + '.join(subset)} | {by_single[subset]:.2%} | {by_tencrop[subset]:.2%} |")


if __name__ == "__main__":
    one_line_errors(main)()
