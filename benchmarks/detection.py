"""Face detectors compared on the same composited scenes: recall, false boxes per scene, and the time of a
640×480 photo end to end (decode, detect, crop, classify), for every detector in emotion.detectors.

    python benchmarks/detection.py [--model models/export] [--json out.json]

Scenes (emotion.scenes): Grace Hopper's portrait (matplotlib's sample data) pasted at known boxes on
scikit-learn's sample photos and a plain ground, faces 40-180 px, tilted -30° to +30° in the image plane,
five lights (dim 0.35×, dark 0.6×, normal, bright 1.5×, side-lit 0.3→1.3×), half of them mirrored:
125 faces in 69 scenes of 640×480, plus 6 scenes without a face. A box counts when its centre is in the
face's box and its side is 0.5-2× the face's. Times are medians over the scenes; other load on the
machine shows up in them. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from emotion.detectors import DETECTORS, get_detector
from emotion.scenes import empty_scenes, match, scene_set


def evaluate(name: str, scenes, empties) -> dict:
    detector = get_detector(name)
    detector.detect(scenes[0].image)  # warm-up
    by = defaultdict(list)
    false, times = 0, []
    for scene in scenes:
        start = time.perf_counter()
        found = detector.detect(scene.image)
        times.append(time.perf_counter() - start)
        hits, extra = match([d.box for d in found], scene.faces)
        false += extra
        for hit, note in zip(hits, scene.notes):
            side, tilt, light = note.split(", ")
            for key in ("all", side, tilt.removeprefix("tilt "), light):
                by[key].append(hit)
    false_empty = sum(match([d.box for d in detector.detect(s.image)], [])[1] for s in empties)
    return {"recall": {k: round(float(np.mean(v)), 3) for k, v in by.items()},
            "false_per_scene": round(false / len(scenes), 3), "false_on_empty_scenes": false_empty,
            "detect_ms": round(1000 * statistics.median(times), 2)}


def end_to_end(name: str, model: Path, scenes) -> dict:
    """decode + detect + crop + classify per 640×480 JPEG, as `emotion predict` and `serve` do (no annotation)."""
    from emotion.images import open_image
    from emotion.analyzer import Analyzer

    analyzer = Analyzer(model, detector=name)
    photos = []
    for scene in scenes:
        buffer = io.BytesIO()
        scene.image.save(buffer, "JPEG", quality=90)
        photos.append(buffer.getvalue())
    analyzer.classify([analyzer.find_faces(open_image(photos[0])).faces])  # warm-up
    times = []
    for jpeg in photos:
        start = time.perf_counter()
        analyzer.classify([analyzer.find_faces(open_image(jpeg)).faces])
        times.append(time.perf_counter() - start)
    return {"end_to_end_ms": round(1000 * statistics.median(times), 2), "runtime": analyzer.runtime}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/export"),
                        help="for the end-to-end time (default: %(default)s; skipped if missing)")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    scenes, empties = scene_set(), empty_scenes()
    results = {}
    for name in args.detectors:
        results[name] = evaluate(name, scenes, empties)
        if args.model.exists():
            results[name].update(end_to_end(name, args.model, scenes))

    faces = sum(len(s.faces) for s in scenes)
    print(f"{faces} faces in {len(scenes)} scenes of 640×480, plus {len(empties)} scenes without a face\n")
    print("| detector | recall | false boxes per scene | false boxes, 6 empty scenes | detect ms | "
          "photo end to end ms |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        e2e = f"{r['end_to_end_ms']:.1f}" if "end_to_end_ms" in r else "–"
        print(f"| {name} | {r['recall']['all']:.2f} | {r['false_per_scene']:.2f} | {r['false_on_empty_scenes']} | "
              f"{r['detect_ms']:.1f} | {e2e} |")
    keys = [k for k in results[args.detectors[0]]["recall"] if k != "all"]
    for title, group in (("face side", [k for k in keys if k.endswith("px")]),
                         ("tilt", [k for k in keys if k.endswith("°")]),
                         ("light", [k for k in keys if not k.endswith(("px", "°"))])):
        group = sorted(group, key=lambda k: float(k.split()[0].rstrip("°")) if k[0] in "+-0123456789" else k)
        print(f"\nrecall by {title}\n\n| detector | " + " | ".join(group) + " |\n|---|" + "---|" * len(group))
        for name, r in results.items():
            print(f"| {name} | " + " | ".join(f"{r['recall'][k]:.2f}" for k in group) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
