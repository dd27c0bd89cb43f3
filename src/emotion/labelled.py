"""Labelled folders of images (class subfolders, FER2013's layout or another dataset's) read for scoring
with `emotion evaluate`: each image whole, or its largest face found and cut as the apps cut faces.

Kept apart from emotion.data, which every pipeline stage depends on: this is the command's reading, and
changing it must not make `dvc repro` rerun the pipeline.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emotion.data import CLASSES, list_class_folders
from emotion.detectors import DEFAULT_DETECTOR
from emotion.errors import EmotionError
from emotion.faces import (CROP_MAX_SIDE, DEFAULT_ALIGN, DEFAULT_MARGIN, FaceMode, centre_square, check_face_mode,
                           check_margin, find_faces)
from emotion.images import IMAGE_SIZE, open_image, read_image, to_model_input


def is_test_split(path: Path) -> bool:
    return "test" in Path(path).name.lower()


def refuse_test_split(path: Path, choice: str) -> None:
    """Stop before `choice` (ensemble weights, a margin, a TTA) is made on a test split: every choice is made
    on validation data; a test split is scored once, to report."""
    if is_test_split(path):
        raise EmotionError(f"{path}: choose {choice} on validation data (e.g. data/prepared/val.npz), "
                           "never on the test split")


def read_labelled_folder(root: Path, image_size: int = IMAGE_SIZE, read: Callable[[Path], np.ndarray] | None = None,
                         progress_every: int = 1000) -> dict[str, np.ndarray]:
    """Any folder of class subfolders (FER2013 layout or another dataset, PNG or JPEG) as arrays. `read`
    turns one file into model input (default: the whole image, read_image; LabelledFaceReader cuts the
    largest face). Unreadable files are skipped, each with a printed line, then their count."""
    read = read or (lambda file: read_image(file, image_size))
    files = [(label, file) for label, class_dir in list_class_folders(Path(root), allow_missing=True).items()
             for file in sorted(p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith("."))]
    images, labels, ids, skipped = [], [], [], 0
    for i, (label, file) in enumerate(files, 1):
        if i % progress_every == 0:
            print(f"  read {i}/{len(files)} files", flush=True)
        try:
            images.append(read(file))
        except EmotionError as err:
            print(f"  skipped {err}")
            skipped += 1
            continue
        labels.append(CLASSES.index(label))
        ids.append(file.relative_to(root).as_posix())
    if not images:
        raise EmotionError(f"{root}: no readable images in its class folders")
    if skipped:
        print(f"  skipped {skipped} unreadable file(s) of {skipped + len(images)}; scoring the other {len(images)}")
    return {"images": np.stack(images), "labels": np.array(labels, dtype=np.int64), "ids": np.array(ids, dtype=str)}


class LabelledFaceReader:
    """Reads a labelled photo for scoring (`emotion evaluate` on a folder): the largest face found in it,
    cut as the apps cut faces, so a dataset of full photos is scored on faces, not on whole frames. Small
    images are crops already (mode auto). A photo where no face is found is scored on its centre square
    rather than left out, so the accuracy still counts every image; `counts` says how many of each there were."""

    def __init__(self, mode: FaceMode = "auto", margin: float = DEFAULT_MARGIN, detector: str = DEFAULT_DETECTOR,
                 align: bool = DEFAULT_ALIGN):
        check_face_mode(mode)
        check_margin(margin)
        self.mode, self.margin, self.detector, self.align = mode, margin, detector, align
        self.counts: Counter[str] = Counter()  # crop | detected | no face

    def __call__(self, path: str | Path) -> np.ndarray:
        image = open_image(path)
        found = find_faces(image, self.mode, self.margin, self.detector, self.align)
        if not found.faces:
            self.counts["no face"] += 1
            return to_model_input(centre_square(image), IMAGE_SIZE)
        self.counts["crop" if found.detector == "whole" else "detected"] += 1
        return found.faces[0].pixels

    def summary(self) -> str:
        """`faces: 118 found by blazeface, 2 taken whole (crops up to 128 px), 3 with no face found (scored on the centre square)`"""
        parts = []
        if self.counts["detected"]:
            parts.append(f"{self.counts['detected']} found by {self.detector}")
        if self.counts["crop"]:
            rule = f" (crops up to {CROP_MAX_SIDE} px)" if self.mode == "auto" else ""
            parts.append(f"{self.counts['crop']} taken whole{rule}")
        if self.counts["no face"]:
            parts.append(f"{self.counts['no face']} with no face found (scored on the centre square)")
        return "faces: " + ", ".join(parts)
