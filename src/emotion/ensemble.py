"""Ensembles: several models whose probabilities are averaged with weights, used wherever one model is.

An ensemble is a small JSON file, e.g. models/ensemble.json:

    {"members": [{"model": "export", "weight": 0.6}, {"model": "member2/export", "weight": 0.4}]}

Member paths are relative to the file. `load_classifier` opens it like any model, so `emotion evaluate`,
`predict`, `video` and `serve` take `--model models/ensemble.json`. `choose_weights` picks the weights
on validation data (never on test)."""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np

from emotion.errors import EmotionError


class EnsembleClassifier:
    """The weighted mean of its members' probabilities; members must agree on input size and classes."""

    def __init__(self, members: list, weights: list[float], names: list[str] | None = None):
        names = names or [str(getattr(m, "path", i)) for i, m in enumerate(members)]
        if not members or len(weights) != len(members):
            raise EmotionError(f"an ensemble needs one weight per member (got {len(members)} members, "
                               f"{len(weights)} weights)")
        if min(weights) < 0 or sum(weights) <= 0:
            raise EmotionError(f"ensemble weights must be non-negative and not all zero, got {weights}")
        sides = {name: input_side(m) for name, m in zip(names, members)}
        known = {side for side in sides.values() if side is not None}
        if len(known) > 1:
            listed = ", ".join(f"{name} takes {side}×{side}" for name, side in sides.items() if side is not None)
            raise EmotionError(f"ensemble members differ in input size ({listed}); use models of one input size")
        self.members, self.names = members, names
        self.weights = [w / sum(weights) for w in weights]
        self.runtime = "ensemble(" + ", ".join(sorted({m.runtime for m in members})) + ")"

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return sum(w * m.predict_proba(images, batch_size=batch_size) for w, m in zip(self.weights, self.members))


def input_side(classifier) -> int | None:
    """The square input side a loaded classifier expects, where its runtime says."""
    shape = None
    if hasattr(classifier, "model"):
        shape = classifier.model.input_shape
    elif hasattr(classifier, "session"):
        shape = classifier.session.get_inputs()[0].shape
    elif hasattr(classifier, "interpreter"):
        shape = list(classifier.interpreter.get_input_details()[0]["shape"])
    side = shape[1] if shape is not None and len(shape) == 4 else None
    return side if isinstance(side, (int, np.integer)) and side > 0 else None


def load_ensemble(path: Path) -> EnsembleClassifier:
    from emotion.inference import load_classifier

    try:
        spec = json.loads(Path(path).read_text())
        entries = [(str(m["model"]), float(m.get("weight", 1.0))) for m in spec["members"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise EmotionError(f"{path}: not an ensemble file ({type(err).__name__}: {err}); expected "
                           '{"members": [{"model": "PATH", "weight": 1.0}, ...]}') from None
    members = []
    for name, _ in entries:
        member = Path(path).parent / name
        if not member.exists():
            raise EmotionError(f"{path}: member {name!r} not found at {member}; fix the path or "
                               "`dvc pull` the member")
        try:
            members.append(load_classifier(member))  # checks the member's classes too
        except EmotionError as err:
            raise EmotionError(f"{path}: member {name!r}: {err}") from None
    try:
        return EnsembleClassifier(members, [w for _, w in entries], [n for n, _ in entries])
    except EmotionError as err:
        raise EmotionError(f"{path}: {err}") from None


def write_ensemble(path: Path, members: list[str | Path], weights: list[float]) -> None:
    """The ensemble file for `members`, each path relative to the file's folder (`../` where needed), so
    the file keeps working when the clone moves, e.g. for members fetched into .emotion-cache/."""
    from emotion.fileio import write_json

    folder = Path(path).parent.resolve()

    def relative(member) -> str:
        try:
            return Path(os.path.relpath(Path(member).resolve(), folder)).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            return str(Path(member).resolve())

    write_json(path, {"members": [{"model": relative(m), "weight": round(float(w), 4)}
                                  for m, w in zip(members, weights)]})


def choose_weights(member_probas: list[np.ndarray], labels: np.ndarray, step: float = 0.1) -> list[float]:
    """Weights on a grid (multiples of `step`, summing to 1) that maximise accuracy on these labels,
    ties broken by lower log-loss, then by the most even weights. Meant for validation data."""
    n = len(member_probas)
    ticks = round(1 / step)
    best, best_key = None, None
    for combo in itertools.product(range(ticks + 1), repeat=n - 1):
        if sum(combo) > ticks:
            continue
        weights = [c / ticks for c in combo] + [(ticks - sum(combo)) / ticks]
        proba = sum(w * p for w, p in zip(weights, member_probas))
        accuracy = float(np.mean(proba.argmax(1) == labels))
        nll = float(-np.mean(np.log(np.clip(proba[np.arange(len(labels)), labels], 1e-12, 1))))
        key = (accuracy, -nll, -float(np.ptp(weights)))
        if best_key is None or key > best_key:
            best, best_key = weights, key
    return best
