"""Does turning each face so its eyes are level (`--align`) keep the answer steady when a face is tilted?

    python benchmarks/alignment.py [--model models/export] [--data data/prepared/val.npz] [--faces 600]
                                   [--angles 10 20 30] [--detector blazeface] [--tta tencrop] [--seed 0]
                                   [--json out.json]

A seeded subset of FER2013 faces, each enlarged from 48 to 160 px and centred on a 320×320 mid-grey
canvas (BlazeFace needs room around a face to find it and its eyes; a bare 48×48 crop is classified
whole by the apps and never searched), turned in the image plane by 0 and ± each angle, searched by
the detector and cut with the apps' margin two ways: as today (the square box, clipped to the image) and
aligned (the same square turned about its centre until the eyes are level). Both ways see the same
detections. Per angle: how often the face is found, how often the predicted class agrees with the same
face upright cut the same way, and accuracy among the faces found. The reference is the model on the
48×48 originals scored whole. Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from emotion.detectors import DEFAULT_DETECTOR, get_detector
from emotion.evaluation import predict_proba
from emotion.faces import DEFAULT_MARGIN, cut_face
from emotion.fileio import load_npz
from emotion.inference import load_classifier
from emotion.labelled import is_test_split

CANVAS, FACE_SIDE, GREY = 320, 160, 128
WAYS = ("plain", "aligned")


def tilted_canvas(face: np.ndarray, angle: float) -> Image.Image:
    """A 48×48 face enlarged to FACE_SIDE, centred on a grey CANVAS, turned `angle` degrees counter-clockwise."""
    canvas = Image.new("L", (CANVAS, CANVAS), GREY)
    offset = (CANVAS - FACE_SIDE) // 2
    canvas.paste(Image.fromarray(face).resize((FACE_SIDE, FACE_SIDE), Image.Resampling.BICUBIC), (offset, offset))
    return canvas.rotate(angle, Image.Resampling.BICUBIC, fillcolor=GREY) if angle else canvas


def central_detection(detections):
    """The detection whose box centre is nearest the canvas centre, if within a quarter face of it."""
    def distance(d):
        x, y, w, h = d.box
        return np.hypot(x + w / 2 - CANVAS / 2, y + h / 2 - CANVAS / 2)

    best = min(detections, key=distance, default=None)
    return best if best is not None and distance(best) < FACE_SIDE / 4 else None


def crops(faces: np.ndarray, angles: list[float], margin: float, detector) -> tuple[dict, dict]:
    """({(angle, way): {face index: 48×48 pixels}}, {way: seconds per cut}) for every face found."""
    pixels = {(angle, way): {} for angle in angles for way in WAYS}
    seconds = {way: [] for way in WAYS}
    for angle in angles:
        for i, face in enumerate(faces):
            canvas = tilted_canvas(face, angle)
            detection = central_detection(detector.detect(canvas))
            if detection is None:
                continue
            for way in WAYS:
                start = time.perf_counter()
                cut = cut_face(canvas, detection, margin, detector.name, align=way == "aligned")
                seconds[way].append(time.perf_counter() - start)
                pixels[angle, way][i] = cut.pixels
    return pixels, {way: statistics.median(times) for way, times in seconds.items()}


def predictions(classifier, pixels: dict, batch_size: int, tta: str) -> dict:
    """{(angle, way): {face index: predicted class}}, from one model call."""
    keys = [(key, i) for key, found in pixels.items() for i in found]
    if not keys:
        return {key: {} for key in pixels}
    stacked = np.stack([pixels[key][i] for key, i in keys])
    labels = predict_proba(classifier, stacked, batch_size, tta).argmax(1)
    out = {key: {} for key in pixels}
    for (key, i), label in zip(keys, labels):
        out[key][i] = int(label)
    return out


def score(predicted: dict, labels: np.ndarray, angles: list[float], count: int) -> dict:
    """Per angle: detection rate; per way, agreement with upright and accuracy among the faces found."""
    rows = {}
    for angle in angles:
        found = predicted[angle, "plain"]
        row = {"detected": len(found) / count, "faces": len(found)}
        for way in WAYS:
            now, upright = predicted[angle, way], predicted[0, way]
            both = [i for i in now if i in upright]
            row[f"agreement_{way}"] = float(np.mean([now[i] == upright[i] for i in both])) if both else float("nan")
            row[f"accuracy_{way}"] = float(np.mean([now[i] == labels[i] for i in now])) if now else float("nan")
        plain, aligned = predicted[angle, "plain"], predicted[angle, "aligned"]
        row["only_aligned_right"] = int(sum(aligned[i] == labels[i] != plain[i] for i in plain))
        row["only_plain_right"] = int(sum(plain[i] == labels[i] != aligned[i] for i in plain))
        rows[angle] = row
    return rows


def print_tables(rows: dict, reference: float, cut_ms: dict, settings: str) -> None:
    print(f"{settings}\n\nreference: the 48×48 originals scored whole: accuracy {reference:.3f}\n")
    print("| tilt | detected | agreement with upright, plain / aligned | accuracy, plain / aligned |")
    print("|---|---|---|---|")
    for angle, r in rows.items():
        print(f"| {angle:+g}° | {r['detected']:.3f} | {r['agreement_plain']:.3f} / {r['agreement_aligned']:.3f} | "
              f"{r['accuracy_plain']:.3f} / {r['accuracy_aligned']:.3f} |")
    tilted = [r for angle, r in rows.items() if angle != 0]
    if tilted:
        mean = {k: float(np.mean([r[k] for r in tilted])) for k in tilted[0]}
        print(f"| mean of the tilts | {mean['detected']:.3f} | {mean['agreement_plain']:.3f} / "
              f"{mean['agreement_aligned']:.3f} | {mean['accuracy_plain']:.3f} / {mean['accuracy_aligned']:.3f} |")
    upright = rows[0]
    print(f"\nupright faces right one way only: aligned {upright['only_aligned_right']}, "
          f"plain {upright['only_plain_right']} (of {upright['faces']} found)")
    print(f"cut per face: plain {1000 * cut_ms['plain']:.2f} ms, aligned {1000 * cut_ms['aligned']:.2f} ms")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/export"))
    parser.add_argument("--data", type=Path, default=Path("data/prepared/val.npz"),
                        help="a prepared split: images N×48×48 uint8 and labels (default: %(default)s)")
    parser.add_argument("--faces", type=int, default=600, help="faces drawn from it, seeded (default: %(default)s)")
    parser.add_argument("--angles", type=float, nargs="+", default=[10, 20, 30],
                        help="tilts in degrees; each is also run negative, and 0 always (default: %(default)s)")
    parser.add_argument("--detector", choices=["blazeface", "blazeface-full"], default=DEFAULT_DETECTOR,
                        help="a detector that finds eyes (default: %(default)s)")
    parser.add_argument("--tta", choices=["none", "flip", "tencrop"], default="tencrop",
                        help="views per face, as the apps (default: %(default)s)")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if is_test_split(args.data):  # the README's test rows report a choice made on val
        print(f"{args.data} is a test split: these numbers report, they do not choose (choose on val)")

    data = load_npz(args.data)
    pick = np.sort(np.random.default_rng(args.seed).choice(len(data["labels"]), min(args.faces, len(data["labels"])),
                                                           replace=False))
    faces, labels = data["images"][pick], data["labels"][pick]
    angles = [0.0] + sorted({s * a for a in args.angles for s in (-1, 1) if a})
    classifier = load_classifier(args.model)
    pixels, cut_seconds = crops(faces, angles, args.margin, get_detector(args.detector))
    rows = score(predictions(classifier, pixels, args.batch_size, args.tta), labels, angles, len(faces))
    reference = float(np.mean(predict_proba(classifier, faces, args.batch_size, args.tta).argmax(1) == labels))
    settings = (f"{len(faces)} faces of {args.data} (seed {args.seed}), {args.detector}, {args.model} "
                f"({classifier.runtime}), tta {args.tta}, margin {args.margin}")
    print_tables(rows, reference, cut_seconds, settings)
    result = {"settings": settings, "reference_accuracy": reference, "cut_ms": cut_seconds,
              "by_angle": {str(a): r for a, r in rows.items()}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
