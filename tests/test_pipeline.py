"""End to end: the real `dvc repro` on a tiny synthetic Kaggle-layout zip, in a throwaway git repo."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emotion.data import CLASSES

from conftest import REPO, run

pytestmark = pytest.mark.slow

DATA_STAGES = ["download", "manifest", "split", "preprocess"]


@pytest.fixture(scope="module")
def repo(pipeline_template, tmp_path_factory):
    """One copy shared by this module's tests, which run in order (the last one changes params)."""
    copy = tmp_path_factory.mktemp("pipeline") / "repo"
    shutil.copytree(pipeline_template, copy, symlinks=True)
    return copy


def lock_hashes(root: Path, stages) -> dict:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {(stage, out["path"]): out.get("md5") for stage in stages for out in lock[stage]["outs"]}


def test_every_artifact_is_produced(repo):
    for path in ["data/raw/train/happy", "data/manifest.parquet", "data/split.parquet",
                 "data/prepared/train.npz", "data/prepared/val.npz", "data/prepared/test.npz",
                 "models/model.keras", "models/export/model.onnx", "models/export/model.int8.onnx",
                 "models/export/model.tflite",
                 "models/export/saved_model/saved_model.pb", "models/export/labels.json",
                 "models/export/metadata.json", "dvclive/metrics.json"]:
        assert (repo / path).exists(), path
    for png in ["class_distribution", "samples", "confusion", "misclassified", "reliability", "robustness"]:
        assert (repo / "plots" / f"{png}.png").read_bytes()[:4] == b"\x89PNG", png


def test_manifest_and_splits_are_well_formed(repo):
    manifest = pd.read_parquet(repo / "data/manifest.parquet")
    assert len(manifest) == 7 * 14 and manifest.id.is_unique
    assert set(manifest.usage) == {"Training", "PublicTest"}
    stats = json.loads((repo / "metrics/dataset.json").read_text())
    assert stats["images"] == 98 and stats["per_folder"] == {"test": 28, "train": 70}
    split = json.loads((repo / "metrics/split.json").read_text())
    assert split["per_split"]["test"] == 28 and split["per_split"]["train"] + split["per_split"]["val"] == 70
    test = np.load(repo / "data/prepared/test.npz")
    assert test["images"].shape == (28, 48, 48) and test["images"].dtype == np.uint8


def test_metrics_have_every_key(repo):
    scores = json.loads((repo / "metrics/eval.json").read_text())
    for split in ("test", "val"):
        assert {"loss", "accuracy", "macro_f1", "per_class"} <= set(scores[split])
        assert sorted(scores[split]["per_class"]) == list(CLASSES)
        for cls in scores[split]["per_class"].values():
            assert set(cls) == {"precision", "recall", "f1", "support"}
    calibration = scores["calibration"]
    assert 0.05 <= calibration["temperature"] <= 20 and {"val", "test"} <= set(calibration)
    assert {"ece", "ece_scaled", "nll", "nll_scaled"} <= set(calibration["test"])
    assert calibration["val"]["nll_scaled"] <= calibration["val"]["nll"] + 1e-9  # fitted on val: never worse there
    assert set(scores["single_view"]) == {"val", "test"}
    meta = json.loads((repo / "models/export/metadata.json").read_text())
    assert meta["temperature"] == calibration["temperature"]
    robustness = json.loads((repo / "metrics/robustness.json").read_text())
    assert {"occlude_eyes", "jpeg_10", "downscale_24"} <= set(robustness["accuracy"])
    assert robustness["clean"] == pytest.approx(scores["single_view"]["test"]["accuracy"])
    card = (repo / "models/export/MODEL_CARD.md").read_text()
    assert f"**{calibration['temperature']:.3f}**" in card and "Out of scope" in card
    live = json.loads((repo / "dvclive/metrics.json").read_text())
    assert {"best_epoch", "best_val_accuracy", "train", "val"} <= set(live)
    parity = json.loads((repo / "metrics/export.json").read_text())
    assert set(parity) == {"keras", "saved_model", "onnx", "onnx_int8", "tflite"}
    assert all(parity[f]["max_abs_diff"] < 1e-4 for f in ("saved_model", "onnx", "tflite"))
    assert all(0 <= parity[f]["val_accuracy"] <= 1 for f in parity)
    runtimes = json.loads((repo / "metrics/runtimes.json").read_text())
    assert set(runtimes) == {"model.int8.onnx", "model.onnx", "model.tflite", "model.keras", "saved_model"}
    assert set(runtimes["model.onnx"]) == {"none", scores["tta"]} and "| model.int8.onnx |" in card
    single = runtimes["model.keras"]["none"]["test"]["accuracy"]  # the export folds T in: same argmax
    assert single == pytest.approx(scores["single_view"]["test"]["accuracy"])


def test_dvc_sees_metrics_plots_and_a_clean_state(repo):
    assert "up to date" in run(["dvc", "status"], repo).stdout
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    flat = json.dumps(shown)
    assert "test.accuracy" in flat or '"accuracy"' in flat
    confusion = pd.read_csv(repo / "plots/confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == 28
    steps = pd.read_csv(repo / "dvclive/plots/metrics/val/accuracy.tsv", sep="\t")
    assert list(steps.step) == [0, 1]
    out = repo / "plots_html"
    run(["dvc", "plots", "show", "--html-template", str(REPO / "dvc_plots/offline.html"), "-o", str(out)], repo)
    html = (out / "index.html").read_text()
    assert "vega" in html and "https://cdn" not in html and "confusion" in html


def test_data_stages_are_bit_for_bit_reproducible(repo):
    before = lock_hashes(repo, DATA_STAGES)
    for stage in DATA_STAGES:
        run(["dvc", "repro", "--force", "--single-item", stage], repo)
    assert lock_hashes(repo, DATA_STAGES) == before


def test_changing_lr_reruns_only_train_and_later(repo):
    result = run(["dvc", "exp", "run", "-S", "train.lr=1e-4"], repo)
    ran = [line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")]
    assert ran == ["train", "evaluate", "export"]
    shown = run(["dvc", "exp", "show", "--md", "--no-pager"], repo).stdout
    assert "train.lr" in shown and ("0.0001" in shown or "1e-4" in shown)
