"""benchmarks/face_margin.py's bookkeeping on hand-made detections: the README's margin numbers come from it."""
import pytest

from conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/face_margin.py")


def test_framing_reads_the_box_against_the_face_image(bench):
    from emotion.detectors import Detection

    side, centre = bench.FACE_SIDE, bench.CANVAS / 2
    # Boxes of 0.8 of the face's side, the middle one centred horizontally and 0.1 of the side low.
    boxes = [Detection((round(centre - 64 + dx), round(centre - 64 + 16), 128, 128)) for dx in (-8, 0, 8)]
    frame = bench.framing(boxes)
    assert frame["box_over_image"] == pytest.approx(128 / side)
    assert frame["implied_margin"] == pytest.approx((side / 128 - 1) / 2)  # 0.125: the cut that gives FER's frame
    assert frame["centre_dx"] == pytest.approx(0) and frame["centre_dy"] == pytest.approx(0.1)


def test_a_shift_moves_the_box_and_the_eyes_by_a_fraction_of_its_side(bench):
    from emotion.detectors import Detection

    moved = bench.shifted(Detection((10, 100, 80, 100), 0.9, ((30, 130), (70, 130))), -0.1)
    assert moved.box == (10, 90, 80, 100) and moved.eyes == ((30, 120), (70, 120)) and moved.score == 0.9
    assert bench.shifted(Detection((0, 0, 50, 50)), 0.2).box == (0, 10, 50, 50)


def test_the_margin_is_never_chosen_on_a_test_split(bench, tmp_path):
    from emotion.errors import EmotionError

    with pytest.raises(EmotionError, match="validation"):
        bench.main(["--data", str(tmp_path / "test.npz")])


def test_the_edge_canvas_repeats_the_faces_border_around_it(bench):
    import numpy as np

    face = np.full((48, 48), 90, np.uint8)
    face[0, :] = 200  # a bright top row
    canvas = np.asarray(bench.edge_canvas(face))
    assert canvas.shape == (bench.CANVAS, bench.CANVAS)
    assert canvas[0, bench.CANVAS // 2] > 150 and canvas[-1, bench.CANVAS // 2] == 90  # top smeared up, bottom down
