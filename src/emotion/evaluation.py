"""Scores for any classifier that maps uint8 N×48×48 images to 7 probabilities."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, log_loss, precision_recall_fscore_support

from emotion import plots
from emotion.data import CLASSES
from emotion.fileio import atomic_path


def predict_proba(classifier, images: np.ndarray, batch_size: int = 256, tta_flip: bool = False) -> np.ndarray:
    """Probabilities N×7; with tta_flip, the mean over the image and its mirror."""
    proba = classifier.predict_proba(images, batch_size=batch_size)
    if tta_flip:
        proba = (proba + classifier.predict_proba(images[:, :, ::-1], batch_size=batch_size)) / 2
    return proba


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
