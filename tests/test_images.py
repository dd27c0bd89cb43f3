"""to_model_input: the one conversion from a decoded image to the model's 48×48 grey input."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from emotion.images import to_model_input


def disc(width: int, height: int, radius: int) -> Image.Image:
    image = Image.new("L", (width, height), 0)
    cx, cy = width / 2, height / 2
    ImageDraw.Draw(image).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)
    return image


def extent(pixels: np.ndarray) -> tuple[int, int]:
    """(width, height) in px of the bright part."""
    rows, cols = np.nonzero(pixels > 127)
    return cols.max() - cols.min() + 1, rows.max() - rows.min() + 1


@pytest.mark.parametrize("size", [(60, 100), (100, 60), (4000, 500)])
def test_a_non_square_image_is_padded_to_a_square_not_stretched(size):
    width, height = size
    pixels = to_model_input(disc(width, height, min(size) // 3))
    assert pixels.shape == (48, 48)
    disc_width, disc_height = extent(pixels)
    assert abs(disc_width - disc_height) <= 1  # squashed, the 60×100 disc would be 40 px wide and 24 high


def test_the_padding_repeats_the_edge_rows():
    rows = np.repeat(np.linspace(40, 200, 50).astype(np.uint8)[:, None], 100, axis=1)  # 100 wide, 50 high
    pixels = to_model_input(Image.fromarray(rows)).astype(int)
    assert np.ptp(pixels[:10]) <= 1 and np.ptp(pixels[-10:]) <= 1  # the top and bottom bands: copies of an edge
    assert pixels[:10].mean() < 50 and pixels[-10:].mean() > 190
    assert pixels[24, 0] == pixels[24, -1]  # the rows stay level


def test_a_square_image_is_only_resized():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (96, 96), dtype=np.uint8))
    expected = np.asarray(image.resize((48, 48), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(to_model_input(image), expected)
