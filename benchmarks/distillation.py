"""Does distilling an ensemble into one model pay (issue 10, beyond its five levers)? The long recipe
trains two members anyway; a third, trained on their soft labels instead of a new seed, costs the same.

    python benchmarks/distillation.py targets OUT.npz TEACHER [TEACHER ...] [--data data/prepared]
    # TEACHER: any model the apps take; models/export/model.int8.onnx is 3.5x faster than model.keras
    # the student: the default recipe on OUT.npz, e.g. in a clone:
    #   cp OUT.npz data/prepared/train.npz && python stages/train.py
    python benchmarks/distillation.py score --base BASE.keras --student STUDENT.keras --others A.keras B.keras \\
        [--instead OTHER.keras]

`targets` scores the training faces with the teachers (mean probability, ten-crop, as the pipeline's TTA),
softens it with a temperature (p^(1/T), renormalised) and mixes it with the one-hot label: the training set
gets a `targets` array that `train` uses instead of its labels. With a mix of at most 0.5 the label keeps
the largest share, so `class_weight` (which Keras reads from the target's largest entry) still weighs by
the true class. `score` compares the student with the base model trained on plain labels (same recipe and
seed) on val, paired, and the ensemble of the others plus the student against the others plus `--instead`
(weights chosen on val for each, as `emotion ensemble` does). Everything here is val; test stays unseen."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from retrain_on_val import paired  # noqa: E402

from emotion.data import CLASSES  # noqa: E402
from emotion.ensemble import choose_weights  # noqa: E402
from emotion.errors import one_line_errors  # noqa: E402
from emotion.evaluation import ensemble_proba, predict_proba  # noqa: E402
from emotion.fileio import load_npz, save_npz  # noqa: E402
from emotion.inference import load_classifier  # noqa: E402
from emotion.labelled import refuse_test_split  # noqa: E402


def soft_targets(teacher_proba: np.ndarray, labels: np.ndarray, temperature: float, mix: float) -> np.ndarray:
    """(1 - mix) × one-hot label + mix × the teachers' probabilities softened by `temperature`."""
    if not 0 <= mix <= 0.5:
        raise ValueError(f"mix must be in 0..0.5 (the label keeps the largest share), got {mix}")
    softened = np.power(np.clip(teacher_proba, 1e-12, 1), 1 / temperature)
    softened /= softened.sum(axis=1, keepdims=True)
    one_hot = keras.utils.to_categorical(labels, len(CLASSES))
    return ((1 - mix) * one_hot + mix * softened).astype("float32")


def write_targets(out: Path, data: Path, teachers: list[str], temperature: float, mix: float) -> None:
    train = load_npz(data / "train.npz")
    classifiers = [load_classifier(path) for path in teachers]
    proba = ensemble_proba(classifiers, train["images"], tta="tencrop")
    agree = (proba.argmax(1) == train["labels"]).mean()
    print(f"teachers on the {len(train['labels'])} training faces (ten-crop): {100 * agree:.2f}% agree with "
          f"the label, mean top probability {proba.max(1).mean():.3f}")
    targets = soft_targets(proba, train["labels"], temperature, mix)
    print(f"targets: T {temperature}, mix {mix}: mean label share {targets[np.arange(len(targets)), train['labels']].mean():.3f}")
    save_npz(out, **train, targets=targets)


def val_proba(models: list[str], val: dict) -> dict[str, dict[str, np.ndarray]]:
    return {path: {tta: predict_proba(load_classifier(path), val["images"], tta=tta) for tta in ("none", "tencrop")}
            for path in models}


def ensemble_accuracy(probas: list[np.ndarray], labels: np.ndarray) -> tuple[float, list[float]]:
    weights = choose_weights(probas, labels)
    mixed = sum(w * p for w, p in zip(weights, probas))
    return 100 * (mixed.argmax(1) == labels).mean(), weights


def score(val_path: Path, base: str, student: str, others: list[str], instead: str | None) -> None:
    val = load_npz(val_path)
    labels = val["labels"]
    proba = val_proba(sorted({base, student, *others, *([instead] if instead else [])}), val)
    for tta in ("none", "tencrop"):
        right_base, right_student = (proba[m][tta].argmax(1) == labels for m in (base, student))
        result = paired(right_base, right_student)
        print(f"{tta}: base {100 * right_base.mean():.2f}%, student {100 * right_student.mean():.2f}% "
              f"({result['gain']:+.2f} points; only base {result['only_a']}, only student {result['only_b']}; "
              f"95% interval {result['low']:+.2f} .. {result['high']:+.2f})")
        for third in [m for m in (student, instead) if m]:
            accuracy, weights = ensemble_accuracy([proba[m][tta] for m in (*others, third)], labels)
            print(f"  ensemble with {third}: {accuracy:.2f}% (weights {', '.join(f'{w:.1f}' for w in weights)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    targets = sub.add_parser("targets", help="write the training set with the teachers' soft targets")
    targets.add_argument("out", type=Path)
    targets.add_argument("teachers", nargs="+")
    targets.add_argument("--data", type=Path, default=Path("data/prepared"))
    targets.add_argument("--temperature", type=float, default=2.0)
    targets.add_argument("--mix", type=float, default=0.5)
    compare = sub.add_parser("score", help="the student against its base and as an ensemble member, on val")
    compare.add_argument("--val", type=Path, default=Path("data/prepared/val.npz"))
    compare.add_argument("--base", required=True)
    compare.add_argument("--student", required=True)
    compare.add_argument("--others", nargs="+", required=True)
    compare.add_argument("--instead")
    args = parser.parse_args()
    if args.command == "targets":
        write_targets(args.out, args.data, args.teachers, args.temperature, args.mix)
    else:
        refuse_test_split(args.val, "ensemble weights")
        score(args.val, args.base, args.student, args.others, args.instead)


if __name__ == "__main__":
    one_line_errors(main)()
