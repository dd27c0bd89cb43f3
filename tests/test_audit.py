"""Label audit: labels the model's out-of-sample probabilities doubt are listed and plotted, never dropped."""
import numpy as np
import pandas as pd

from emotion.audit import audit_split, plot_label_issues, summary, write_label_issues
from emotion.data import CLASSES


def noisy_split(n=700, flipped=40, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.arange(n) % len(CLASSES)
    proba = rng.dirichlet(np.ones(len(CLASSES)), n)
    proba[np.arange(n), truth] += 3
    proba /= proba.sum(axis=1, keepdims=True)
    labels = truth.copy()
    labels[:flipped] = (labels[:flipped] + 1) % len(CLASSES)  # the first 40 carry a wrong label
    return labels, proba


def test_flipped_labels_are_flagged_and_accuracy_is_reported_both_ways():
    labels, proba = noisy_split()
    table = audit_split(labels, proba)
    assert table.flagged[:40].mean() > 0.8 and table.flagged[40:].mean() < 0.02
    result = summary(table)
    assert result["images"] == 700  # nothing dropped
    assert result["accuracy"] < result["accuracy_without_flagged"]
    assert sum(result["flagged_per_class"].values()) == result["flagged"]


def test_issue_list_and_grid_are_written(tmp_path):
    labels, proba = noisy_split()
    table = audit_split(labels, proba)
    ids = np.array([f"test/{CLASSES[k]}/{i}.jpg" for i, k in enumerate(labels)])
    write_label_issues({"test": table}, {"test": ids}, tmp_path / "issues.csv", worst_ood=5)
    listed = pd.read_csv(tmp_path / "issues.csv")
    assert listed.flagged.sum() == table.flagged.sum() and len(listed) <= table.flagged.sum() + 5
    assert listed.label_quality.is_monotonic_increasing and set(listed.id) <= set(ids)
    images = np.random.default_rng(1).integers(0, 256, (700, 48, 48), dtype=np.uint8)
    plot_label_issues(images, table, tmp_path / "issues.png")
    assert (tmp_path / "issues.png").stat().st_size > 1000


def test_a_split_with_one_class_is_reported_not_audited():
    table = audit_split(np.zeros(3, int), np.full((3, 7), 1 / 7))
    assert not table.flagged.any() and summary(table)["flagged"] == 0
