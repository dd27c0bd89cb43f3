"""benchmarks/tencrop_combine.py and benchmarks/ensemble_subsets.py back two rows of docs/experiments.md's lever
table: their plain-mean rows must be the pipeline's own ten-crop and ensemble, or the rows compare the
wrong things."""
import numpy as np
import pytest

from conftest import load_script
from emotion.evaluation import ensemble_proba, predict_proba


class PixelClassifier:
    """Probabilities from a few pixels of the centre 40×40 window: any shift or mirror changes them."""

    def __init__(self, offset: int = 0):
        self.offset = offset

    def predict_proba(self, images, batch_size=256):
        window = images[:, 4:44, 4:44].astype(np.float32) / 255
        logits = np.stack([window[:, i * 5, (i * 7 + self.offset) % 40] * (i + 1) for i in range(7)], axis=1)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, (40, 48, 48), dtype=np.uint8)


def test_the_plain_mean_is_the_pipelines_ten_crop(images):
    bench = load_script("benchmarks/tencrop_combine.py")
    views = bench.view_probas(PixelClassifier(), images)
    scores = bench.combinations(views)
    np.testing.assert_allclose(scores["plain mean (the pipeline)"],
                               predict_proba(PixelClassifier(), images, tta="tencrop"), rtol=1e-6)
    # softening at T = 1 would be the plain mean; the other temperatures and the vote are different rules
    assert any((s.argmax(1) != scores["plain mean (the pipeline)"].argmax(1)).any() for s in scores.values())


def test_the_vote_counts_views_and_the_plain_mean_breaks_its_ties():
    bench = load_script("benchmarks/tencrop_combine.py")
    views = np.zeros((10, 2, 7))
    views[:6, 0, 3] = 0.4; views[6:, 0, 5] = 0.99  # six views say 3; four say 5, so surely that the mean says 5
    views[:5, 1, 1] = 0.6; views[5:, 1, 2] = 0.7   # a 5-5 tie: the plain mean prefers 2
    views += 0.01
    vote = bench.combinations(views)["majority vote (ties: the plain mean)"]
    assert list(vote.argmax(1)) == [3, 2]
    assert bench.combinations(views)["plain mean (the pipeline)"][0].argmax() == 5


def test_subsets_are_equal_weight_means_of_the_pipelines_ensemble(images):
    bench = load_script("benchmarks/ensemble_subsets.py")
    members = [PixelClassifier(k) for k in range(3)]
    labels = np.random.default_rng(1).integers(0, 7, len(images))
    probas = {str(k): predict_proba(m, images, tta="tencrop") for k, m in enumerate(members)}
    accuracies = bench.subset_accuracies(probas, labels)
    assert len(accuracies) == 7  # 3 singletons, 3 pairs, the three
    together = ensemble_proba(members, images, tta="tencrop")
    assert accuracies[("0", "1", "2")] == pytest.approx(np.mean(together.argmax(1) == labels))
    pair = ensemble_proba(members[:2], images, tta="tencrop")
    assert accuracies[("0", "1")] == pytest.approx(np.mean(pair.argmax(1) == labels))


@pytest.mark.parametrize("script, args, option", [
    ("benchmarks/tencrop_combine.py", ["MODEL"], "--data"),
    ("benchmarks/ensemble_subsets.py", ["A", "B"], "--data"),
    ("benchmarks/tta_grid.py", ["MODEL"], "--data"),
    ("benchmarks/tta_cost.py", [], "--data"),
    ("benchmarks/non_square.py", ["crops"], "--data"),
    ("benchmarks/distillation.py", ["score", "--base", "B", "--student", "S", "--others", "A"], "--val"),
])
def test_benchmarks_that_choose_refuse_a_test_split_before_loading_anything(script, args, option, tmp_path,
                                                                           monkeypatch, capsys):
    from emotion.errors import one_line_errors

    bench = load_script(script)
    capsys.readouterr()  # whatever importing the script printed

    def must_not_load(*_, **__):
        raise AssertionError("loaded before refusing the test split")

    for loader in ("load_npz", "load_classifier"):
        if hasattr(bench, loader):
            monkeypatch.setattr(bench, loader, must_not_load)
    for name in ("test.npz", "PublicTest.npz"):  # the check ignores case; neither file exists
        monkeypatch.setattr("sys.argv", [script, *args, option, str(tmp_path / name)])
        with pytest.raises(SystemExit) as stop:
            one_line_errors(bench.main)()  # as the script's `__main__` runs it: one line on stderr, exit 1
        assert stop.value.code == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{name}: choose" in err and "never on the test split" in err
