"""Label audit: FER2013's labels are noisy. cleanlab finds the images whose given label the model's
out-of-sample probabilities most doubt (confident learning), and ranks the least face-like ones
(out-of-distribution scores). Nothing is dropped: the report gives accuracy with and without them."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from emotion import plots
from emotion.data import CLASSES
from emotion.fileio import atomic_path


def audit_split(labels: np.ndarray, proba: np.ndarray) -> pd.DataFrame:
    """One row per image: label quality (low = label doubtful), whether cleanlab flags the label, and an
    out-of-distribution score (low = unlike the rest: non-faces, drawings, blank or cropped images)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.outlier import OutOfDistribution
    from cleanlab.rank import get_label_quality_scores

    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)
    table = pd.DataFrame({"given": [CLASSES[i] for i in labels], "predicted": [CLASSES[i] for i in proba.argmax(axis=1)]})
    if len(np.unique(labels)) < 2:  # confident learning compares classes: nothing to audit
        return table.assign(label_quality=proba[np.arange(len(labels)), labels], flagged=False, ood_score=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "too few examples in class k" on small splits
        return table.assign(
            label_quality=get_label_quality_scores(labels, proba),
            flagged=find_label_issues(labels, proba, n_jobs=1),  # one process: deterministic, and safe beside TF
            ood_score=OutOfDistribution().fit_score(pred_probs=proba, labels=labels, verbose=False))


def summary(table: pd.DataFrame) -> dict:
    correct = table.given == table.predicted
    kept = ~table.flagged
    return {
        "images": len(table), "flagged": int(table.flagged.sum()), "flagged_share": float(table.flagged.mean()),
        "accuracy": float(correct.mean()),
        "accuracy_without_flagged": float(correct[kept].mean()) if kept.any() else None,
        "flagged_per_class": {c: int(table.flagged[table.given == c].sum()) for c in CLASSES},
    }


def write_label_issues(tables: dict[str, pd.DataFrame], ids: dict[str, np.ndarray], csv_path: Path,
                       worst_ood: int = 20) -> None:
    """The flagged images and the least face-like ones of each split, doubtful labels first."""
    rows = []
    for split, table in tables.items():
        listed = table.assign(split=split, id=ids[split], ood_rank=table.ood_score.rank(method="first"))
        rows.append(listed[listed.flagged | (listed.ood_rank <= worst_ood)])
    out = pd.concat(rows).sort_values(["split", "label_quality"], kind="stable")
    columns = ["split", "id", "given", "predicted", "label_quality", "flagged", "ood_score"]
    with atomic_path(csv_path) as tmp:
        out[columns].round(5).to_csv(tmp, index=False)


def plot_label_issues(images: np.ndarray, table: pd.DataFrame, dest: Path, count: int = 36) -> None:
    doubtful = table[table.flagged].sort_values("label_quality", kind="stable").index[:count]
    titles = [f"{table.given[i]}→{table.predicted[i]}\n{table.label_quality[i]:.2f}" for i in doubtful]
    plots.image_grid(images[doubtful], titles, dest, columns=6,
                     title="Most doubtful test labels (given→model's guess, label quality)")
