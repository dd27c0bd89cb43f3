"""Shared fixtures for the inference tests (predict, video, serve): a tiny random-weight model exported
to ONNX, a real photo with a face, a photo without one, a FER-sized crop and a corrupt file.

Import the fixtures you use into the test module: `from inference_fixtures import tiny_export, ...`.
Each artefact is built once per test session, however many modules import it.
"""
from __future__ import annotations

import dataclasses
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
_CACHE: dict[str, Path] = {}


def _once(name: str, factory, build) -> Path:
    if name not in _CACHE:
        _CACHE[name] = build(factory.mktemp(name))
    return _CACHE[name]


def build_tiny_export(folder: Path) -> Path:
    """cnn_small at width 8 with seeded random weights, exported to ONNX (+ the .keras fallback)."""
    import keras

    from emotion.config import load_params
    from emotion.export import export_model
    from emotion.models import build_model

    keras.utils.set_random_seed(0)
    params = dataclasses.replace(load_params(ROOT / "params.yaml").train, model="cnn_small", width=8)
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    with warnings.catch_warnings():  # keras/tf2onnx deprecation chatter under numpy 2, not ours to fix
        warnings.simplefilter("ignore")
        build_model(params).save(folder / "model.keras")
        export_model(folder / "model.keras", folder / "export", ["onnx"], images, {"test": True})
    return folder / "export"


def face_photo_path() -> Path:
    """Grace Hopper's portrait, shipped with matplotlib (a project dependency): 512×600, one face."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def write_no_face_photo(path: Path) -> Path:
    """A 640×480 scene of smooth shapes: nothing the face cascade fires on."""
    image = Image.new("RGB", (640, 480), (120, 170, 220))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 330, 640, 480), fill=(70, 130, 60))
    draw.rectangle((380, 200, 520, 360), fill=(180, 90, 60))
    draw.polygon([(370, 200), (450, 140), (530, 200)], fill=(110, 40, 40))
    draw.ellipse((60, 40, 150, 130), fill=(250, 220, 90))
    image.save(path, quality=92)
    return path


def write_fer_crop(path: Path) -> Path:
    """A 48×48 grayscale tight face crop, as in FER2013: the face cut from the portrait."""
    with Image.open(face_photo_path()) as photo:
        photo.convert("L").crop((150, 100, 382, 332)).resize((48, 48), Image.Resampling.BILINEAR).save(path)
    return path


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    return _once("tiny_export", tmp_path_factory, build_tiny_export)


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """Files of each kind: face.jpg, noface.jpg, crop.png, corrupt.jpg (truncated JPEG), notes.txt."""
    def build(folder: Path) -> Path:
        shutil.copy(face_photo_path(), folder / "face.jpg")
        write_no_face_photo(folder / "noface.jpg")
        write_fer_crop(folder / "crop.png")
        (folder / "corrupt.jpg").write_bytes((folder / "face.jpg").read_bytes()[:600])
        (folder / "notes.txt").write_text("not an image\n")
        return folder

    folder = _once("photos", tmp_path_factory, build)
    return {p.name: p for p in folder.iterdir()}
