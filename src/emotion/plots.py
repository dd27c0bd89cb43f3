"""Figures saved as PNG (for people) next to the CSV/TSV data DVC renders (for `dvc plots`)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from emotion.data import CLASSES  # noqa: E402
from emotion.fileio import atomic_path  # noqa: E402

# PNG metadata without the version string keeps the bytes stable across matplotlib releases.
_PNG_META = {"Software": None}


def save_figure(fig, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=_PNG_META, bbox_inches="tight")
    plt.close(fig)


def class_distribution(manifest: pd.DataFrame) -> pd.DataFrame:
    counts = manifest.groupby(["folder", "label"]).size().rename("count").reset_index()
    return counts.rename(columns={"label": "class"})[["class", "folder", "count"]]


def plot_class_distribution(counts: pd.DataFrame, dest: Path) -> None:
    table = counts.pivot(index="class", columns="folder", values="count").reindex(CLASSES).fillna(0)
    fig, ax = plt.subplots(figsize=(7, 4))
    table.plot.barh(ax=ax)
    ax.set_xlabel("images")
    ax.set_title("Images per class")
    save_figure(fig, dest)


def image_grid(images: np.ndarray, titles: list[str], dest: Path, columns: int, title: str = "") -> None:
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, text in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.set_title(text, fontsize=7)
    if title:
        fig.suptitle(title)
    save_figure(fig, dest)


def plot_confusion(matrix: np.ndarray, dest: Path, title: str) -> None:
    """Row-normalised confusion matrix (recall on the diagonal) with raw counts in each cell."""
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{matrix[i, j]}", ha="center", va="center", fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    save_figure(fig, dest)
