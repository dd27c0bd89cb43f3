"""How much of the head should the apps cut around a detected face? FER2013's own framing, and accuracy per margin.

    python benchmarks/face_margin.py [--model models/export] [--data data/prepared/val.npz] [--faces 0]
                                     [--margins 0 0.05 0.1 0.15 0.2 0.3] [--shifts 0 -0.05 -0.1]
                                     [--canvas grey|edge] [--detector blazeface] [--tta tencrop]
                                     [--json out.json]

The model learnt faces as FER2013 framed them; the apps cut a detected face as a square with `--margin`
per side around the detector's box. Each FER face (all of the split with --faces 0, else a seeded subset)
is enlarged to 160 px on a grey canvas as in benchmarks/alignment.py (or, `--canvas edge`, with its
border pixels repeated outwards) and searched by the detector. First,
how FER frames the box it finds: the box side over the face image's side (so the margin that would give
FER's framing, (1/ratio − 1)/2) and how far the box centre sits from the image centre. Then the apps'
own cut (faces.cut_face, aligned as the apps do) for each margin and each vertical shift of the box (a
fraction of its side; negative = up), scored against the labels, beside the originals scored whole.
Choose on val: the split's name must not say test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # alignment.py's canvas, as a script or imported
from alignment import CANVAS, FACE_SIDE, central_detection, tilted_canvas  # noqa: E402

from emotion.detectors import DEFAULT_DETECTOR, Detection, get_detector  # noqa: E402
from emotion.errors import EmotionError, one_line_errors  # noqa: E402
from emotion.evaluation import predict_proba  # noqa: E402
from emotion.faces import DEFAULT_ALIGN, cut_face  # noqa: E402
from emotion.fileio import load_npz  # noqa: E402
from emotion.inference import load_classifier  # noqa: E402
from emotion.labelled import refuse_test_split  # noqa: E402


def framing(detections: list[Detection]) -> dict:
    """Median box side over the face image's side, the margin that gives that framing, and the box centre's
    offset from the image centre (fractions of the image side; positive = right / down)."""
    boxes = np.array([d.box for d in detections], dtype=float)
    ratio = np.maximum(boxes[:, 2], boxes[:, 3]) / FACE_SIDE
    dx = (boxes[:, 0] + boxes[:, 2] / 2 - CANVAS / 2) / FACE_SIDE
    dy = (boxes[:, 1] + boxes[:, 3] / 2 - CANVAS / 2) / FACE_SIDE
    median = float(np.median(ratio))
    return {"box_over_image": median, "box_over_image_p10_p90": [float(np.percentile(ratio, p)) for p in (10, 90)],
            "implied_margin": (1 / median - 1) / 2, "centre_dx": float(np.median(dx)), "centre_dy": float(np.median(dy))}


def edge_canvas(face: np.ndarray) -> Image.Image:
    """The face enlarged as on alignment.py's canvas, with its edge pixels repeated outwards instead of grey:
    a cut that reaches past the FER crop sees a smear of the face's border rather than a flat grey band."""
    big = np.asarray(Image.fromarray(face).resize((FACE_SIDE, FACE_SIDE), Image.Resampling.BICUBIC))
    return Image.fromarray(np.pad(big, (CANVAS - FACE_SIDE) // 2, mode="edge"))


def shifted(detection: Detection, shift: float) -> Detection:
    """The same detection with its box (and eyes) moved down by `shift` × the box's longer side."""
    x, y, w, h = detection.box
    dy = shift * max(w, h)
    eyes = tuple((ex, ey + dy) for ex, ey in detection.eyes) if detection.eyes else None
    return Detection((x, round(y + dy), w, h), detection.score, eyes)


def accuracy_table(classifier, canvases: list, detections: list, labels: np.ndarray, margins: list[float],
                   shifts: list[float], batch_size: int, tta: str, detector: str) -> dict:
    """{(margin, shift): accuracy} over the faces found, every cut scored in one model call."""
    keys = [(m, s) for m in margins for s in shifts]
    cuts = [cut_face(canvas, shifted(d, s), m, detector, DEFAULT_ALIGN).pixels
            for m, s in keys for canvas, d in zip(canvases, detections)]
    predicted = predict_proba(classifier, np.stack(cuts), batch_size, tta).argmax(1).reshape(len(keys), -1)
    return {key: float(np.mean(row == labels)) for key, row in zip(keys, predicted)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/export"))
    parser.add_argument("--data", type=Path, default=Path("data/prepared/val.npz"))
    parser.add_argument("--faces", type=int, default=0, help="a seeded subset of this many (default: all)")
    parser.add_argument("--margins", type=float, nargs="+", default=[0, 0.05, 0.1, 0.15, 0.2, 0.3])
    parser.add_argument("--shifts", type=float, nargs="+", default=[0, -0.05, -0.1])
    parser.add_argument("--detector", choices=["blazeface", "blazeface-full", "haar"], default=DEFAULT_DETECTOR)
    parser.add_argument("--tta", choices=["none", "flip", "tencrop"], default="tencrop")
    parser.add_argument("--canvas", choices=["grey", "edge"], default="grey",
                        help="around the enlarged face: alignment.py's mid-grey, or its edge pixels repeated")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    refuse_test_split(args.data, "the margin")

    data = load_npz(args.data)
    count = len(data["labels"])
    pick = (np.arange(count) if not args.faces else
            np.sort(np.random.default_rng(args.seed).choice(count, min(args.faces, count), replace=False)))
    detector, classifier = get_detector(args.detector), load_classifier(args.model)
    canvases, detections, found = [], [], []
    for i in pick:
        canvas = tilted_canvas(data["images"][i], 0) if args.canvas == "grey" else edge_canvas(data["images"][i])
        detection = central_detection(detector.detect(canvas))
        if detection is not None:
            canvases.append(canvas)
            detections.append(detection)
            found.append(i)
    if not found:
        raise EmotionError(f"{args.detector} found no face in {len(pick)} faces of {args.data}")
    labels = data["labels"][found]
    frame = framing(detections)
    table = accuracy_table(classifier, canvases, detections, labels, args.margins, args.shifts, args.batch_size,
                           args.tta, args.detector)
    whole = float(np.mean(predict_proba(classifier, data["images"][found], args.batch_size, args.tta).argmax(1) == labels))
    print(f"{len(found)} of {len(pick)} faces of {args.data} on a {args.canvas} canvas found by {args.detector}; "
          f"{args.model} ({classifier.runtime}), tta {args.tta}\n")
    print(f"FER's framing: the box is {frame['box_over_image']:.3f} of the face image's side (10th-90th percentile "
          f"{frame['box_over_image_p10_p90'][0]:.3f}-{frame['box_over_image_p10_p90'][1]:.3f}), so margin "
          f"{frame['implied_margin']:.3f} per side gives FER's framing; box centre offset "
          f"{frame['centre_dx']:+.3f} right, {frame['centre_dy']:+.3f} down\n")
    print(f"the originals scored whole: {whole:.4f}\n")
    print("| margin | " + " | ".join(f"shift {s:+.2f}" for s in args.shifts) + " |")
    print("|---|" + "---:|" * len(args.shifts))
    for m in args.margins:
        print(f"| {m:.2f} | " + " | ".join(f"{table[m, s]:.4f}" for s in args.shifts) + " |")
    result = {"canvas": args.canvas, "tta": args.tta, "faces": len(pick), "found": len(found), "framing": frame,
              "whole_accuracy": whole, "accuracy": {f"margin {m} shift {s}": a for (m, s), a in table.items()}}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    one_line_errors(main)()
