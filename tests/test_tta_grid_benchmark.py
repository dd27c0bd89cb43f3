"""benchmarks/tta_grid.py compares denser test-time grids with ten-crop: its ten-crop row must be the
pipeline's ten-crop, or the comparison in docs/experiments.md would be between two different things."""
import numpy as np

from conftest import load_script
from emotion.evaluation import predict_proba


class PixelClassifier:
    """Probabilities from a few pixels of the centre 40×40 window: any shift or mirror changes them."""

    def predict_proba(self, images, batch_size=256):
        window = images[:, 4:44, 4:44].astype(np.float32) / 255
        logits = np.stack([window[:, i * 5, (i * 7) % 40] * (i + 1) for i in range(7)], axis=1)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_the_grid_holds_the_pipelines_ten_crop_and_single_view():
    bench = load_script("benchmarks/tta_grid.py")
    images = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    classifier = PixelClassifier()
    views = bench.view_probas(classifier, images)
    tencrop = bench.VIEW_SETS["4 corners 8 px apart + centre (ten-crop with mirrors)"]
    ours = np.mean([views[m, r, c] for m in (0, 1) for r, c in tencrop], axis=0)
    np.testing.assert_allclose(ours, predict_proba(classifier, images, tta="tencrop"), rtol=1e-6)
    np.testing.assert_allclose(views[0, 2, 2], predict_proba(classifier, images, tta="none"), rtol=1e-6)
    assert not np.allclose(views[0, 0, 0], views[0, 2, 2])  # the positions do differ
