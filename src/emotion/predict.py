"""Classify the faces in photos: the analyzer shared by `emotion predict`, `video` and `serve`, the
annotation drawing, and the batch job that turns images and folders into annotated copies + a report."""
from __future__ import annotations

import csv
import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image

from emotion.data import CLASSES, IMAGE_SIZE
from emotion.errors import EmotionError
from emotion.detectors import DEFAULT_DETECTOR, get_detector
from emotion.faces import DEFAULT_MARGIN, Face, FaceMode, find_faces
from emotion.fileio import atomic_path, write_json
from emotion.images import open_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# RGB colour per class, in CLASSES order.
COLORS = ((220, 50, 47), (133, 153, 0), (108, 113, 196), (255, 190, 0), (160, 160, 160), (38, 139, 210),
          (211, 54, 130))
MIN_ANNOTATED_SIDE = 240  # small inputs (48×48 crops) are enlarged so the label stays legible


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
    """A loaded model plus face-finding settings: images in, per-face probabilities out."""

    def __init__(self, model: str | Path, mode: FaceMode = "auto", margin: float = DEFAULT_MARGIN,
                 batch_size: int = 256, detector: str = DEFAULT_DETECTOR, tta: str = "none"):
        from emotion.inference import load_classifier, read_labels

        if not 0 <= margin <= 1:
            raise EmotionError(f"--margin {margin}: use a fraction of the face box between 0 and 1, e.g. 0.1")
        if batch_size < 1:
            raise EmotionError(f"--batch-size {batch_size}: use a positive number of faces per model call, e.g. 256")
        self.detector = get_detector(detector)  # an unknown or missing detector fails before the model loads
        model = Path(model)
        labels = read_labels(model if model.is_dir() else model.parent)
        if labels is not None and list(labels) != list(CLASSES):
            raise EmotionError(f"{model}: labels.json lists {labels}, expected {list(CLASSES)}; re-export the model")
        self.classifier = load_classifier(model)
        self.model_name = str(model)
        self.runtime = self.classifier.runtime
        self.mode, self.margin, self.batch_size = mode, margin, batch_size
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

    def analyze(self, images: list[Image.Image], mode: FaceMode | None = None) -> list[list[FaceResult]]:
        return self.classify([self.find_faces(image, mode) for image in images])

    def find_faces(self, image: Image.Image, mode: FaceMode | None = None) -> list[Face]:
        return find_faces(image, mode or self.mode, self.margin, self.detector)

    def no_face_reason(self, image: Image.Image) -> str:
        """Why an image gave no face: the result is empty, not an error."""
        return (f"no face found by {self.detector.name} (it looks for faces of "
                f"{self.detector.smallest_face(*image.size)} px and larger)")


def list_images(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, name for its annotated copy) for each file given and each image file under each folder."""
    found = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            found += [(f, Path(path.resolve().name or "root") / f.relative_to(path)) for f in files]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise EmotionError(f"{path}: no such file or folder; check the path")
    if not found:
        raise EmotionError(f"{', '.join(map(str, paths))}: no images found "
                           f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


# --- drawing --------------------------------------------------------------------------------

def annotate(image: Image.Image, results: list[FaceResult], bars: bool = False,
             max_side: int | None = None) -> np.ndarray:
    """An RGB copy with a box, label and confidence per face (and optional probability bars);
    small images are enlarged to stay legible, and large ones shrunk to max_side if given."""
    import cv2

    canvas = np.array(image.convert("RGB"))
    scale = max(1.0, MIN_ANNOTATED_SIDE / min(canvas.shape[:2]))
    if max_side and max(canvas.shape[:2]) > max_side:
        scale = max_side / max(canvas.shape[:2])
    if scale != 1.0:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale,
                            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    draw_results(canvas, results, scale, bars)
    return canvas


def draw_results(canvas: np.ndarray, results: list[FaceResult], scale: float = 1.0, bars: bool = False,
                 bgr: bool = False) -> None:
    """Draw in place on an H×W×3 uint8 image whose coordinates are the faces' times `scale`."""
    import cv2

    size = min(canvas.shape[:2])
    thick = max(1, round(size / 300))
    font = max(0.4, size / 900)
    for result in results:
        x, y, w, h = (round(v * scale) for v in result.face.box)
        color = COLORS[result.label][::-1] if bgr else COLORS[result.label]
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), color, thick + 1)
        text = f"{result.emotion} {result.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else min(canvas.shape[0] - base - 2, y + h + th + 4)
        cv2.rectangle(canvas, (x, ty - th - 4), (x + tw + 6, ty + base), color, -1)
        cv2.putText(canvas, text, (x + 3, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
        if bars:
            _draw_bars(canvas, result.probabilities, (x, y, w, h), font, thick, bgr)


def _draw_bars(canvas, probabilities, box, font: float, thick: int, bgr: bool) -> None:
    """Seven bars on a dark panel beside the face: right of it if there is room, else left, below, over it."""
    import cv2

    bx, by, bw, bh = box
    row = max(10, round(24 * font))
    bar = 5 * row
    (text_w, _), _ = cv2.getTextSize("surprise 100%", cv2.FONT_HERSHEY_SIMPLEX, font * 0.8, max(1, thick - 1))
    panel_w, panel_h = min(bar + text_w + 14, canvas.shape[1]), min(7 * row + 4, canvas.shape[0])
    x, y = max(0, min(bx, canvas.shape[1] - panel_w)), by
    if bx + bw + 6 + panel_w <= canvas.shape[1]:
        x = bx + bw + 6
    elif bx - 6 - panel_w >= 0:
        x = bx - 6 - panel_w
    elif by + bh + 6 + panel_h <= canvas.shape[0]:
        y = by + bh + 6
    y = max(0, min(y, canvas.shape[0] - panel_h))
    panel = canvas[y:y + panel_h, x:x + panel_w]
    panel[:] = (panel * 0.35).astype(np.uint8)  # darken rather than hide what is behind
    for i, (name, p) in enumerate(zip(CLASSES, probabilities)):
        top = y + 2 + i * row
        color = COLORS[i][::-1] if bgr else COLORS[i]
        cv2.rectangle(canvas, (x + 4, top + 2), (x + 4 + bar, top + row - 2), (70, 70, 70), -1)
        cv2.rectangle(canvas, (x + 4, top + 2), (x + 4 + round(bar * float(p)), top + row - 2), color, -1)
        cv2.putText(canvas, f"{name} {p:.0%}", (x + bar + 8, top + row - 3), cv2.FONT_HERSHEY_SIMPLEX,
                    font * 0.8, (255, 255, 255), max(1, thick - 1), cv2.LINE_AA)


def encode_image(rgb: np.ndarray, suffix: str = ".jpg", quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}.get(suffix.lower(), "PNG")
    Image.fromarray(rgb).save(buffer, fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


# --- the batch job --------------------------------------------------------------------------

REPORT_COLUMNS = ["file", "status", "reason", "face", "x", "y", "w", "h", "detector", "emotion", "confidence",
                  *CLASSES]


MAX_PENDING_PIXELS = 50_000_000  # decoded photos held until their faces are classified in one batch


class Progress:
    """`12/40 files, 9 faces, 3.1 files/s`: one line on a terminal, rewritten in place at most every
    `interval` seconds, shown once more and ended with a newline on finish. Writes nothing at all when
    the stream is not a terminal (piped, redirected, a log file), so reports and logs stay clean."""

    def __init__(self, total: int, stream: TextIO | None, interval: float = 0.1, clock=time.monotonic):
        self.total, self.stream, self.interval, self.clock = total, stream, interval, clock
        self.enabled = stream is not None and stream.isatty()
        self.files = self.faces = self.width = 0
        self.started = self.last_shown = clock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info) -> None:
        self.finish()  # also on an error, so its message starts on a line of its own

    def advance(self, faces: int) -> None:
        self.files += 1
        self.faces += faces
        if self.enabled and self.clock() - self.last_shown >= self.interval:
            self._show()

    def finish(self) -> None:
        if self.enabled:
            self._show(end="\n")
            self.enabled = False

    def _show(self, end: str = "") -> None:
        self.last_shown = now = self.clock()
        rate = self.files / max(now - self.started, 1e-6)
        line = f"{self.files}/{self.total} files, {self.faces} faces, {rate:.1f} files/s"
        self.stream.write("\r" + line.ljust(self.width) + end)  # padded over a longer previous line
        self.stream.flush()
        self.width = len(line)


@dataclass
class _Pending:
    file: Path
    name: Path  # of the annotated copy
    image: Image.Image | None
    error: str | None
    faces: list[Face]


def predict_paths(paths: list[Path], out_dir: Path, analyzer: Analyzer, annotate_images: bool = True,
                  bars: bool = False, progress_stream: TextIO | None = None) -> dict:
    """Analyze every image; write out_dir/annotated/…, predictions.csv, predictions.json, summary.json.
    Progress goes to `progress_stream` (e.g. sys.stderr) if it is a terminal."""
    records, taken, pending = [], set(), []

    def flush():
        for item, results in zip(pending, analyzer.classify([p.faces for p in pending])):
            records.append(_record(item, results, out_dir if annotate_images else None, bars, taken, analyzer))
        pending.clear()

    files = list_images([Path(p) for p in paths])
    with Progress(len(files), progress_stream) as progress:
        for file, name in files:
            pending.append(_load(file, name, analyzer))
            progress.advance(faces=len(pending[-1].faces))
            if (sum(len(p.faces) for p in pending) >= analyzer.batch_size
                    or sum(p.image.width * p.image.height for p in pending if p.image) >= MAX_PENDING_PIXELS):
                flush()
        flush()
    report = {"model": analyzer.model_name, "runtime": analyzer.runtime, "face_mode": analyzer.mode,
              "detector": analyzer.detector.name,
              "summary": summarize(records), "images": records}
    _write_csv(out_dir / "predictions.csv", records)
    write_json(out_dir / "predictions.json", report)
    write_json(out_dir / "summary.json", report["summary"])
    return report


def _load(file: Path, name: Path, analyzer: Analyzer) -> _Pending:
    try:
        image = open_image(file)
    except EmotionError as err:
        return _Pending(file, name, None, str(err).removeprefix(f"{file}: "), [])
    return _Pending(file, name, image, None, analyzer.find_faces(image))


def _record(item: _Pending, results: list[FaceResult], annotated_dir: Path | None, bars: bool, taken: set,
            analyzer: Analyzer) -> dict:
    image = item.image
    record = {"file": str(item.file), "status": "skipped" if item.error else ("ok" if results else "no_face"),
              "reason": item.error or (None if results else analyzer.no_face_reason(image)), "width": image.width if image else None,
              "height": image.height if image else None, "annotated": None,
              "faces": [r.as_dict() for r in results]}
    if image and annotated_dir:
        record["annotated"] = _write_annotated(annotated_dir, item.name, image, results, bars, taken)
    return record


def _write_annotated(out_dir: Path, name: Path, image: Image.Image, faces, bars: bool, taken: set) -> str:
    suffix = name.suffix.lower() if name.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".webp") else ".png"
    rel = name.with_suffix(suffix)
    n = 1
    while rel.as_posix() in taken:  # two inputs with the same name: keep both
        n += 1
        rel = name.with_name(f"{name.stem}_{n}{suffix}")
    taken.add(rel.as_posix())
    with atomic_path(out_dir / "annotated" / rel) as tmp:
        tmp.write_bytes(encode_image(annotate(image, faces, bars), suffix))
    return f"annotated/{rel.as_posix()}"


def summarize(records: list[dict]) -> dict:
    per_emotion = Counter(face["emotion"] for r in records for face in r["faces"])
    status = Counter(r["status"] for r in records)
    return {"images": len(records), "with_faces": status["ok"], "no_face": status["no_face"],
            "skipped": status["skipped"], "faces": sum(per_emotion.values()),
            "per_emotion": {c: per_emotion.get(c, 0) for c in CLASSES}}


def _write_csv(dest: Path, records: list[dict]) -> None:
    with atomic_path(dest) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, REPORT_COLUMNS)
        writer.writeheader()
        for r in records:
            base = {"file": r["file"], "status": r["status"], "reason": r["reason"] or ""}
            if not r["faces"]:
                writer.writerow(base)
            for i, face in enumerate(r["faces"]):
                writer.writerow({**base, "face": i, **face["box"], "detector": face["detector"],
                                 "emotion": face["emotion"], "confidence": face["confidence"],
                                 **face["probabilities"]})


def format_summary(summary: dict) -> str:
    counts = ", ".join(f"{c} {n}" for c, n in summary["per_emotion"].items() if n) or "none"
    return (f"{summary['images']} images: {summary['with_faces']} with faces ({summary['faces']} faces), "
            f"{summary['no_face']} without a face, {summary['skipped']} skipped; faces per emotion: {counts}")
