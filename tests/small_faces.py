"""Real photos with a face below the detectors' minimum size, for the tests of what the apps report:
Grace Hopper's portrait (inference_fixtures.face_photo_path) shrunk to 17%, so both BlazeFace models still
find her face (also after JPEG) but box it at 32-37 px, under their 40 px minimum."""
from __future__ import annotations

from PIL import Image

from inference_fixtures import face_photo_path

GREY = (128, 128, 128)


def shrunk_portrait(scale: float = 0.17) -> Image.Image:
    with Image.open(face_photo_path()) as photo:
        return photo.convert("RGB").resize((round(photo.width * scale), round(photo.height * scale)),
                                           Image.Resampling.LANCZOS)


def small_face_photo() -> Image.Image:
    """640×480, one face of about 28 px in the middle: large enough a photo to be searched, not a crop."""
    small = shrunk_portrait()
    photo = Image.new("RGB", (640, 480), GREY)
    photo.paste(small, ((640 - small.width) // 2, (480 - small.height) // 2))
    return photo


def group_with_a_small_face() -> Image.Image:
    """900×600: the portrait at full size (a face of about 200 px) and the shrunk one beside it."""
    photo = Image.new("RGB", (900, 600), GREY)
    with Image.open(face_photo_path()) as portrait:
        photo.paste(portrait.convert("RGB"), (0, 0))
    photo.paste(shrunk_portrait(), (700, 300))
    return photo
