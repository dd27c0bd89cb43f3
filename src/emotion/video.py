"""Emotion per face per frame of a video file or camera: annotated video + per-frame CSV.

Faces are followed across frames by box overlap (IoU), and each track's probabilities are smoothed
with an exponential moving average so labels do not flicker from frame to frame. With detect_every N
the detector runs on every Nth frame only (analyzer.FrameFaces); every frame is still classified.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from emotion.data import CLASSES
from emotion.errors import EmotionError
from emotion.fileio import atomic_path
from emotion.analyzer import Analyzer, FaceResult, FrameFaces
from emotion.drawing import draw_results

# FFmpeg's and OpenCV's own warnings (e.g. "moov atom not found") would bury our one-line errors.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

CSV_COLUMNS = ["frame", "time_s", "faces", "face", "track", "x", "y", "w", "h", "emotion", "confidence", *CLASSES]
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


@dataclass
class _Track:
    box: tuple
    probabilities: np.ndarray
    missed: int = 0


class Tracker:
    """Greedy IoU matching of each frame's faces to the previous ones; EMA of each track's probabilities."""

    def __init__(self, smoothing: float = 0.5, min_iou: float = 0.3, max_missed: int = 5):
        if not 0 <= smoothing < 1:
            raise EmotionError(f"--smooth must be in [0, 1), got {smoothing}")
        self.smoothing, self.min_iou, self.max_missed = smoothing, min_iou, max_missed
        self.tracks: dict[int, _Track] = {}
        self.next_id = 0

    def update(self, results: list[FaceResult]) -> list[tuple[int, FaceResult]]:
        """(track id, result with smoothed probabilities) per face of this frame."""
        track_of = self._match(results)
        out = []
        for i, result in enumerate(results):
            tid = track_of.get(i)
            if tid is None:
                tid, self.next_id = self.next_id, self.next_id + 1
                self.tracks[tid] = _Track(result.face.box, result.probabilities)
            track = self.tracks[tid]
            track.probabilities = self.smoothing * track.probabilities + (1 - self.smoothing) * result.probabilities
            track.box, track.missed = result.face.box, 0
            out.append((tid, replace(result, probabilities=track.probabilities.astype(np.float32))))
        seen = {tid for tid, _ in out}
        for tid in [t for t in self.tracks if t not in seen]:
            self.tracks[tid].missed += 1
            if self.tracks[tid].missed > self.max_missed:
                del self.tracks[tid]
        return out

    def _match(self, results: list[FaceResult]) -> dict[int, int]:
        """Result index → track id, best overlaps first."""
        pairs = sorted(((iou(t.box, r.face.box), tid, i) for tid, t in self.tracks.items()
                        for i, r in enumerate(results)), reverse=True)
        track_of, taken = {}, set()
        for overlap, tid, i in pairs:
            if overlap < self.min_iou:
                break
            if tid not in taken and i not in track_of:
                track_of[i] = tid
                taken.add(tid)
        return track_of


def open_source(source: str):
    """A cv2.VideoCapture for a camera index ("0") or a video file."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # even if cv2 came before OPENCV_LOG_LEVEL
    if source.isdigit():
        capture = cv2.VideoCapture(int(source))
        fix = "check the camera is connected and not in use, or pass a video file"
    else:
        if not Path(source).is_file():
            raise EmotionError(f"{source}: video file not found; check the path (or pass a camera index like 0)")
        # FFmpeg only: OpenCV's fallback AVI reader prints its own complaints about a damaged file.
        backend = cv2.CAP_FFMPEG if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG) else cv2.CAP_ANY
        capture = cv2.VideoCapture(source, backend)
        fix = "is it a video? try converting it to .mp4"
    if not capture.isOpened():
        raise EmotionError(f"{source}: cannot open as video; {fix}")
    return capture


def process_video(source: str, out_video: Path, out_csv: Path, analyzer: Analyzer, smoothing: float = 0.5,
                  bars: bool = True, max_frames: int | None = None, show: bool = False,
                  detect_every: int = 1) -> dict:
    """Annotate every frame, searching for faces on every `detect_every`th; stop at the end, after
    max_frames, on Ctrl-C, or on `q` in the window."""
    out_video = Path(out_video)
    if out_video.suffix.lower() not in FOURCC:
        raise EmotionError(f"{out_video}: unsupported video type; name the output .mp4, .avi or .mkv")
    if max_frames is not None and max_frames < 1:
        raise EmotionError(f"--max-frames {max_frames}: use a positive number of frames, or leave it out")
    _check_outputs(str(source), out_video, Path(out_csv))
    tracker = Tracker(smoothing)
    faces_of_frames = FrameFaces(analyzer, detect_every)
    capture = open_source(str(source))
    if show:
        _check_gui()
    start = time.perf_counter()
    try:
        with atomic_path(out_video) as tmp_video, atomic_path(out_csv) as tmp_csv, \
                open(tmp_csv, "w", newline="", encoding="utf-8") as handle:
            rows = csv.DictWriter(handle, CSV_COLUMNS)
            rows.writeheader()
            expected = _frame_count(capture, str(source))
            frames, faces, ran_out = _annotate_frames(capture, tmp_video, out_video, rows, faces_of_frames,
                                                      tracker, bars, max_frames, show)
            if frames == 0:
                raise EmotionError(f"{source}: no frames could be read; is the file a complete video?")
            if ran_out and frames < expected - max(2, expected // 50):  # a little slack: some counts are estimates
                raise EmotionError(f"{source}: the video ends after {frames} of its {expected} frames, so it is "
                                   "truncated or damaged; re-download or re-encode it (nothing was written)")
    finally:
        capture.release()
    seconds = time.perf_counter() - start
    return {"source": str(source), "frames": frames, "faces": faces, "seconds": round(seconds, 2),
            "fps": round(frames / seconds, 1) if seconds else 0.0, "video": str(out_video), "csv": str(out_csv)}


def _annotate_frames(capture, tmp_video: Path, out_video: Path, rows, faces_of_frames: FrameFaces,
                     tracker: Tracker, bars: bool, max_frames: int | None, show: bool) -> tuple[int, int, bool]:
    """(frames, faces, whether reading ran out before max_frames, Ctrl-C or `q` stopped it)."""
    import cv2

    fps_in = capture.get(cv2.CAP_PROP_FPS)
    fps_in = fps_in if 1 <= fps_in <= 240 else 30.0  # cameras often report 0
    writer, frames, faces, fps, ran_out = None, 0, 0, 0.0, False
    try:
        while max_frames is None or frames < max_frames:
            tick = time.perf_counter()
            ok, frame = capture.read()
            if not ok:
                ran_out = True
                break
            if writer is None:
                writer = _writer(tmp_video, out_video, fps_in, frame.shape)
            tracked = analyze_frame(frame, faces_of_frames, tracker)
            draw_results(frame, [r for _, r in tracked], bars=bars, bgr=True)
            fps = _fps_overlay(frame, tick, fps, len(tracked))
            writer.write(frame)
            _write_rows(rows, frames, frames / fps_in, tracked)
            frames, faces = frames + 1, faces + len(tracked)
            if show and _shown_and_quit(frame):
                break
    except KeyboardInterrupt:  # a camera run stops with Ctrl-C; keep what was recorded
        pass
    finally:
        if writer is not None:
            writer.release()
    return frames, faces, ran_out


def _check_outputs(source: str, out_video: Path, out_csv: Path) -> None:
    """The outputs must not replace the source video, nor each other, nor a folder."""
    for out, option in ((out_video, "--out"), (out_csv, "--csv")):
        if out.is_dir():
            raise EmotionError(f"{option} {out}: a folder is there; name a file")
        if not source.isdigit() and out.resolve() == Path(source).resolve():
            raise EmotionError(f"{out}: {option} names the source video, which would be overwritten; "
                               "choose another output name")
    if out_video.resolve() == out_csv.resolve():
        raise EmotionError(f"{out_csv}: the CSV would overwrite the annotated video; give --csv another name")


def _frame_count(capture, source: str) -> int:
    """Frames the file's header announces (0 for a camera or when unknown)."""
    import cv2

    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if not source.isdigit() and 0 < count < 1e9 else 0  # NaN and -1 mean unknown


def analyze_frame(frame: np.ndarray, faces_of_frames: FrameFaces,
                  tracker: Tracker) -> list[tuple[int, FaceResult]]:
    """The next BGR frame's faces (too small ones are not drawn or listed), classified, with their track ids."""
    image = Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))
    (results,) = faces_of_frames.analyzer.classify([faces_of_frames.next(image)])
    return tracker.update(results)


def _writer(tmp: Path, dest: Path, fps: float, shape):
    import cv2

    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC[dest.suffix.lower()]), fps,
                             (shape[1], shape[0]))
    if not writer.isOpened():
        raise EmotionError(f"{dest}: OpenCV cannot write this video type here; try an .avi output")
    return writer


def _write_rows(rows, frame: int, time_s: float, tracked) -> None:
    base = {"frame": frame, "time_s": round(time_s, 3), "faces": len(tracked)}
    if not tracked:
        rows.writerow(base)
    for i, (track, result) in enumerate(tracked):
        face = result.as_dict()
        rows.writerow({**base, "face": i, "track": track, **face["box"], "emotion": face["emotion"],
                       "confidence": face["confidence"], **face["probabilities"]})


def _fps_overlay(frame: np.ndarray, tick: float, fps: float, n_faces: int) -> float:
    import cv2

    now = 1.0 / max(time.perf_counter() - tick, 1e-6)
    fps = now if fps == 0 else 0.9 * fps + 0.1 * now
    scale = max(0.5, min(frame.shape[:2]) / 800)
    text = f"{fps:.1f} FPS  {n_faces} face{'s' if n_faces != 1 else ''}"
    cv2.putText(frame, text, (10, round(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(frame, text, (10, round(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return fps


def _check_gui() -> None:
    import cv2

    try:
        cv2.namedWindow("emotion")
    except cv2.error:
        raise EmotionError("--show needs OpenCV with GUI support: pip uninstall opencv-python-headless && "
                           "pip install 'opencv-python<5' (or drop --show and watch the output video)") from None


def _shown_and_quit(frame: np.ndarray) -> bool:
    import cv2

    cv2.imshow("emotion", frame)
    return (cv2.waitKey(1) & 0xFF) == ord("q")
