import json

import numpy as np
import pandas as pd
import pytest

from emotion.data import CLASSES
from emotion.evaluation import ensemble_proba, predict_proba, score, tta_views, write_confusion, write_misclassified


def one_hot_proba(predicted, confidence=0.9):
    proba = np.full((len(predicted), 7), (1 - confidence) / 6)
    proba[np.arange(len(predicted)), predicted] = confidence
    return proba


def test_score_matches_hand_computed_values():
    labels = np.array([0, 0, 1, 3, 3, 3])
    predicted = np.array([0, 1, 1, 3, 3, 0])
    result = score(labels, one_hot_proba(predicted))
    assert result["accuracy"] == pytest.approx(4 / 6)
    angry = result["per_class"]["angry"]
    assert (angry["precision"], angry["recall"], angry["support"]) == (pytest.approx(0.5), pytest.approx(0.5), 2)
    # F1: angry 0.5, disgust 2/3, happy 0.8; absent classes are left out of the macro mean
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert result["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.1 / 6, 0.9, 0.9, 0.9, 0.1 / 6])))
    json.dumps(result)  # plain types only


class Mirror:
    """A classifier whose answer depends on which half of the image is bright."""

    def predict_proba(self, images, batch_size=256):
        left = images[:, :, :24].mean(axis=(1, 2)) > images[:, :, 24:].mean(axis=(1, 2))
        return one_hot_proba(np.where(left, 0, 1), 1.0)


def test_flip_tta_averages_image_and_mirror():
    images = np.zeros((1, 48, 48), np.uint8)
    images[:, :, :24] = 255
    plain = predict_proba(Mirror(), images)
    tta = predict_proba(Mirror(), images, tta="flip")
    assert plain[0, 0] == 1 and tta[0, 0] == pytest.approx(0.5) and tta[0, 1] == pytest.approx(0.5)


def test_ten_crop_views_put_each_corner_window_at_the_centre():
    images = (np.arange(2 * 48 * 48, dtype=np.int64).reshape(2, 48, 48) % 251).astype(np.uint8)
    views = tta_views(images, "tencrop", crop=40 / 48)
    assert len(views) == 10 and all(v.shape == images.shape and v.dtype == np.uint8 for v in views)
    centre = lambda view: view[:, 4:44, 4:44]  # what a model with train.input_crop 40 classifies
    np.testing.assert_array_equal(centre(views[0]), images[:, :40, :40])
    np.testing.assert_array_equal(centre(views[1]), images[:, :40, 8:])
    np.testing.assert_array_equal(centre(views[2]), images[:, 8:, :40])
    np.testing.assert_array_equal(centre(views[3]), images[:, 8:, 8:])
    np.testing.assert_array_equal(views[4], images)
    np.testing.assert_array_equal(views[0][:, 0, :4], np.repeat(images[:, :1, :1], 4, axis=2)[:, 0])  # edges repeat
    np.testing.assert_array_equal(views[5], views[0][:, :, ::-1])
    assert len(tta_views(images, "none")) == 1 and len(tta_views(images, "flip")) == 2


def test_ten_crop_tta_averages_the_views():
    images = np.zeros((1, 48, 48), np.uint8)
    images[:, :, :20] = 255  # bright left strip: each view and its mirror disagree
    tta = predict_proba(Mirror(), images, tta="tencrop")
    assert tta[0, 0] == pytest.approx(0.5) and tta[0, 1] == pytest.approx(0.5)


class Counting:
    """Answers from each image's own pixels (so batching cannot change them) and counts the calls."""

    def __init__(self):
        self.calls = []

    def predict_proba(self, images, batch_size=256):
        self.calls.append(len(images))
        logits = np.stack([images[:, :, i * 6:(i + 1) * 6].mean(axis=(1, 2)) for i in range(7)], axis=1) / 40
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("images, batch_size, calls", [(3, 256, [30]), (7, 20, [20, 20, 20, 10])])
def test_tta_views_go_to_the_model_together_and_score_as_separate_views(images, batch_size, calls):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (images, 48, 48), dtype=np.uint8)
    model = Counting()
    proba = predict_proba(model, images, batch_size, tta="tencrop")
    assert model.calls == calls  # a photo's faces and their ten crops: one call, not ten
    by_view = np.mean([Counting().predict_proba(view) for view in tta_views(images, "tencrop")], axis=0)
    np.testing.assert_allclose(proba, by_view, rtol=1e-6)


class Constant:
    def predict_proba(self, images, batch_size=256):
        return one_hot_proba(np.full(len(images), 6), 1.0)


def test_ensemble_is_the_mean_of_its_members():
    images = np.zeros((3, 48, 48), np.uint8)
    images[:, :, :24] = 255
    proba = ensemble_proba([Mirror(), Constant()], images)
    np.testing.assert_allclose(proba, (predict_proba(Mirror(), images) + predict_proba(Constant(), images)) / 2)
    assert proba[0, 0] == pytest.approx(0.5) and proba[0, 6] == pytest.approx(0.5)


def test_confusion_and_misclassified_outputs(tmp_path):
    labels = np.array([0, 1, 2, 3])
    proba = one_hot_proba(np.array([0, 2, 2, 4]))
    write_confusion(labels, proba, tmp_path / "c.csv", tmp_path / "c.png", "t")
    rows = pd.read_csv(tmp_path / "c.csv")
    assert list(rows.columns) == ["actual", "predicted"] and len(rows) == 4
    assert rows.iloc[1].tolist() == [CLASSES[1], CLASSES[2]]
    write_misclassified(np.zeros((4, 48, 48), np.uint8), labels, proba, tmp_path / "m.png", count=10)
    for png in ("c.png", "m.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
