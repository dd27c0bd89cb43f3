"""How should an image that is not square become the model's square input? Stretched, padded or cut.

    python benchmarks/non_square.py crops [--model models/export/model.int8.onnx] [--data data/prepared/val.npz]
    python benchmarks/non_square.py photos FOLDER [--model ...]      # class subfolders of photos with one face

Three conversions, single view: `stretched` (resized to a square, what to_model_input did before),
`padded` (a square on the longer side, its edge pixels repeated: to_model_input now) and `centre` (the
square on the shorter side: faces.centre_square, how `emotion evaluate` scores a photo where no face is found).

`crops`: each val face, enlarged to 96 px, cut narrower or shorter about its centre (76×96, 64×96, ...), as a
hand-made face crop that is not square. `photos`: each photo's face (BlazeFace, not aligned) cut with 10% margin
at several aspect ratios, scaled to 100 px on the longer side; and the whole photo. Choose on val, not test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from emotion.data import CLASSES
from emotion.errors import EmotionError, one_line_errors
from emotion.faces import centre_square, find_faces
from emotion.fileio import load_npz
from emotion.images import IMAGE_SIZE, open_image, to_model_input
from emotion.inference import load_classifier
from emotion.labelled import refuse_test_split

CROP_SIZES = ((76, 96), (96, 76), (64, 96), (96, 64))
ASPECTS = (1.0, 0.8, 0.67, 1.25)  # width / height of a cut around a found face


def stretched(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))


CONVERSIONS = {"stretched": stretched, "padded": to_model_input, "centre": lambda im: to_model_input(centre_square(im))}


def cut_about_centre(image: Image.Image, width: float, height: float, cx: float, cy: float) -> Image.Image:
    return image.crop((round(cx - width / 2), round(cy - height / 2), round(cx + width / 2), round(cy + height / 2)))


def val_crops(images: np.ndarray, width: int, height: int) -> list[Image.Image]:
    enlarged = (Image.fromarray(face).resize((96, 96), Image.Resampling.BILINEAR) for face in images)
    return [cut_about_centre(face, width, height, 48, 48) for face in enlarged]


def photo_cuts(image: Image.Image, aspect: float) -> Image.Image:
    x, y, w, h = find_faces(image, mode="detect", align=False).faces[0].box
    side = max(w, h) * 1.2
    cut = cut_about_centre(image, side * min(1, aspect), side / max(1, aspect), x + w / 2, y + h / 2)
    scale = 100 / max(cut.size)
    return cut.resize((max(1, round(cut.width * scale)), max(1, round(cut.height * scale))), Image.Resampling.BILINEAR)


def accuracy(classifier, images: list[Image.Image], labels: np.ndarray, convert) -> float:
    pixels = np.stack([convert(image) for image in images])
    return float((classifier.predict_proba(pixels).argmax(1) == labels).mean())


def report(classifier, name: str, images: list[Image.Image], labels: np.ndarray) -> None:
    scores = {how: accuracy(classifier, images, labels, convert) for how, convert in CONVERSIONS.items()}
    print(f"{name:>16}  " + "  ".join(f"{how} {100 * score:5.1f}%" for how, score in scores.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["crops", "photos"])
    parser.add_argument("folder", nargs="?", type=Path, help="photos: class subfolders of photos")
    parser.add_argument("--model", default="models/export/model.int8.onnx")
    parser.add_argument("--data", type=Path, default=Path("data/prepared/val.npz"))
    args = parser.parse_args()
    refuse_test_split(args.data, "how a non-square face is made square")
    classifier = load_classifier(args.model)
    if args.what == "crops":
        split = load_npz(args.data)
        report(classifier, "96×96", val_crops(split["images"], 96, 96), split["labels"])
        for width, height in CROP_SIZES:
            report(classifier, f"{width}×{height}", val_crops(split["images"], width, height), split["labels"])
        return
    if args.folder is None:
        raise EmotionError("photos: name a folder of class subfolders, e.g. benchmarks/non_square.py photos posed/")
    files = sorted(p for p in args.folder.rglob("*") if p.is_file() and p.parent.name in CLASSES)
    photos = {f: open_image(f).convert("L") for f in files}
    with_face = [f for f in files if find_faces(photos[f], mode="detect", align=False).faces]  # a face to cut around
    photos, labels = [photos[f] for f in with_face], np.array([CLASSES.index(f.parent.name) for f in with_face])
    print(f"{len(with_face)} of the {len(files)} photos in {args.folder} have a face found; scoring those")
    for aspect in ASPECTS:
        report(classifier, f"face cut {aspect:g}:1", [photo_cuts(photo, aspect) for photo in photos], labels)
    report(classifier, "whole photo", photos, labels)


if __name__ == "__main__":
    one_line_errors(main)()
