"""Drawing the results on an image: a box, the top emotion and its confidence per face, optional
probability bars; and encoding the picture for a file or a web page."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from emotion.analyzer import FaceResult
from emotion.data import CLASSES

# RGB colour per class, in CLASSES order.
COLORS = ((220, 50, 47), (133, 153, 0), (108, 113, 196), (255, 190, 0), (160, 160, 160), (38, 139, 210),
          (211, 54, 130))
MIN_ANNOTATED_SIDE = 240  # small inputs (48×48 crops) are enlarged so the label stays legible


def annotate(image: Image.Image, results: list[FaceResult], bars: bool = False,
             max_side: int | None = None) -> np.ndarray:
    """An RGB copy with a box, label and confidence per face (and optional probability bars);
    small images are enlarged to stay legible, and large ones shrunk to max_side if given."""
    import cv2

    canvas = np.array(image.convert("RGB"))
    scale = max(1.0, MIN_ANNOTATED_SIDE / min(canvas.shape[:2]))
    if max_side and max(canvas.shape[:2]) > max_side:
        scale = max_side / max(canvas.shape[:2])
    if scale != 1.0:
        canvas = cv2.resize(canvas, None, fx=scale, fy=scale,
                            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    draw_results(canvas, results, scale, bars)
    return canvas


def draw_results(canvas: np.ndarray, results: list[FaceResult], scale: float = 1.0, bars: bool = False,
                 bgr: bool = False) -> None:
    """Draw in place on an H×W×3 uint8 image whose coordinates are the faces' times `scale`."""
    import cv2

    size = min(canvas.shape[:2])
    thick = max(1, round(size / 300))
    font = max(0.4, size / 900)
    for result in results:
        x, y, w, h = (round(v * scale) for v in result.face.box)
        color = COLORS[result.label][::-1] if bgr else COLORS[result.label]
        cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), color, thick + 1)
        text = f"{result.emotion} {result.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else min(canvas.shape[0] - base - 2, y + h + th + 4)
        cv2.rectangle(canvas, (x, ty - th - 4), (x + tw + 6, ty + base), color, -1)
        cv2.putText(canvas, text, (x + 3, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)
        if bars:
            _draw_bars(canvas, result.probabilities, (x, y, w, h), font, thick, bgr)


def _draw_bars(canvas, probabilities, box, font: float, thick: int, bgr: bool) -> None:
    """Seven bars on a dark panel beside the face: right of it if there is room, else left, below, over it."""
    import cv2

    bx, by, bw, bh = box
    row = max(10, round(24 * font))
    bar = 5 * row
    (text_w, _), _ = cv2.getTextSize("surprise 100%", cv2.FONT_HERSHEY_SIMPLEX, font * 0.8, max(1, thick - 1))
    panel_w, panel_h = min(bar + text_w + 14, canvas.shape[1]), min(7 * row + 4, canvas.shape[0])
    x, y = max(0, min(bx, canvas.shape[1] - panel_w)), by
    if bx + bw + 6 + panel_w <= canvas.shape[1]:
        x = bx + bw + 6
    elif bx - 6 - panel_w >= 0:
        x = bx - 6 - panel_w
    elif by + bh + 6 + panel_h <= canvas.shape[0]:
        y = by + bh + 6
    y = max(0, min(y, canvas.shape[0] - panel_h))
    panel = canvas[y:y + panel_h, x:x + panel_w]
    panel[:] = (panel * 0.35).astype(np.uint8)  # darken rather than hide what is behind
    for i, (name, p) in enumerate(zip(CLASSES, probabilities)):
        top = y + 2 + i * row
        color = COLORS[i][::-1] if bgr else COLORS[i]
        cv2.rectangle(canvas, (x + 4, top + 2), (x + 4 + bar, top + row - 2), (70, 70, 70), -1)
        cv2.rectangle(canvas, (x + 4, top + 2), (x + 4 + round(bar * float(p)), top + row - 2), color, -1)
        cv2.putText(canvas, f"{name} {p:.0%}", (x + bar + 8, top + row - 3), cv2.FONT_HERSHEY_SIMPLEX,
                    font * 0.8, (255, 255, 255), max(1, thick - 1), cv2.LINE_AA)


# The formats annotated images are written in, by file suffix; any other suffix is written as PNG.
WRITABLE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}


def encode_image(rgb: np.ndarray, suffix: str = ".jpg", quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    fmt = WRITABLE_FORMATS.get(suffix.lower(), "PNG")
    Image.fromarray(rgb).save(buffer, fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()
