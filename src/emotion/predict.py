"""`emotion predict`: the batch job that turns images and folders into annotated copies and a report
(predictions.csv, predictions.json, summary.json)."""
from __future__ import annotations

import contextlib
import csv
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from PIL import Image

from emotion.analyzer import Analyzer, FaceResult
from emotion.data import CLASSES
from emotion.drawing import WRITABLE_FORMATS, annotate, encode_image
from emotion.errors import EmotionError
from emotion.faces import Face, FoundFaces
from emotion.fileio import atomic_path, write_json
from emotion.images import ImageTooLarge, open_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
UNDECODED_SUFFIXES = {".heic", ".heif", ".avif"}  # listed, so a folder's report names them as skipped
DEFAULT_MAX_MEGAPIXELS = 200.0  # phones shoot 108 and 200 MP; Pillow alone refuses over 89.5
DEFAULT_SMALLEST_FACE = 0.02  # of the shorter side: photos are not real time, so group photos are searched down to
# their small faces (12 MP: 60 px); the detectors' own 5% bounds the cost of video frames and uploads
REPORT_COLUMNS = ["file", "status", "reason", "face", "x", "y", "w", "h", "detector", "emotion", "confidence",
                  *CLASSES]
MAX_PENDING_PIXELS = 50_000_000  # decoded photos held until their faces are classified in one batch


def list_images(paths: list[Path]) -> list[tuple[Path, Path]]:
    """(file, name for its annotated copy) for each file given and each image file under each folder,
    except the annotated copies of an earlier report (annotated/ beside a predictions.json), so a report
    folder inside a searched one is not read back as photos."""
    found = []
    for path in paths:
        if path.is_dir():
            entries = list(path.rglob("*"))  # one walk of the tree for the reports and the files
            skip = {entry for entry in entries if entry.name == "annotated" and _is_report(entry)}
            files = sorted(p for p in entries if p.is_file()
                           and p.suffix.lower() in IMAGE_SUFFIXES | UNDECODED_SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts)
                           and skip.isdisjoint(p.parents))
            found += [(f, Path(path.resolve().name or "root") / f.relative_to(path)) for f in files]
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise EmotionError(f"{path}: no such file or folder; check the path")
    if not found:
        raise EmotionError(f"{', '.join(map(str, paths))}: no images found "
                           f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def _is_report(annotated: Path) -> bool:
    return annotated.is_dir() and (annotated.parent / "predictions.json").is_file()


def _check_annotated_folder(annotated: Path, paths: list[Path]) -> None:
    """The run replaces `annotated` as a whole: only an earlier report's may be there, and no input inside it."""
    if annotated.exists() and not _is_report(annotated):
        raise EmotionError(f"{annotated}: already there and not an earlier report's (no predictions.json beside "
                           "it), and the report would replace it; choose another --out")
    for path in paths:
        if annotated.resolve() in (path.resolve(), *path.resolve().parents):
            raise EmotionError(f"{path}: inside {annotated}, which this run replaces; choose another --out")


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
    error: str | None  # why the file was skipped
    found: FoundFaces | None = None

    @property
    def faces(self) -> list[Face]:
        return self.found.faces if self.found else []


def predict_paths(paths: list[Path], out_dir: Path, analyzer: Analyzer, annotate_images: bool = True,
                  bars: bool = False, progress_stream: TextIO | None = None,
                  max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> dict:
    """Analyze every image; write out_dir/annotated/…, predictions.csv, predictions.json, summary.json.
    Progress goes to `progress_stream` (e.g. sys.stderr) if it is a terminal. A photo over
    `max_megapixels` (read from its header) is skipped with the reason. The annotated copies replace
    the folder's earlier ones as a whole, at the end, so it holds exactly the images the report lists."""
    out_dir, paths = Path(out_dir), [Path(p) for p in paths]
    files = list_images(paths)
    if annotate_images:
        _check_annotated_folder(out_dir / "annotated", paths)
    annotated = atomic_path(out_dir / "annotated", is_dir=True) if annotate_images else contextlib.nullcontext()
    with annotated as annotated_dir:
        records = _analyze(files, analyzer, annotated_dir, bars, progress_stream, int(max_megapixels * 1e6))
    report = {"model": analyzer.model_name, "runtime": analyzer.runtime, "face_mode": analyzer.mode,
              "detector": analyzer.detector.name, "align": analyzer.align,
              "summary": summarize(records), "images": records}
    _write_csv(out_dir / "predictions.csv", records)
    write_json(out_dir / "predictions.json", report)
    write_json(out_dir / "summary.json", report["summary"])
    return report


def _analyze(files, analyzer: Analyzer, annotated_dir: Path | None, bars: bool, progress_stream: TextIO | None,
             max_pixels: int) -> list[dict]:
    """One record per file, its faces classified in batches, each annotated copy written under annotated_dir."""
    records, taken, pending = [], set(), []

    def flush():
        for item, results in zip(pending, analyzer.classify([p.faces for p in pending])):
            records.append(_record(item, results, annotated_dir, bars, taken))
        pending.clear()

    with Progress(len(files), progress_stream) as progress:
        for file, name in files:
            pending.append(_load(file, name, analyzer, max_pixels))
            progress.advance(faces=len(pending[-1].faces))
            if (sum(len(p.faces) for p in pending) >= analyzer.batch_size
                    or sum(p.image.width * p.image.height for p in pending if p.image) >= MAX_PENDING_PIXELS):
                flush()
        flush()
    return records


def _load(file: Path, name: Path, analyzer: Analyzer, max_pixels: int) -> _Pending:
    try:
        image = open_photo(file, max_pixels)
    except EmotionError as err:
        return _Pending(file, name, None, str(err).removeprefix(f"{file}: "))
    return _Pending(file, name, image, None, analyzer.find_faces(image))


def open_photo(file: Path, max_pixels: int) -> Image.Image:
    """open_image with `max_pixels` (--max-megapixels) as the only size limit, checked from the header before
    decoding, and a one-line reason for the phone formats Pillow cannot decode."""
    if file.suffix.lower() in UNDECODED_SUFFIXES:
        raise EmotionError(f"{file}: a {file.suffix[1:].upper()} photo, which this tool cannot decode; "
                           "convert it to JPEG or PNG (most phones can also shoot JPEG)")
    try:
        with _without_pillow_limit():
            return open_image(file, max_pixels=max_pixels)
    except ImageTooLarge as err:
        raise ImageTooLarge(f"{err} or raise --max-megapixels") from None


@contextlib.contextmanager
def _without_pillow_limit():
    """Pillow's own limit off (it is process-wide, and predict reads one photo at a time): open_image checks
    `max_pixels` itself, so a photo over it is refused in terms of --max-megapixels, not Pillow's 89.5 MP."""
    default = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = default


def _record(item: _Pending, results: list[FaceResult], annotated_dir: Path | None, bars: bool, taken: set) -> dict:
    image, too_small = item.image, item.found.too_small if item.found else []
    record = {"file": str(item.file), "status": _status(item, results),
              "reason": item.error or item.found.reason, "width": image.width if image else None,
              "height": image.height if image else None, "annotated": None,
              "faces": [r.as_dict() for r in results], "skipped_faces": [f.as_dict() for f in too_small]}
    if image and annotated_dir:
        record["annotated"] = _write_annotated(annotated_dir, item.name, image, results, bars, taken)
    return record


def _status(item: _Pending, results: list[FaceResult]) -> str:
    if item.error:
        return "skipped"
    return "ok" if results else "too_small" if item.found.too_small else "no_face"


def _write_annotated(out_dir: Path, name: Path, image: Image.Image, faces, bars: bool, taken: set) -> str:
    suffix = name.suffix.lower() if name.suffix.lower() in WRITABLE_FORMATS else ".png"
    rel = name.with_suffix(suffix)
    n = 1
    while rel.as_posix() in taken:  # two inputs with the same name: keep both
        n += 1
        rel = name.with_name(f"{name.stem}_{n}{suffix}")
    taken.add(rel.as_posix())
    dest = out_dir / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(encode_image(annotate(image, faces, bars), suffix))  # out_dir is the run's own temporary folder
    return f"annotated/{rel.as_posix()}"


def summarize(records: list[dict]) -> dict:
    per_emotion = Counter(face["emotion"] for r in records for face in r["faces"])
    status = Counter(r["status"] for r in records)
    return {"images": len(records), "with_faces": status["ok"], "too_small": status["too_small"],
            "no_face": status["no_face"], "skipped": status["skipped"], "faces": sum(per_emotion.values()),
            "skipped_faces": sum(len(r["skipped_faces"]) for r in records),
            "per_emotion": {c: per_emotion.get(c, 0) for c in CLASSES}}


def _write_csv(dest: Path, records: list[dict]) -> None:
    # backslashreplace: a file name that is not UTF-8 (caf\xe9.jpg from an old Latin-1 disk) is written
    # as predictions.json writes it (\udce9), not a crash that loses the whole report
    with atomic_path(dest) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
        writer = csv.DictWriter(handle, REPORT_COLUMNS)
        writer.writeheader()
        for r in records:
            base = {"file": r["file"], "status": r["status"], "reason": r["reason"] or ""}
            if not r["faces"] and not r["skipped_faces"]:
                writer.writerow(base)
            for i, face in enumerate(r["faces"]):
                writer.writerow({**base, "face": i, **face["box"], "detector": face["detector"],
                                 "emotion": face["emotion"], "confidence": face["confidence"],
                                 **face["probabilities"]})
            for small in r["skipped_faces"]:  # each with its own status and reason
                writer.writerow({"file": r["file"], "status": "too_small", "reason": small["reason"], **small["box"],
                                 "detector": small["detector"]})


def format_summary(summary: dict) -> str:
    counts = ", ".join(f"{c} {n}" for c, n in summary["per_emotion"].items() if n) or "none"
    too_small = f"{summary['too_small']} with only faces too small, " if summary["too_small"] else ""
    not_classified = (f"; {summary['skipped_faces']} faces below the minimum size not classified"
                      if summary["skipped_faces"] else "")
    return (f"{summary['images']} images: {summary['with_faces']} with faces ({summary['faces']} faces), {too_small}"
            f"{summary['no_face']} without a face, {summary['skipped']} skipped{not_classified}; "
            f"faces per emotion: {counts}")
