"""Find faces in a photo or video frame and cut each one to the model's input.

Detection is OpenCV's frontal-face Haar cascade "alt2", which ships in the opencv wheel and works
offline. Every crop goes through `emotion.data.to_model_input`, so serving sees the same pixels as training.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from emotion.data import IMAGE_SIZE, to_model_input
from emotion.errors import EmotionError

FaceMode = Literal["auto", "detect", "whole"]
# alt2 found more faces with fewer false boxes than "default" on our composited test scenes, and runs faster.
CASCADE = "haarcascade_frontalface_alt2.xml"
CROP_MAX_SIDE = 128  # auto mode: an image this small is taken to be a face crop already (FER is 48×48)
MIN_FACE_PX = 48  # smaller faces carry less detail than the model's 48×48 input
MIN_FACE_FRACTION = 0.05  # ... and faces under 5% of the shorter side are not searched (bounds the cost)
_WINDOW = 24  # detection runs on a copy scaled so the smallest face is this big (the cascade's window is 20)
DEFAULT_MARGIN = 0.1  # per side, as a fraction of the box: the cascade's box is tighter than FER crops


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height of the detected face in image pixels
    crop: tuple[int, int, int, int]  # left, top, right, bottom actually cut (box plus margin, clipped)
    pixels: np.ndarray  # uint8 48×48 model input
    detector: str  # "haar" or "whole" (the whole image taken as the face)


@functools.lru_cache(maxsize=None)
def _cascade():
    import cv2

    path = cv2.data.haarcascades + CASCADE
    detector = cv2.CascadeClassifier(path)
    if detector.empty():
        raise EmotionError(f"{path}: OpenCV's face cascade is missing (opencv 5 wheels dropped it); "
                           "install opencv-python-headless>=4.8,<5")
    return detector


def detect(gray: np.ndarray, min_neighbors: int = 4) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in a uint8 grayscale image, largest first."""
    import cv2

    height, width = gray.shape
    min_face = max(MIN_FACE_PX, MIN_FACE_FRACTION * min(height, width))
    scale = min(1.0, _WINDOW / min_face)
    small = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                                                 interpolation=cv2.INTER_AREA)
    found = _cascade().detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1, minNeighbors=min_neighbors,
                                        minSize=(_WINDOW, _WINDOW))
    boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


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
               gray: np.ndarray | None = None) -> list[Face]:
    """Every face in `image` as model input. mode: auto (small images are crops, others are searched),
    detect (always search), whole (the image is one face). `gray` may pass a ready grayscale copy."""
    if mode not in ("auto", "detect", "whole"):
        raise EmotionError(f"unknown face mode '{mode}'; use auto, detect or whole")
    width, height = image.size
    if mode == "whole" or (mode == "auto" and is_face_crop(image)):
        return [Face((0, 0, width, height), (0, 0, width, height), to_model_input(image, IMAGE_SIZE), "whole")]
    if gray is None:
        gray = np.asarray(image.convert("L"))
    faces = []
    for box in detect(gray):
        crop = with_margin(box, margin, width, height)
        faces.append(Face(box, crop, to_model_input(image.crop(crop), IMAGE_SIZE), "haar"))
    return faces
