"""Does retraining on train + val pay (issue 10, lever 5)? Measured on a second validation split that
neither run trains on, since val itself is then in training.

    python benchmarks/retrain_on_val.py sets OUT [--data data/prepared]
    # run A: train on OUT/train_A.npz (the pipeline as it is: selects on val)
    # run B: train on OUT/train_B.npz (the same plus val, the recipe fixed)
    #   e.g. in a clone: cp OUT/train_A.npz data/prepared/train.npz && python stages/train.py
    python benchmarks/retrain_on_val.py score OUT/val2.npz A/models/model.keras B/models/model.keras

`sets` carves val2 from the training faces (stratified, the size of val, its own seed, so it is not the
split's val) and leaves every training face whose pixels equal a val2 face out of both runs (FER2013
repeats faces). `score` prints each model's val2 accuracy single view and with ten-crop, the images
only one of them gets right, and a paired bootstrap 95% interval of B - A."""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from emotion.evaluation import predict_proba
from emotion.fileio import load_npz, save_npz
from emotion.inference import load_classifier

VAL2_SEED = 2026  # not split.seed: val2 must be a different draw from val


def make_sets(train: dict, val: dict, seed: int = VAL2_SEED) -> dict[str, dict]:
    """val2, train_A (train without val2 and its pixel duplicates) and train_B (train_A plus val)."""
    index = np.arange(len(train["labels"]))
    rest, val2 = train_test_split(index, test_size=len(val["labels"]), stratify=train["labels"], random_state=seed)
    digests = [hashlib.sha1(image.tobytes()).hexdigest() for image in train["images"]]
    held_out = {digests[i] for i in val2}
    rest = np.array(sorted(i for i in rest if digests[i] not in held_out), dtype=int)
    train_a = {key: array[rest] for key, array in train.items()}
    train_b = {key: np.concatenate([train_a[key], val[key]]) for key in train_a}
    return {"val2": {key: array[np.sort(val2)] for key, array in train.items()}, "train_A": train_a, "train_B": train_b}


def paired(right_a: np.ndarray, right_b: np.ndarray, draws: int = 5000, seed: int = 0) -> dict:
    """Images only A / only B gets right, B - A in points and its paired bootstrap 95% interval."""
    diff = right_b.astype(int) - right_a.astype(int)
    rng = np.random.default_rng(seed)
    boot = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(draws)]
    return {"only_a": int((right_a & ~right_b).sum()), "only_b": int((right_b & ~right_a).sum()),
            "gain": 100 * diff.mean(), "low": 100 * np.percentile(boot, 2.5), "high": 100 * np.percentile(boot, 97.5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sets = sub.add_parser("sets", help="write val2.npz, train_A.npz and train_B.npz")
    sets.add_argument("out", type=Path)
    sets.add_argument("--data", type=Path, default=Path("data/prepared"))
    score = sub.add_parser("score", help="compare run A's and run B's models on val2")
    score.add_argument("val2", type=Path)
    score.add_argument("model_a")
    score.add_argument("model_b")
    args = parser.parse_args()
    if args.command == "sets":
        train, val = load_npz(args.data / "train.npz"), load_npz(args.data / "val.npz")
        for name, arrays in make_sets(train, val).items():
            save_npz(args.out / f"{name}.npz", **arrays)
            print(f"{name}: {len(arrays['labels'])} faces, per class {np.bincount(arrays['labels']).tolist()}")
        return
    val2 = load_npz(args.val2)
    models = [load_classifier(args.model_a), load_classifier(args.model_b)]
    for tta in ("none", "tencrop"):
        right = [predict_proba(m, val2["images"], tta=tta).argmax(axis=1) == val2["labels"] for m in models]
        result = paired(*right)
        print(f"{tta}: A {100 * right[0].mean():.2f}%, B {100 * right[1].mean():.2f}%; only A right "
              f"{result['only_a']}, only B right {result['only_b']}; B - A {result['gain']:+.2f} points, "
              f"95% interval {result['low']:+.2f} .. {result['high']:+.2f}")


if __name__ == "__main__":
    main()
