"""Hostile and odd input (issue 14): decompression bombs, deep and odd image modes, files posing as
images, truncated and polyglot files, damaged videos, and Hypothesis fuzzing of the decoder and the
upload API. Every case is decoded correctly or refused with a one-line reason; no 5xx, no hang, no
temporary file left behind."""
import functools
import io
import os
import struct
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

import emotion.video  # noqa: F401  (first: it quiets OpenCV's and FFmpeg's own logs before any clip is written)
from emotion.cli import main
from emotion.images import ImageTooLarge, UnreadableImage, flatten_alpha, open_image
from emotion.errors import EmotionError
from emotion.analyzer import Analyzer
from emotion.predict import predict_paths
from emotion.serve import create_app
from inference_fixtures import face_photo_path, tiny_export  # noqa: F401

# Each fuzz test stays within a few seconds; `deadline` is the per-example "no hang" bound.
FUZZ = dict(deadline=5000, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- files ------------------------------------------------------------------------------------

def png(width: int, height: int, color_type: int, depth: int, idat: bytes) -> bytes:
    """A PNG written by hand, so that it can claim any size and bit depth."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb_png(side: int = 9000) -> bytes:
    """side×side RGBA of zeros: ~300 KiB on disk for 9000, 324 MB once decoded."""
    packer, row = zlib.compressobj(9), bytes(1 + 4 * side)
    return png(side, side, 6, 8, b"".join([packer.compress(row) for _ in range(side)] + [packer.flush()]))


def gray16_png() -> bytes:
    """64×48 16-bit grayscale, a horizontal ramp over the full 0…65535 range."""
    ramp = np.tile(np.linspace(0, 65535, 64).astype(">u2"), (48, 1))
    return png(64, 48, 0, 16, zlib.compress(b"".join(b"\x00" + row.tobytes() for row in ramp)))


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def halves(left, right, size=(40, 30), mode="RGB") -> Image.Image:
    image = Image.new(mode, size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    return image


RED, BLUE, WHITE, BLACK = (255, 0, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


@functools.cache
def decodable() -> dict[str, tuple[bytes, tuple[int, int], dict]]:
    """name → (bytes, decoded size, {(x, y): expected RGB or L value}): every one must decode so."""
    face = save(Image.open(face_photo_path()), "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": the stored left half ends up on top
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.paste(0, (0, 0, 20, 30))
    red_blue = halves(RED, BLUE)
    return {
        "gray16.png": (gray16_png(), (64, 48), {(0, 0): 0, (63, 0): 255, (32, 10): 130}),
        "palette_transparent.png": (save(palette, "PNG", transparency=0), (40, 30), {(5, 5): WHITE, (35, 5): RED}),
        "cmyk.jpg": (save(Image.new("RGB", (40, 30), RED).convert("CMYK"), "JPEG", quality=95), (40, 30),
                     {(20, 15): RED}),
        "alpha.png": (save(halves((0, 0, 0, 255), (0, 0, 0, 0), mode="RGBA"), "PNG"), (40, 30),
                      {(5, 5): BLACK, (35, 5): WHITE}),
        "exif_rotated.jpg": (save(red_blue, "JPEG", quality=95, exif=exif), (30, 40), {(15, 5): RED, (15, 35): BLUE}),
        "animated.gif": (save(red_blue, "GIF", save_all=True, append_images=[Image.new("RGB", (40, 30), BLUE)]),
                         (40, 30), {(5, 5): RED, (35, 5): BLUE}),
        "animated.webp": (save(red_blue, "WEBP", save_all=True, lossless=True,
                               append_images=[Image.new("RGB", (40, 30), WHITE)]), (40, 30), {(5, 5): RED}),
        "float.tif": (save(Image.fromarray(np.full((30, 40), 0.5, np.float32), "F"), "TIFF"), (40, 30), {(5, 5): 128}),
        "int32_16bit.tif": (save(Image.fromarray(np.full((30, 40), 32768, np.int32), "I"), "TIFF"), (40, 30),
                            {(5, 5): 128}),
        "bilevel.png": (save(Image.new("1", (40, 30), 1), "PNG"), (40, 30), {(5, 5): 255}),
        "png_named.jpg": (save(red_blue, "PNG"), (40, 30), {(5, 5): RED}),
        "polyglot_html.jpg": (face + b"<html><script>alert(1)</script></html>", (512, 600), {}),
    }


@functools.cache
def refused() -> dict[str, tuple[bytes, str]]:
    """name → (bytes, what the refusal must say)."""
    face = face_photo_path().read_bytes()
    crop = save(Image.open(face_photo_path()).convert("RGB"), "PNG")
    return {
        "truncated.jpg": (face[:len(face) // 2], "corrupt image"),
        "truncated.png": (crop[:len(crop) // 2], "corrupt image"),
        "empty.jpg": (b"", "empty file"),
        "drawing.png": (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
                        "SVG drawing"),
        "page.jpg": (b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>", "HTML page"),
        "html_then_png.png": (b"<html><body>" + crop[:4096], "HTML page"),
        "postscript.jpg": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 30\n0 0 moveto\n", "PostScript"),
        "document.pdf.png": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "PDF document"),
        "random.bmp": (bytes(range(256)) * 4, "not an image"),
        "iphone.jpg": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "a HEIC photo"),
        "sticker.jpg": (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(64), "an AVIF photo"),
        "generic.jpg": (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf" + bytes(64), "an AVIF photo"),
        "camera.jpg": (b"\x00\x00\x00\x18ftypMA1B\x00\x00\x00\x00miafavif" + bytes(64), "an AVIF photo"),
        "clip.jpg": (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(64), "emotion video"),
    }


# GIF header claiming 65535×65535: Pillow's own decompression-bomb limit refuses it on open.
GIANT_GIF = (b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00"
             + b",\x00\x00\x00\x00" + struct.pack("<HH", 65535, 65535) + b"\x00\x02\x02\x44\x01\x00;")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return bomb_png()


@pytest.fixture(scope="module")
def client(tiny_export):  # noqa: F811
    return TestClient(create_app(tiny_export, max_upload_mb=2))


def _post(client, name: str, data: bytes, content_type: str = "image/jpeg"):
    return client.post("/predict", files={"file": (name, data, content_type)})


# --- goal 1: refused from the header, before any decoding ---------------------------------------

def test_bomb_is_refused_from_its_header_without_decoding(client, bomb, monkeypatch):
    decoded = []
    original = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or original(self))
    response = _post(client, "bomb.png", bomb, "image/png")
    assert response.status_code == 413
    assert decoded == []  # no pixel buffer was allocated
    detail = response.json()["detail"]
    assert "bomb.png: 9000×9000 pixels (81.0 MP) is over the 40 MP limit" in detail and "--max-megapixels" in detail
    with pytest.raises(ImageTooLarge, match="81.0 MP"):
        open_image(bomb, "bomb.png", max_pixels=40_000_000)


def test_header_past_pillows_own_limit_is_413(client):
    response = _post(client, "giant.gif", GIANT_GIF, "image/gif")
    assert response.status_code == 413 and "giant.gif: 4294.8 MP" in response.json()["detail"]


# --- goal 3: every odd image decoded right or refused with the reason ---------------------------

@pytest.mark.parametrize("name", list(decodable()))
def test_odd_images_decode_to_the_right_pixels(name):
    data, size, expected = decodable()[name]
    image = open_image(data, name)
    assert image.mode in ("RGB", "L") and image.size == size
    for xy, value in expected.items():
        np.testing.assert_allclose(image.getpixel(xy), value, atol=12, err_msg=f"{name} at {xy}")


def test_sixteen_bit_gray_is_scaled_not_clipped():
    image = np.asarray(open_image(gray16_png(), "gray16.png"))
    assert image.mean() == pytest.approx(127, abs=2)  # clipping to 8 bits made it ~251, nearly white
    assert (np.diff(image[0].astype(int)) >= 0).all()  # the ramp stays a ramp


def test_alpha_is_flattened_exactly_as_for_training():
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (700, 300, 4), dtype=np.uint8), "RGBA")  # several strips
    palette = rgba.convert("RGB").quantize(64)
    for image, options in ((rgba, {}), (rgba.convert("LA"), {}), (palette, {"transparency": 5})):
        data = save(image, "PNG", **options)
        expected = flatten_alpha(Image.open(io.BytesIO(data))).convert("RGB")
        np.testing.assert_array_equal(np.asarray(open_image(data, "alpha.png")), np.asarray(expected))


@pytest.mark.parametrize("name", list(refused()))
def test_files_posing_as_images_are_refused_with_the_reason(name):
    data, reason = refused()[name]
    with pytest.raises(UnreadableImage) as error:
        open_image(data, name)
    message = str(error.value)
    assert message.startswith(f"{name}: ") and reason in message and "\n" not in message


def test_the_api_decodes_or_refuses_each_odd_file(client):
    for name, (data, size, _) in decodable().items():
        response = _post(client, name, data)
        assert response.status_code == 200, (name, response.text)
        assert (response.json()["width"], response.json()["height"]) == size
    for name, (data, reason) in refused().items():
        response = _post(client, name, data)
        expected = 422 if not data else 415
        assert response.status_code == expected, (name, response.text)
        assert name in response.json()["detail"] and (reason in response.json()["detail"] or not data)


def test_predict_reports_a_skipped_row_with_the_reason(tiny_export, tmp_path):  # noqa: F811
    folder = tmp_path / "odd"
    folder.mkdir()
    for name, (data, *_) in {**decodable(), **refused(), "giant.gif": (GIANT_GIF,)}.items():
        (folder / name).write_bytes(data)
    report = predict_paths([folder], tmp_path / "out", Analyzer(tiny_export), annotate_images=False)
    records = {Path(r["file"]).name: r for r in report["images"]}
    for name in decodable():
        assert records[name]["status"] in ("ok", "no_face"), records[name]
    over = "is over the 200 MP limit; resize the photo or raise --max-megapixels"
    for name, (_, reason) in {**refused(), "giant.gif": (None, over)}.items():
        assert records[name]["status"] == "skipped" and reason in records[name]["reason"], records[name]


# --- goal 3: emotion video ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_avi(tmp_path_factory) -> Path:
    """30 frames of MJPG AVI, 160×120: its header states the frame count."""
    path = tmp_path_factory.mktemp("clips") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(30):
        writer.write(np.full((120, 160, 3), 8 * i, np.uint8))
    writer.release()
    return path


def _video_error(capfd, tmp_path, source, model) -> str:
    """Run `emotion video`, which must fail; return its stderr, and check that it wrote nothing."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_code:
        main(["video", str(source), "--model", str(model), "--out", str(out / "annotated.mp4")])
    assert exit_code.value.code == 1
    assert not out.exists() or not any(out.iterdir())  # no partial video or CSV, no temporary file
    return capfd.readouterr().err


def test_truncated_video_is_a_one_line_error_and_leaves_nothing(clip_avi, tiny_export, tmp_path, capfd):  # noqa: F811
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(clip_avi.read_bytes()[:clip_avi.stat().st_size // 2])
    lines = _video_error(capfd, tmp_path, truncated, tiny_export).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "truncated or damaged" in lines[0]


def test_damaged_video_is_a_one_line_error(clip_avi, tiny_export, tmp_path, capfd):  # noqa: F811
    damaged = bytearray(clip_avi.read_bytes())
    for i in range(len(damaged) // 4, 3 * len(damaged) // 4, 97):
        damaged[i] ^= 0xFF
    (tmp_path / "damaged.avi").write_bytes(bytes(damaged))
    lines = _video_error(capfd, tmp_path, tmp_path / "damaged.avi", tiny_export).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "damaged.avi" in lines[0]


def test_missing_camera_is_a_one_line_error(tiny_export, tmp_path, capfd):  # noqa: F811
    lines = _video_error(capfd, tmp_path, "99", tiny_export).strip().splitlines()
    assert len(lines) == 1 and "99: cannot open as video; check the camera" in lines[0]


# --- goal 4: fuzzing ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    """One small valid file per format, the mutations' starting points."""
    image = halves(RED, BLUE, (24, 18))
    exif = Image.Exif()
    exif[0x0112] = 8
    return [save(image, "JPEG", exif=exif), save(image.convert("RGBA"), "PNG"), save(image, "BMP"),
            save(image, "GIF", save_all=True, append_images=[image.rotate(90)]), save(image, "WEBP"),
            save(image, "TIFF", compression="tiff_lzw"), save(image.convert("CMYK"), "JPEG", progressive=True),
            gray16_png(), save(image.convert("P"), "PNG", transparency=0)]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few bytes changed, inserted or cut; the header (sizes, lengths) is hit most."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        end = max(1, min(len(data), draw(st.sampled_from([64, 1024, len(data)]))))
        at = draw(st.integers(0, end - 1))
        action = draw(st.sampled_from(["set", "set", "insert", "cut", "truncate"]))
        if action == "set":
            data[at:at + 1] = bytes([draw(st.integers(0, 255))])
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif action == "cut":
            del data[at:at + draw(st.integers(1, 32))]
        else:
            del data[at:]
    return bytes(data)


@pytest.fixture(scope="module")
def private_tmp(tmp_path_factory):
    """Temporary files of the module's requests go to a folder of their own, to be counted."""
    folder, saved = tmp_path_factory.mktemp("spool"), tempfile.tempdir
    tempfile.tempdir = str(folder)
    yield folder
    tempfile.tempdir = saved


def _open_temp_files(folder: Path) -> list[str]:
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return [link for link in links if link.startswith(str(folder))] + [p.name for p in folder.iterdir()]


@settings(max_examples=500, **FUZZ)
@given(data=st.data())
def test_fuzz_decoder_decodes_or_refuses(seeds, data):
    blob = data.draw(mutated(seeds))
    try:
        image = open_image(blob, "fuzz.bin", max_pixels=2_000_000)
    except EmotionError as err:
        assert str(err).startswith("fuzz.bin: ") and "\n" not in str(err)
    else:
        assert image.mode in ("RGB", "L") and 1 <= image.width * image.height <= 2_000_000


@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_fuzz_api_uploads_never_5xx(client, seeds, private_tmp, data):
    blob = data.draw(mutated(seeds))
    if data.draw(st.booleans()):
        blob += bytes(1_100_000)  # past Starlette's 1 MB in-memory spool: the upload goes to a temporary file
    name = data.draw(st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=24))
    content_type = data.draw(st.sampled_from(["image/jpeg", "image/png", "text/html", "application/octet-stream"]))
    faces = data.draw(st.sampled_from(["auto", "detect", "whole"]))
    response = client.post(f"/predict?faces={faces}", files={"file": (name, blob, content_type)})
    # 400: with an empty filename the part is a form field, and Starlette caps those at 1 MB
    assert response.status_code in (200, 400, 413, 415, 422), response.text
    assert not _open_temp_files(private_tmp)


@settings(max_examples=150, **FUZZ)
@given(data=st.data())
def test_fuzz_api_multipart_bodies_never_5xx(client, seeds, private_tmp, data):
    boundary = data.draw(st.text("abcXYZ019'()+_,-./:=? ", min_size=0, max_size=72))
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n").encode() + data.draw(st.sampled_from(seeds))
    body = data.draw(mutated([part + f"\r\n--{boundary}--\r\n".encode()]))
    content_type = data.draw(st.sampled_from([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                                              f'multipart/form-data; boundary="{boundary}"', "image/jpeg"]))
    chunk = data.draw(st.integers(1, 4096))
    content = iter([body[i:i + chunk] for i in range(0, len(body), chunk)]) if data.draw(st.booleans()) else body
    response = client.post("/predict", content=content, headers={"content-type": content_type})
    assert response.status_code in (200, 400, 413, 415, 422), response.text
    assert not _open_temp_files(private_tmp)
