import dataclasses
import json
import subprocess
import sys

import pytest

from emotion.cli import main
from emotion.models import build_model

from conftest import REPO


@pytest.fixture
def model_path(tmp_path, tiny_train):
    path = tmp_path / "model.keras"
    build_model(dataclasses.replace(tiny_train, width=4)).save(path)
    return path


def test_evaluate_any_folder_of_class_subfolders(model_path, fake_fer, tmp_path, capsys):
    (fake_fer / "test/happy/photo.png").write_bytes((fake_fer / "train/happy").iterdir().__next__().read_bytes())
    out = tmp_path / "scores.json"
    main(["evaluate", str(model_path), str(fake_fer / "test"), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "22 images" in printed and "accuracy" in printed and "macro-F1" in printed
    result = json.loads(out.read_text())
    assert result["images"] == 22 and 0 <= result["accuracy"] <= 1 and "per_class" in result


def test_evaluate_on_missing_folder_is_one_line(model_path, tmp_path):
    run = subprocess.run([sys.executable, "-m", "emotion", "evaluate", str(model_path), str(tmp_path / "nowhere")],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1
    assert run.stderr.strip().startswith("error:") and "nowhere: folder not found" in run.stderr
    assert "Traceback" not in run.stderr


def test_params_check_reports_typos(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("  epochs:", "  epochz:"))
    run = subprocess.run([sys.executable, "-m", "emotion", "params", "check", "--file", str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: {bad}: unknown key 'train.epochz'; did you mean 'train.epochs'?"
