"""Inference speed on this machine's CPU: batched faces/s, latency per face, and a 640×480 photo end to end.

    python benchmarks/inference.py [--model models/export] [--runtimes] [--json out.json]

The photo is matplotlib's sample portrait (one face) placed on a 640×480 canvas and JPEG-encoded;
"end to end" is decode + face detection + crop + classification, as `emotion predict` and `serve` do.
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

from emotion.faces import find_faces
from emotion.inference import RUNTIME_ORDER, load_classifier
from emotion.images import open_image
from emotion.analyzer import Analyzer
from emotion.drawing import annotate, encode_image


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


def sample_photo() -> bytes:
    import matplotlib

    with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as portrait:
        canvas = Image.new("RGB", (640, 480), (205, 205, 200))
        canvas.paste(portrait.resize((300, 352)), (170, 64))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def photo_pipeline(analyzer: Analyzer, jpeg: bytes, repeats: int) -> dict:
    image = open_image(jpeg)
    faces = find_faces(image, analyzer.mode, analyzer.margin).faces
    assert faces, "the benchmark photo should contain a face"

    def end_to_end():
        return analyzer.classify([analyzer.find_faces(open_image(jpeg)).faces])[0]

    results = end_to_end()  # warm-up
    return {
        "faces_found": len(faces),
        "decode": summary_ms(timed(lambda: open_image(jpeg), repeats)),
        "detect_and_crop": summary_ms(timed(lambda: find_faces(image, analyzer.mode, analyzer.margin), repeats)),
        "classify": summary_ms(timed(lambda: analyzer.classify([faces]), repeats)),
        "end_to_end": summary_ms(timed(end_to_end, repeats)),
        "annotate_and_encode_jpeg": summary_ms(timed(lambda: encode_image(annotate(image, results)), repeats)),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/export"))
    parser.add_argument("--faces", type=int, default=4096, help="faces in the batched run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=50, help="repeats of each latency measurement")
    parser.add_argument("--runtimes", action="store_true",
                        help="also measure batched throughput of every format in an export folder")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    analyzer = Analyzer(args.model)
    faces = np.random.default_rng(0).integers(0, 256, (args.faces, 48, 48), dtype=np.uint8)
    one = faces[:1]
    analyzer.classifier.predict_proba(one, 1)
    result = {
        "model": str(args.model), "runtime": analyzer.runtime,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "load_average_1m": round(os.getloadavg()[0], 2)},
        "batched": throughput(analyzer.classifier, faces, args.batch_size),
        "single_face_latency": summary_ms(timed(lambda: analyzer.classifier.predict_proba(one, 1), args.repeats)),
        "photo_640x480": photo_pipeline(analyzer, sample_photo(), args.repeats),
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
    photo = r["photo_640x480"]
    print(f"model {r['model']}  runtime {r['runtime']}  {r['machine']['cpus']} CPUs  "
          f"load {r['machine']['load_average_1m']}")
    print(f"batched classification : {r['batched']['faces_per_s']:>8,} faces/s  (batch {r['batched']['batch_size']})")
    print(f"latency, one face      : {r['single_face_latency']['median_ms']:8.2f} ms  "
          f"(p90 {r['single_face_latency']['p90_ms']:.2f})")
    for key, label in (("decode", "photo: decode JPEG"), ("detect_and_crop", "photo: detect + crop"),
                       ("classify", "photo: classify"), ("end_to_end", "photo 640x480 end to end"),
                       ("annotate_and_encode_jpeg", "photo: annotate + JPEG")):
        print(f"{label:23s}: {photo[key]['median_ms']:8.2f} ms  (p90 {photo[key]['p90_ms']:.2f})")
    for runtime, t in r.get("per_runtime", {}).items():
        print(f"  {runtime:32s} batched: {t['faces_per_s']:>8,} faces/s")


if __name__ == "__main__":
    main()
