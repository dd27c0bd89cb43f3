"""benchmarks/non_square.py compares three ways to square an image; its cuts must be the sizes it names."""
import numpy as np

from conftest import load_script
from emotion.images import to_model_input


def test_val_crops_are_cut_about_the_centre_at_the_named_size_and_each_conversion_gives_model_input():
    bench = load_script("benchmarks/non_square.py")
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    crops = bench.val_crops(faces, 64, 96)
    assert [c.size for c in crops] == [(64, 96)] * 3
    for how, convert in bench.CONVERSIONS.items():
        assert convert(crops[0]).shape == (48, 48) and convert(crops[0]).dtype == np.uint8, how
    assert bench.CONVERSIONS["padded"] is to_model_input
    # stretched and centre differ from padding on a non-square crop, and agree with it on a square one
    assert not np.array_equal(bench.CONVERSIONS["stretched"](crops[0]), to_model_input(crops[0]))
    square = bench.val_crops(faces, 96, 96)[0]
    for convert in bench.CONVERSIONS.values():
        np.testing.assert_array_equal(convert(square), to_model_input(square))
