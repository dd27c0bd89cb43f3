"""Inference speed on this machine's CPU, as the apps run: batched faces/s, latency per face, a 640×480
photo end to end, and 720p video frames/s.

    python benchmarks/inference.py [--model models/export] [--tta T] [--detector D] [--no-align]
                                   [--runtimes] [--json out.json]

Faces are found and classified with the settings `emotion predict`, `video` and `serve` use unless told
otherwise (their defaults are read from the apps' own parser): the detector, aligned crops and TTA.
The photo is matplotlib's sample portrait (one face) placed on a 640×480 canvas and JPEG-encoded;
"end to end" is decode + face detection + crop + classification, as `emotion predict` and `serve` do,
timed with the chosen TTA and again with one view (--tta none). The video frame is the portrait on a
1280×720 canvas; each frame is handled as `emotion video` handles it (face search, or the last faces cut
again, classification and tracking; no drawing or encoding), with the detector on every frame and on
every 2nd, 3rd and 4th, and the report names the smallest of those strides that keeps 30 frames/s.
Numbers are medians over repeats (p90 in brackets); other load on the machine shows up in them.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from emotion.inference import RUNTIME_ORDER, load_classifier
from emotion.images import open_image
from emotion.analyzer import Analyzer, FrameFaces
from emotion.detectors import DETECTORS
from emotion.drawing import annotate, encode_image
from emotion.video import Tracker, analyze_frame

VIDEO_STRIDES = (1, 2, 3, 4)  # --detect-every values timed
TARGET_FPS = 30


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary_ms(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {"median_ms": round(statistics.median(ms), 3), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 3)}


def throughput(classifier, faces: np.ndarray, batch_size: int, repeats: int = 3) -> dict:
    classifier.predict_proba(faces[:batch_size], batch_size)  # warm-up (allocations, graph set-up)
    best = min(timed(lambda: classifier.predict_proba(faces, batch_size), repeats))
    return {"faces": len(faces), "batch_size": batch_size, "faces_per_s": round(len(faces) / best),
            "ms_per_face": round(1000 * best / len(faces), 4)}


def portrait_on_canvas(width: int, height: int) -> Image.Image:
    """The sample portrait on a plain canvas, placed as on the 640×480 photo (352 px high, 64 px down, centred)
    and scaled with the canvas's height."""
    import matplotlib

    with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as portrait:
        high = round(height * 352 / 480)
        wide = round(high * 300 / 352)
        canvas = Image.new("RGB", (width, height), (205, 205, 200))
        canvas.paste(portrait.resize((wide, high)), ((width - wide) // 2, round(height * 64 / 480)))
    return canvas


def sample_photo() -> bytes:
    buffer = io.BytesIO()
    portrait_on_canvas(640, 480).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def sample_video_frame() -> np.ndarray:
    """A 1280×720 frame as a video capture gives it: BGR, uint8."""
    return np.ascontiguousarray(np.asarray(portrait_on_canvas(1280, 720))[:, :, ::-1])


def photo_end_to_end(analyzer: Analyzer, jpeg: bytes):
    return analyzer.classify([analyzer.find_faces(open_image(jpeg)).faces])[0]


def photo_pipeline(analyzer: Analyzer, jpeg: bytes, repeats: int) -> dict:
    image = open_image(jpeg)
    faces = analyzer.find_faces(image).faces
    assert faces, "the benchmark photo should contain a face"
    results = photo_end_to_end(analyzer, jpeg)  # warm-up
    return {
        "faces_found": len(faces),
        "decode": summary_ms(timed(lambda: open_image(jpeg), repeats)),
        "detect_and_crop": summary_ms(timed(lambda: analyzer.find_faces(image), repeats)),
        "classify": summary_ms(timed(lambda: analyzer.classify([faces]), repeats)),
        "end_to_end": summary_ms(timed(lambda: photo_end_to_end(analyzer, jpeg), repeats)),
        "annotate_and_encode_jpeg": summary_ms(timed(lambda: encode_image(annotate(image, results)), repeats)),
    }


def timed_end_to_end(analyzer: Analyzer, jpeg: bytes, repeats: int) -> dict:
    photo_end_to_end(analyzer, jpeg)  # warm-up
    return summary_ms(timed(lambda: photo_end_to_end(analyzer, jpeg), repeats))


def video_pipeline(analyzer: Analyzer, frame: np.ndarray, frames: int) -> dict:
    """Frames/s of `emotion video`'s per-frame work with the detector on every Nth frame, for each N in
    VIDEO_STRIDES, over `frames` frames (a multiple of every stride, so each sees whole cycles)."""
    assert analyze_frame(frame, FrameFaces(analyzer), Tracker()), "the benchmark frame should contain a face"
    by_stride = {}
    for stride in VIDEO_STRIDES:
        faces_of_frames, tracker = FrameFaces(analyzer, stride), Tracker()
        times = timed(lambda: analyze_frame(frame, faces_of_frames, tracker), frames)
        by_stride[str(stride)] = {"frames_per_s": round(frames / sum(times), 1), **summary_ms(times)}
    rates = {int(stride): r["frames_per_s"] for stride, r in by_stride.items()}
    return {"frames": frames, "detect_every": by_stride, f"stride_for_{TARGET_FPS}_fps": smallest_stride(rates)}


def smallest_stride(frames_per_s: dict[int, float], target: float = TARGET_FPS) -> int | None:
    """The smallest detection stride measured at `target` frames/s or more; None if none reaches it."""
    return min((stride for stride, rate in frames_per_s.items() if rate >= target), default=None)


def video_frames(repeats: int) -> int:
    """Frames timed per stride: `repeats`, rounded up to whole detection cycles of every stride."""
    cycle = int(np.lcm.reduce(VIDEO_STRIDES))
    return cycle * max(1, -(-repeats // cycle))


def app_defaults() -> argparse.Namespace:
    """The options `emotion video` runs with when given none (predict and serve share them)."""
    from emotion.cli import build_parser

    return build_parser().parse_args(["video", "clip.mp4"])


def build_parser() -> argparse.ArgumentParser:
    app = app_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/export"))
    parser.add_argument("--tta", choices=["none", "flip", "tencrop"], default=app.tta,
                        help="views averaged per face (default: the apps' %(default)s); the photo is also timed "
                             "with none")
    parser.add_argument("--detector", choices=list(DETECTORS), default=app.detector,
                        help="face detector (default: the apps' %(default)s)")
    parser.add_argument("--align", action=argparse.BooleanOptionalAction, default=app.align,
                        help="level the eyes before the cut (default: the apps' %(default)s)")
    parser.add_argument("--faces", type=int, default=4096, help="faces in the batched run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=50, help="repeats of each latency measurement")
    parser.add_argument("--runtimes", action="store_true",
                        help="also measure batched throughput of every format in an export folder")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    app = app_defaults()

    def analyzer_with(tta: str) -> Analyzer:
        return Analyzer(args.model, app.faces, app.margin, detector=args.detector, tta=tta, align=args.align)

    analyzer = analyzer_with(args.tta)
    faces = np.random.default_rng(0).integers(0, 256, (args.faces, 48, 48), dtype=np.uint8)
    one = faces[:1]
    analyzer.classifier.predict_proba(one, 1)
    jpeg = sample_photo()
    photo = photo_pipeline(analyzer, jpeg, args.repeats)
    photo["end_to_end_tta_none"] = (photo["end_to_end"] if args.tta == "none" else
                                    timed_end_to_end(analyzer_with("none"), jpeg, args.repeats))
    result = {
        "model": str(args.model), "runtime": analyzer.runtime,
        "settings": {"tta": args.tta, "detector": args.detector, "align": args.align,
                     "apps_defaults": {"tta": app.tta, "detector": app.detector, "align": app.align}},
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "batched": throughput(analyzer.classifier, faces, args.batch_size),
        "single_face_latency": summary_ms(timed(lambda: analyzer.classifier.predict_proba(one, 1), args.repeats)),
        "photo_640x480": photo,
        "video_1280x720": video_pipeline(analyzer, sample_video_frame(), video_frames(args.repeats)),
    }
    if args.runtimes and args.model.is_dir():
        result["per_runtime"] = {}
        for name in RUNTIME_ORDER:
            if (args.model / name).exists():
                classifier = load_classifier(args.model / name)
                n = min(args.faces, 1024) if classifier.runtime in ("keras", "tf_saved_model") else args.faces
                key = f"{name} ({classifier.runtime})"  # two ONNX files share one runtime
                result["per_runtime"][key] = throughput(classifier, faces[:n], args.batch_size)
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def print_report(r: dict) -> None:
    photo, settings = r["photo_640x480"], r["settings"]
    tta = settings["tta"]
    print(f"model {r['model']}  runtime {r['runtime']}  {r['machine']['cpus']} CPUs  "
          f"load {r['machine']['load_average_1m']}")
    chosen = {k: settings[k] for k in ("tta", "detector", "align")}
    print(f"tta {tta}, detector {settings['detector']}, align {settings['align']}"
          + ("  (the apps' defaults)" if chosen == settings["apps_defaults"] else "  (not the apps' defaults)"))
    print(f"{'batched classification':30s}: {r['batched']['faces_per_s']:>8,} faces/s  "
          f"(batch {r['batched']['batch_size']}, one view)")
    print(f"{'latency, one face, one view':30s}: {r['single_face_latency']['median_ms']:8.2f} ms  "
          f"(p90 {r['single_face_latency']['p90_ms']:.2f})")
    one_view = () if tta == "none" else (("end_to_end_tta_none", "photo end to end, tta none"),)
    for key, label in (("decode", "photo: decode JPEG"), ("detect_and_crop", "photo: detect + crop"),
                       ("classify", f"photo: classify, tta {tta}"), ("end_to_end", f"photo end to end, tta {tta}"),
                       *one_view, ("annotate_and_encode_jpeg", "photo: annotate + JPEG")):
        print(f"{label:30s}: {photo[key]['median_ms']:8.2f} ms  (p90 {photo[key]['p90_ms']:.2f})")
    video = r["video_1280x720"]
    for stride, v in video["detect_every"].items():
        print(f"{f'video 1280x720, detect every {stride}':30s}: {v['frames_per_s']:8.1f} frames/s  "
              f"(median {v['median_ms']:.1f} ms a frame, p90 {v['p90_ms']:.1f}; tta {tta})")
    stride = video[f"stride_for_{TARGET_FPS}_fps"]
    print(f"{TARGET_FPS} frames/s at 720p: " + (f"--detect-every {stride}" if stride else
                                               f"no stride up to {max(VIDEO_STRIDES)} reaches it"))
    for runtime, t in r.get("per_runtime", {}).items():
        print(f"  {runtime:32s} batched: {t['faces_per_s']:>8,} faces/s")


if __name__ == "__main__":
    main()
