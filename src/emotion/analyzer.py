"""The analyzer shared by `emotion predict`, `video` and `serve`: a loaded model plus face-finding
settings; images in, per-face probabilities out. FrameFaces finds the faces of a video's frames with
the detector run on every frame or every Nth one."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from emotion.data import CLASSES, IMAGE_SIZE
from emotion.detectors import DEFAULT_DETECTOR, get_detector
from emotion.errors import EmotionError
from emotion.faces import (DEFAULT_ALIGN, DEFAULT_MARGIN, Face, FaceMode, FoundFaces, check_margin, find_faces,
                           recut_face)

DEFAULT_TTA = "tencrop"  # the apps' and library's views per face (gain and cost per model: README, What ships)


@dataclass(frozen=True)
class FaceResult:
    face: Face
    probabilities: np.ndarray  # float32, 7, in CLASSES order

    @property
    def label(self) -> int:
        return int(self.probabilities.argmax())

    @property
    def emotion(self) -> str:
        return CLASSES[self.label]

    @property
    def confidence(self) -> float:
        return float(self.probabilities.max())

    def as_dict(self) -> dict:
        x, y, w, h = self.face.box
        return {"box": {"x": x, "y": y, "w": w, "h": h}, "detector": self.face.detector,
                "emotion": self.emotion, "confidence": round(self.confidence, 5),
                "probabilities": {c: round(float(p), 5) for c, p in zip(CLASSES, self.probabilities)}}


class Analyzer:
    """A loaded model plus face-finding settings: an image in, its faces out (find_faces), and
    their probabilities (classify, batched over images)."""

    def __init__(self, model: str | Path, mode: FaceMode = "auto", margin: float = DEFAULT_MARGIN,
                 batch_size: int = 256, detector: str = DEFAULT_DETECTOR, tta: str = DEFAULT_TTA,
                 align: bool = DEFAULT_ALIGN, smallest_face: float | None = None):
        from emotion.inference import load_classifier

        check_margin(margin)
        if batch_size < 1:
            raise EmotionError(f"--batch-size {batch_size}: use a positive number of faces per model call, e.g. 256")
        self.detector = get_detector(detector, smallest_face)  # an unknown or missing detector fails before the model loads
        model = Path(model)
        self.classifier = load_classifier(model)  # which also refuses a model trained on other classes
        self.model_name = str(model)
        self.runtime = self.classifier.runtime
        self.mode, self.margin, self.batch_size, self.align = mode, margin, batch_size, align
        if tta not in ("none", "flip", "tencrop"):
            raise EmotionError(f"--tta {tta}: choose none, flip or tencrop")
        self.tta = tta  # views averaged per face, as the evaluate stage scores (evaluation.tta_views)

    def classify(self, faces_per_image: list[list[Face]]) -> list[list[FaceResult]]:
        """One model call for the faces of all images (batched), split back per image."""
        flat = [face for faces in faces_per_image for face in faces]
        pixels = np.stack([f.pixels for f in flat]) if flat else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        from emotion.evaluation import predict_proba

        proba = predict_proba(self.classifier, pixels, self.batch_size, self.tta)
        results, i = [], 0
        for faces in faces_per_image:
            results.append([FaceResult(f, proba[i + k]) for k, f in enumerate(faces)])
            i += len(faces)
        return results

    def find_faces(self, image: Image.Image, mode: FaceMode | None = None) -> FoundFaces:
        return find_faces(image, mode or self.mode, self.margin, self.detector, self.align)


class FrameFaces:
    """The faces of one video's frames, in order. The detector runs on every `detect_every`th frame (the
    first included); on the frames between, the faces it found last are cut again from the new frame at
    the same boxes and turn, so their expressions are still read every frame."""

    def __init__(self, analyzer: Analyzer, detect_every: int = 1):
        if detect_every < 1:
            raise EmotionError(f"--detect-every {detect_every}: use 1 to detect faces on every frame, or N > 1 "
                               "for every Nth frame")
        self.analyzer, self.detect_every = analyzer, detect_every
        self._frame, self._last = 0, []

    def next(self, image: Image.Image) -> list[Face]:
        """The faces of the frame after the previous call's (faces too small to classify are left out)."""
        if self._frame % self.detect_every == 0:
            self._last = self.analyzer.find_faces(image).faces
        else:
            self._last = [recut_face(image, face, self.analyzer.margin) for face in self._last]
        self._frame += 1
        return self._last
