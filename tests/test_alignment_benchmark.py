"""benchmarks/alignment.py's bookkeeping, on hand-made predictions: the README's alignment numbers come from it."""

import numpy as np
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/alignment.py")


def test_agreement_is_with_the_same_face_upright_cut_the_same_way(bench):
    labels = np.array([0, 1, 2, 3])
    predicted = {(0, "plain"): {0: 0, 1: 1, 2: 2}, (0, "aligned"): {0: 0, 1: 1, 2: 5},  # face 3 not found upright
                 (10, "plain"): {0: 4, 1: 1, 3: 3}, (10, "aligned"): {0: 0, 1: 1, 3: 3}}
    rows = bench.score(predicted, labels, [0, 10], count=4)
    assert rows[0]["detected"] == 0.75 and rows[0]["agreement_plain"] == rows[0]["agreement_aligned"] == 1
    assert (rows[0]["only_plain_right"], rows[0]["only_aligned_right"]) == (1, 0)
    tilted = rows[10]
    assert tilted["detected"] == 0.75 and tilted["faces"] == 3
    assert tilted["agreement_plain"] == pytest.approx(1 / 2)  # faces 0 and 1 were found both ways; 0 changed
    assert tilted["agreement_aligned"] == 1
    assert tilted["accuracy_plain"] == pytest.approx(2 / 3) and tilted["accuracy_aligned"] == 1


def test_the_tilted_face_stays_centred_and_is_the_one_picked(bench):
    from emotion.detectors import Detection

    face = np.full((48, 48), 90, np.uint8)
    canvas = bench.tilted_canvas(face, 30)
    assert canvas.size == (bench.CANVAS, bench.CANVAS) and canvas.getpixel((160, 160)) == 90
    assert canvas.getpixel((2, 2)) == bench.GREY
    centred, aside = Detection((100, 100, 120, 120)), Detection((0, 0, 60, 60))
    assert bench.central_detection([aside, centred]) is centred
    assert bench.central_detection([aside]) is None
