"""The one image decoder: training data (the manifest and preprocess stages), `emotion evaluate` on a
folder, and predict, video and serve all read files through `open_image`, then `to_model_input`, so a
photo gives the same 48×48 grey pixels wherever it is scored. Decoding turns the image upright (EXIF),
puts alpha on white, scales 16-bit and float grey to 8 bits instead of clipping, converts palette and
CMYK, and refuses what is not a photo with a one-line reason; `to_model_input` pads a non-square image
to a square before resizing it."""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotion.errors import EmotionError

IMAGE_SIZE = 48  # FER2013's side: what every model takes


class Header(NamedTuple):
    format: str
    mode: str
    width: int
    height: int


# The only decoders an input is tried with: the formats of IMAGE_SUFFIXES (JPEG covers the MPO files
# of many phones). Pillow's other plugins never see our input (EPS would run Ghostscript on it).
DECODERS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
# Marks in the first 512 bytes of a file that no decoder takes, and what to call the file in the message.
_NOT_PHOTOS = ((b"<svg", "an SVG drawing"), (b"<html", "an HTML page"), (b"<!doctype html", "an HTML page"),
               (b"%pdf-", "a PDF document"), (b"%!ps", "a PostScript file"))
_UNDECODED_PHOTOS = {**dict.fromkeys((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"),
                                      "a HEIC"), b"avif": "an AVIF", b"avis": "an AVIF"}  # the ftyp brands of Pillow-less formats
_DEEP_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16-bit, 32-bit int and float grayscale


class UnreadableImage(EmotionError):
    """Not an image in a supported format, or a damaged one; the message says which."""


class ImageTooLarge(EmotionError):
    """More pixels than allowed, known from the header before any pixel is decoded."""


def open_image(source: str | Path | bytes, name: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Decode a file or bytes, upright (EXIF orientation), as RGB or L. Alpha goes on white and
    grayscale through convert("L"), exactly as `to_model_input` does for training; 16-bit, 32-bit
    and float grayscale are scaled to 8 bits first, not clipped. The size is checked against
    `max_pixels` (default: Pillow's MAX_IMAGE_PIXELS) from the header, before any decoding."""
    name = name or str(source)
    with _header(source, name, max_pixels) as image:
        try:
            image.load()
        except Exception as err:  # hostile bytes raise OSError, ValueError, struct.error, IndexError ...
            raise UnreadableImage(f"{name}: {_damaged(err)}") from None
        _upright(image)  # while the file is open: TIFF reads its EXIF from it
    return _rgb_or_l(image, name)


def image_header(source: str | Path | bytes, name: str | None = None, max_pixels: int | None = None) -> Header:
    """Format, mode and size from the header alone, after the same checks as open_image."""
    with _header(source, name or str(source), max_pixels) as image:
        return Header(image.format or "", image.mode, *image.size)


def image_size(source: str | Path | bytes, name: str | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) from the header alone, after the same checks as open_image."""
    header = image_header(source, name, max_pixels)
    return header.width, header.height


@contextlib.contextmanager
def _header(source: str | Path | bytes, name: str, max_pixels: int | None):
    """The image opened lazily (header parsed, no pixel decoded), or a one-line refusal."""
    try:
        handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as err:
        raise UnreadableImage(f"{name}: cannot read the file ({err.strerror}); check the path and "
                              "permissions") from None
    with handle:
        head = handle.read(512)
        if not head:
            raise UnreadableImage(f"{name}: empty file (0 bytes); choose a photo")
        handle.seek(0)
        try:
            image = Image.open(handle, formats=DECODERS)
        except Image.DecompressionBombError as err:
            raise ImageTooLarge(f"{name}: {_bomb_pixels(err)} is over Pillow's decompression-bomb limit; "
                                "resize the photo") from None
        except UnidentifiedImageError:
            raise UnreadableImage(f"{name}: {_not_a_photo(head)}") from None
        except Exception as err:
            raise UnreadableImage(f"{name}: {_damaged(err)}") from None
        with image:
            _check_size(image.size, name, max_pixels or Image.MAX_IMAGE_PIXELS)
            yield image


def _check_size(size: tuple[int, int], name: str, limit: int | None) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise UnreadableImage(f"{name}: corrupt image (its header says {width}×{height} pixels); re-export it")
    if limit and width * height > limit:
        raise ImageTooLarge(f"{name}: {width}×{height} pixels ({width * height / 1e6:.1f} MP) is over the "
                            f"{limit / 1e6:.3g} MP limit; resize the photo")


def _upright(image: Image.Image) -> None:
    """Turn the image by its EXIF orientation, in place; a damaged EXIF block leaves it as stored."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except Exception:  # the pixels decoded fine: a photo is not refused for its metadata
        pass


def _rgb_or_l(image: Image.Image, name: str) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):  # as flatten_alpha
        return _flattened(image)
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in _DEEP_GRAY:
        return _gray_to_8bit(image)
    try:
        return image.convert("L" if image.mode == "1" else "RGB")
    except ValueError:
        raise UnreadableImage(f"{name}: colour mode {image.mode} is not supported; save it as an RGB JPEG or "
                              "PNG") from None


def _flattened(image: Image.Image, rows: int = 256) -> Image.Image:
    """flatten_alpha(image).convert("RGB") a strip of rows at a time: the same pixels (compositing is per
    pixel) without three full-size copies, and Pillow's compositing, which holds the GIL, in short
    turns so that the server's event loop keeps answering (a 40 MP image in one piece held it ~0.4 s)."""
    flat = Image.new("RGB", image.size)
    for top in range(0, image.height, rows):
        strip = image.crop((0, top, image.width, min(image.height, top + rows)))
        flat.paste(flatten_alpha(strip).convert("RGB"), (0, top))
    return flat


def _gray_to_8bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale by its top byte; 32-bit and float by the first full scale that holds their
    values (1.0 for float, 255, 65535, else their own maximum), offset by a negative minimum."""
    pixels = np.asarray(image)
    if image.mode.startswith("I;16"):
        return Image.fromarray((pixels >> 8).astype(np.uint8), "L")
    pixels = np.nan_to_num(pixels.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = min(float(pixels.min()), 0.0), float(pixels.max())
    if image.mode == "F" and high <= 1.0:
        full = 1.0
    else:
        full = 255.0 if high <= 255 else 65535.0 if high <= 65535 else high
    scaled = (pixels - low) * (255.0 / max(full - low, 1e-12))
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _not_a_photo(head: bytes) -> str:
    if head[4:8] == b"ftyp":  # ISO media: HEIC/AVIF photos (often renamed .jpg when shared) and MP4/MOV videos
        # the major brand, then the compatible ones: an AVIF may name only the generic HEIF `mif1` first
        size = int.from_bytes(head[:4], "big")
        brands = [head[8:12]] + [head[i:i + 4] for i in range(16, min(size, len(head)) - 3, 4)]
        kinds = {_UNDECODED_PHOTOS[b] for b in brands if b in _UNDECODED_PHOTOS}
        if kinds:
            kind = "an AVIF" if "an AVIF" in kinds else "a HEIC"
            return f"{kind} photo, which this tool cannot decode; convert it to JPEG or PNG (most phones can also shoot JPEG)"
        return "not an image but a video (MP4, MOV or 3GP); use `emotion video` for videos"
    for mark, what in _NOT_PHOTOS:
        if mark in head.lower():
            return f"not an image but {what}; export the picture as JPEG or PNG"
    return "not an image (or not a JPEG, PNG, GIF, BMP, WebP or TIFF one)"


def _damaged(err: Exception) -> str:
    return f"corrupt image ({str(err) or type(err).__name__}); it may be truncated or damaged, re-export it"


def _bomb_pixels(err: Exception) -> str:
    found = re.search(r"(\d+) pixels", str(err))
    return f"{int(found[1]) / 1e6:.1f} MP" if found else "its pixel count"


def flatten_alpha(image: Image.Image) -> Image.Image:
    """Transparent pixels become white, so a cut-out face is not read as a dark background."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA"))
    return image


def to_model_input(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Grayscale uint8 size×size from a decoded image (or a face crop of one). A non-square image is made
    square on its longer side first, its edge pixels repeated, so a face is never stretched (a 76×96 crop
    squashed to 48×48 lost 5 points of val accuracy against 0.3 padded: README, Finding faces)."""
    gray = flatten_alpha(image).convert("L")
    if gray.width != gray.height:
        gray = _edge_padded_square(gray.reduce(max(1, max(gray.size) // (4 * size))))  # reduce: bounds the pad's memory
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def _edge_padded_square(gray: Image.Image) -> Image.Image:
    """The L image centred in a square on its longer side, the rows or columns past it copies of its edge."""
    pixels = np.asarray(gray)
    height, width = pixels.shape
    side = max(width, height)
    top, left = (side - height) // 2, (side - width) // 2
    return Image.fromarray(np.pad(pixels, ((top, side - height - top), (left, side - width - left)), mode="edge"))


def read_image(path: str | Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One file as the model sees it (open_image, then to_model_input); UnreadableImage names the file."""
    return to_model_input(open_image(path), size)
