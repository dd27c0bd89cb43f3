"""A tiny FER2013-shaped dataset for tests and demos: each class is a stripe pattern of its own period
(unchanged by flips, shifts and pooling), so a model can learn it in seconds. Written in the Kaggle layout (train/<class>/Training_<n>.jpg, ...)."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from emotion.data import CLASSES


def synthetic_face(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    period = 3 + 1.5 * label
    x = np.arange(size) * (2 * np.pi / period) + rng.uniform(0, 2 * np.pi)
    image = 120 + 70 * np.sin(x)[None, :] + rng.normal(0, 15, (size, size))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_fake_fer(root: Path, train_per_class: int = 12, test_per_class: int = 4, seed: int = 0) -> Path:
    """Write the folder layout under root; returns root."""
    rng = np.random.default_rng(seed)
    counter = 0
    for folder, usage, count in (("train", "Training", train_per_class), ("test", "PublicTest", test_per_class)):
        for label, name in enumerate(CLASSES):
            (root / folder / name).mkdir(parents=True, exist_ok=True)
            for _ in range(count):
                counter += 1
                Image.fromarray(synthetic_face(label, rng)).save(root / folder / name / f"{usage}_{counter}.jpg", quality=95)
    return root


def write_fake_fer_zip(archive: Path, **kwargs) -> Path:
    """The same dataset as a zip with fixed timestamps (like Kaggle's archive, no top folder)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = write_fake_fer(Path(tmp), **kwargs)
        with zipfile.ZipFile(archive, "w") as zf:
            for file in sorted(root.rglob("*.jpg")):
                zf.write(file, file.relative_to(root).as_posix())
    return archive
