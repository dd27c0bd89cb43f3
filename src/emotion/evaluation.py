"""Scores for any classifier that maps uint8 N×48×48 images to 7 probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

from emotion import plots
from emotion.data import CLASSES
from emotion.fileio import atomic_path

TENCROP_SIDE = 0.833  # ten-crop window as a fraction of the image: 40 of 48 px, the default train.input_crop
TTA_VIEWS = {"none": 1, "flip": 2, "tencrop": 10}  # views per image of each test-time augmentation


def predict_proba(classifier, images: np.ndarray, batch_size: int = 256, tta: str = "none",
                  crop: float = TENCROP_SIDE) -> np.ndarray:
    """Probabilities N×7, averaged over the test-time views `tta` names (see `tta_views`). The views of
    up to batch_size // views images go to the model together: one call for a photo's faces and their
    ten crops, not ten calls (each call costs ~0.5 ms on its own), and never all views of a large set
    in memory at once."""
    images = np.asarray(images)
    if len(images) == 0:
        return classifier.predict_proba(images, batch_size=batch_size)
    per_chunk = max(1, batch_size // TTA_VIEWS.get(tta, 1))  # an unknown tta fails in tta_views
    chunks = []
    for start in range(0, len(images), per_chunk):
        views = tta_views(images[start:start + per_chunk], tta, crop)
        proba = classifier.predict_proba(np.concatenate(views), batch_size=len(views) * per_chunk)
        chunks.append(proba.reshape(len(views), -1, proba.shape[-1]).mean(axis=0))
    return np.concatenate(chunks)


def ensemble_proba(classifiers, images: np.ndarray, batch_size: int = 256, tta: str = "none",
                   crop: float = TENCROP_SIDE) -> np.ndarray:
    """The mean of several classifiers' probabilities (each with the same test-time views)."""
    return np.mean([predict_proba(c, images, batch_size, tta, crop) for c in classifiers], axis=0)


def tta_views(images: np.ndarray, tta: str, crop: float = TENCROP_SIDE) -> list[np.ndarray]:
    """none: the images; flip: and their mirrors; tencrop: five views, each the image shifted (edges
    repeated) so that its centre window of side `crop` × size shows one corner's window, then the centre
    itself; and their mirrors. For a model that classifies its centre 40×40 window (train.input_crop),
    crop = 40/48 gives the classic ten 40×40 crops while every view stays a whole 48×48 image."""
    if tta not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose none, flip or tencrop")
    views = [images] if tta != "tencrop" else _five_shifts(images, crop)
    if tta != "none":
        views += [view[:, :, ::-1] for view in views]
    return views


def _five_shifts(images: np.ndarray, fraction: float) -> list[np.ndarray]:
    size = images.shape[1]
    shift = (size - max(1, round(size * fraction))) // 2
    if shift == 0 or len(images) == 0:
        return [images] * 5
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)), mode="edge")
    far = 2 * shift  # the window at the top-left corner moves to the centre when the view starts at 0
    return [padded[:, top:top + size, left:left + size] for top, left in
            ((0, 0), (0, far), (far, 0), (far, far), (shift, shift))]


def score(labels: np.ndarray, proba: np.ndarray) -> dict:
    """Loss, accuracy, macro-F1 and per-class precision/recall/F1/support."""
    predicted = proba.argmax(axis=1)
    classes = list(range(len(CLASSES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    present = support > 0  # macro-F1 over the classes that occur in the data
    return {
        "images": int(len(labels)),
        "loss": float(log_loss(labels, np.clip(proba, 1e-7, 1), labels=classes)),
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(CLASSES)},
    }


def write_confusion(labels: np.ndarray, proba: np.ndarray, csv_path: Path, png_path: Path, title: str) -> None:
    """Per-image actual/predicted rows (DVC's confusion template) and a PNG heat map."""
    predicted = proba.argmax(axis=1)
    rows = pd.DataFrame({"actual": np.array(CLASSES)[labels], "predicted": np.array(CLASSES)[predicted]})
    with atomic_path(csv_path) as tmp:
        rows.to_csv(tmp, index=False)
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(CLASSES))))
    plots.plot_confusion(matrix, png_path, title)


def write_misclassified(images: np.ndarray, labels: np.ndarray, proba: np.ndarray, dest: Path, count: int) -> None:
    """The most confidently wrong predictions, titled 'actual → predicted (p)'."""
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-proba[wrong, predicted[wrong]], kind="stable")][:count]
    titles = [f"{CLASSES[labels[i]]}→{CLASSES[predicted[i]]}\n{proba[i, predicted[i]]:.2f}" for i in wrong]
    plots.image_grid(images[wrong], titles, dest, columns=6, title="Most confident mistakes (actual→predicted)")
