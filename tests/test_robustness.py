import numpy as np
import pytest

from emotion.robustness import CORRUPTIONS, corrupt, plot_robustness, robustness_report
from emotion.synthetic import synthetic_face


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    labels = np.arange(14) % 7
    return np.stack([synthetic_face(int(label), rng) for label in labels]), labels


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_changes_the_image_but_not_its_shape_and_repeats_with_the_seed(faces, name):
    images, _ = faces
    out = corrupt(images, name, seed=3)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert not np.array_equal(out, images)
    np.testing.assert_array_equal(out, corrupt(images, name, seed=3))
    assert np.array_equal(images, faces[0])  # the input is left untouched


def test_report_measures_the_drop_of_a_model_that_only_knows_clean_images(faces, tmp_path):
    images, labels = faces
    known = {image.tobytes(): label for image, label in zip(images, labels)}

    def predict(batch):  # right on every clean image, class 0 on anything else
        return np.eye(7)[[known.get(image.tobytes(), 0) for image in batch]]

    report = robustness_report(predict, images, labels)
    assert report["clean"] == 1.0 and set(report["accuracy"]) == set(CORRUPTIONS)
    assert all(report["drop"][name] == pytest.approx(1.0 - report["accuracy"][name]) for name in CORRUPTIONS)
    assert report["mean_corrupted"] < 1.0
    plot_robustness(report, tmp_path / "r.png", "test")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
