"""Composited detection scenes with known face boxes, for the detector tests and benchmarks/detection.py.

Faces come from real photos that install offline with the project (Grace Hopper's portrait in
matplotlib's sample data, or any face photo with its box); each is cut with some context, scaled to a
face side in pixels, turned in the image plane (tilt), lit (a gain, or light from one side), maybe
mirrored, and pasted at a known place on a real background (scikit-learn's sample photos, china.jpg
and flower.jpg, 640×480 crops) or a plain one. Nothing is downloaded.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

Box = tuple[int, int, int, int]  # x, y, w, h
SCENE_SIZE = (640, 480)
# Grace Hopper's face in matplotlib's grace_hopper.jpg (512×600), cheek to cheek and brow to chin, by eye.
GRACE_HOPPER_FACE: Box = (160, 128, 206, 202)
LIGHTS = {"dim": 0.35, "dark": 0.6, "normal": 1.0, "bright": 1.5, "side": None}  # None: 0.3 → 1.3 across the face


@dataclass(frozen=True)
class FaceSource:
    image: Image.Image  # RGB
    box: Box  # the face in it


@dataclass
class Scene:
    image: Image.Image
    faces: list[Box] = field(default_factory=list)  # where the faces are (the face's own box, upright)
    notes: list[str] = field(default_factory=list)  # per face: "80 px, tilt 15°, dim"
    background: str = "plain"


def grace_hopper() -> FaceSource:
    import matplotlib

    with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg") as photo:
        return FaceSource(photo.convert("RGB"), GRACE_HOPPER_FACE)


def backgrounds() -> dict[str, Image.Image]:
    """640×480 backgrounds: two real photos from scikit-learn's sample images, and a plain gradient."""
    from sklearn.datasets import load_sample_image

    found = {}
    for name in ("china.jpg", "flower.jpg"):
        photo = Image.fromarray(load_sample_image(name))
        found[name.removesuffix(".jpg")] = photo.resize(SCENE_SIZE, Image.Resampling.BILINEAR)
    ramp = np.linspace(90, 210, SCENE_SIZE[0], dtype=np.float32)[None, :, None] * np.array([1.0, 0.95, 0.85])
    found["plain"] = Image.fromarray(np.broadcast_to(ramp, (SCENE_SIZE[1], SCENE_SIZE[0], 3)).astype(np.uint8))
    return found


def face_patch(source: FaceSource, side: int, tilt: float = 0.0, light: str = "normal", mirror: bool = False,
               context: float = 0.5) -> tuple[Image.Image, Image.Image, tuple[float, float], tuple[int, int]]:
    """(RGB patch, L mask, face centre in the patch, face w×h): the face scaled to `side` px wide, cut with
    `context` × its size of surroundings per side, lit, mirrored and turned `tilt` degrees (counter-clockwise)."""
    x, y, w, h = source.box
    pad_x, pad_y = context * w, context * h
    left, top = max(0, round(x - pad_x)), max(0, round(y - pad_y))
    right, bottom = min(source.image.width, round(x + w + pad_x)), min(source.image.height, round(y + h + pad_y))
    patch = source.image.crop((left, top, right, bottom))
    scale = side / w
    patch = patch.resize((max(1, round(patch.width * scale)), max(1, round(patch.height * scale))),
                         Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    centre = ((x + w / 2 - left) * scale, (y + h / 2 - top) * scale)
    if mirror:
        patch, centre = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (patch.width - centre[0], centre[1])
    pixels = np.asarray(patch, np.float32)
    gain = LIGHTS[light]
    if gain is None:
        gain = np.linspace(0.3, 1.3, patch.width, dtype=np.float32)[None, :, None]
    patch = Image.fromarray(np.clip(pixels * gain, 0, 255).astype(np.uint8))
    # a feathered mask: no hard rectangle edge for a detector to fire on
    mask = Image.new("L", patch.size, 0)
    border = max(2, round(0.06 * min(patch.size)))
    mask.paste(255, (border, border, patch.width - border, patch.height - border))
    mask = mask.filter(ImageFilter.GaussianBlur(border / 2))
    if tilt:
        w0, h0 = patch.size
        patch = patch.rotate(tilt, Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(tilt, Image.Resampling.BICUBIC, expand=True)
        # the face centre moves with the rotation about the patch centre (PIL: counter-clockwise, y down)
        dx, dy = centre[0] - w0 / 2, centre[1] - h0 / 2
        a = np.deg2rad(tilt)
        centre = (patch.width / 2 + dx * np.cos(a) + dy * np.sin(a), patch.height / 2 - dx * np.sin(a) + dy * np.cos(a))
    return patch, mask, centre, (round(w * scale), round(h * scale))


def compose(background: Image.Image, patches: list, rng: np.random.Generator, name: str = "") -> Scene | None:
    """Paste (patch, mask, centre, size, note) items at random places where their patches do not overlap;
    None if they do not fit."""
    scene = Scene(background.copy(), background=name)
    taken: list[tuple[int, int, int, int]] = []
    for patch, mask, (cx, cy), (fw, fh), note in patches:
        for _ in range(200):
            px = int(rng.integers(0, max(1, scene.image.width - patch.width + 1)))
            py = int(rng.integers(0, max(1, scene.image.height - patch.height + 1)))
            fx, fy = round(px + cx - fw / 2), round(py + cy - fh / 2)
            inside = 0 <= fx and 0 <= fy and fx + fw <= scene.image.width and fy + fh <= scene.image.height
            rect = (px, py, px + patch.width, py + patch.height)
            if inside and not any(_overlap(rect, other) for other in taken):
                break
        else:
            return None
        scene.image.paste(patch, (px, py), mask)
        taken.append(rect)
        scene.faces.append((fx, fy, fw, fh))
        scene.notes.append(note)
    return scene


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def scene_set(source: FaceSource | None = None, sides=(40, 56, 80, 120, 180), tilts=(-30, -15, 0, 15, 30),
              lights=tuple(LIGHTS), per_scene: int = 3, seed: int = 0) -> list[Scene]:
    """Every combination of face side × tilt × light, once (half of them mirrored), packed `per_scene`
    to a scene on the backgrounds in turn. Deterministic for a seed."""
    source = source or grace_hopper()
    rng = np.random.default_rng(seed)
    grounds = backgrounds()
    combos = list(itertools.product(sides, tilts, lights))
    rng.shuffle(combos)
    patches = []
    for i, (side, tilt, light) in enumerate(combos):
        patch, mask, centre, size = face_patch(source, side, tilt, light, mirror=bool(i % 2))
        patches.append((patch, mask, centre, size, f"{side} px, tilt {tilt:+d}°, {light}"))
    scenes, names = [], itertools.cycle(grounds)
    while patches:
        name = next(names)
        count = per_scene
        while count:
            scene = compose(grounds[name], patches[:count], rng, name)
            if scene is not None:
                break
            count -= 1  # big patches: fewer to a scene
        if scene is None:
            raise ValueError(f"a face patch of {patches[0][0].size} does not fit a {SCENE_SIZE} scene")
        scenes.append(scene)
        patches = patches[count:]
    return scenes


def empty_scenes(seed: int = 0, count: int = 6) -> list[Scene]:
    """Scenes without a face: 640×480 crops and flips of the backgrounds at several zooms."""
    rng = np.random.default_rng(seed)
    grounds = list(backgrounds().items())
    scenes = []
    for i in range(count):
        name, image = grounds[i % len(grounds)]
        zoom = 1 + 0.5 * (i // len(grounds))
        big = image.resize((round(image.width * zoom), round(image.height * zoom)), Image.Resampling.BILINEAR)
        x, y = int(rng.integers(0, big.width - SCENE_SIZE[0] + 1)), int(rng.integers(0, big.height - SCENE_SIZE[1] + 1))
        crop = big.crop((x, y, x + SCENE_SIZE[0], y + SCENE_SIZE[1]))
        scenes.append(Scene(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else crop, background=name))
    return scenes


def match(found: list[Box], truth: list[Box]) -> tuple[list[bool], int]:
    """(for each true face whether a found box matches it, false boxes): a found box matches a face when its
    centre lies in the face's box and its side is 0.5–2× the face's, each used once, best-centred first."""
    hit, used = [False] * len(truth), [False] * len(found)
    pairs = []
    for i, (tx, ty, tw, th) in enumerate(truth):
        for j, (fx, fy, fw, fh) in enumerate(found):
            cx, cy = fx + fw / 2, fy + fh / 2
            ratio = np.sqrt(fw * fh / (tw * th))
            if tx <= cx <= tx + tw and ty <= cy <= ty + th and 0.5 <= ratio <= 2:
                pairs.append((np.hypot(cx - tx - tw / 2, cy - ty - th / 2) / tw, i, j))
    for _, i, j in sorted(pairs):
        if not hit[i] and not used[j]:
            hit[i] = used[j] = True
    return hit, used.count(False)
