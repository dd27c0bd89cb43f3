import dataclasses
import json
import shutil
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


def test_evaluate_lists_unreadable_files_counts_them_and_scores_the_rest(model_path, fake_fer, tmp_path, capsys):
    (fake_fer / "test/angry/broken.jpg").write_bytes(b"\xff\xd8\xff" + bytes(40))  # a truncated JPEG
    (fake_fer / "test/sad/notes.png").write_text("not a picture")
    out = tmp_path / "scores.json"
    main(["evaluate", str(model_path), str(fake_fer / "test"), "--json", str(out)])
    printed = capsys.readouterr().out
    assert "broken.jpg" in printed and "notes.png" in printed
    assert "skipped 2 unreadable file(s) of 23; scoring the other 21" in printed
    assert json.loads(out.read_text())["images"] == 21


def test_evaluate_on_missing_folder_is_one_line(model_path, tmp_path):
    run = subprocess.run([sys.executable, "-m", "emotion", "evaluate", str(model_path), str(tmp_path / "nowhere")],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 1
    assert run.stderr.strip().startswith("error:") and "nowhere: folder not found" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("options, says", [
    (["--tta-crop", "2"], "--tta-crop 2.0: use the window's side as a fraction of the image"),
    (["--tta-crop", "0"], "--tta-crop 0.0: use the window's side"),
    (["--batch-size", "0"], "--batch-size 0: use a positive number"),
    (["--data", "not_a_split.npz"], "not_a_split.npz: not a prepared split"),
    (["--data", "photo.jpg"], "photo.jpg: a file; give a folder of class subfolders"),
    (["--json", "taken/scores.json"], "taken: a file is there, where the output needs a folder"),
    (["--json", "results"], "--json results: a folder is there; name a file"),
])
def test_evaluate_refuses_unusable_options_and_inputs_in_one_line(options, says, model_path, fake_fer, tmp_path,
                                                                  monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not_a_split.npz").write_text("images,labels\n")
    (tmp_path / "photo.jpg").write_bytes(next((fake_fer / "test/happy").iterdir()).read_bytes())
    (tmp_path / "taken").write_text("")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "keep.txt").write_text("mine")
    data = options[1] if options[0] == "--data" else str(fake_fer / "test")
    rest = [] if options[0] == "--data" else options
    with pytest.raises(SystemExit):
        main(["evaluate", str(model_path), data, *rest])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and says in err and "\n" not in err, err
    assert (tmp_path / "results" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("error, says", [
    (PermissionError(13, "Permission denied", "/ro/.scores.json.k2j3.json"), "error: /ro: Permission denied"),
    (OSError(28, "No space left on device"), "error: the disk is full"),
])
def test_a_write_that_the_system_refuses_is_one_line_naming_the_folder(error, says, model_path, fake_fer, tmp_path,
                                                                       monkeypatch, capsys):
    import emotion.fileio

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(emotion.fileio, "write_json", refuse)
    with pytest.raises(SystemExit):
        main(["evaluate", str(model_path), str(fake_fer / "test"), "--json", str(tmp_path / "scores.json")])
    err = capsys.readouterr().err.strip()
    assert err.startswith(says) and "\n" not in err, err


def test_params_check_reports_typos(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((REPO / "params.yaml").read_text().replace("  epochs:", "  epochz:"))
    run = subprocess.run([sys.executable, "-m", "emotion", "params", "check", "--file", str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip() == f"error: {bad}: unknown key 'train.epochz'; did you mean 'train.epochs'?"


def test_evaluate_an_ensemble_on_a_prepared_split(model_path, tmp_path, tiny_train, capsys):
    import numpy as np

    from emotion.fileio import save_npz

    other = tmp_path / "other.keras"
    build_model(dataclasses.replace(tiny_train, width=4, seed=7)).save(other)
    rng = np.random.default_rng(0)
    save_npz(tmp_path / "val.npz", images=rng.integers(0, 256, (12, 48, 48), dtype=np.uint8),
             labels=np.arange(12) % 7)
    out = tmp_path / "ensemble.json"
    main(["evaluate", str(model_path), str(other), str(tmp_path / "val.npz"), "--tta", "tencrop", "--json", str(out)])
    assert "12 images" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["models"] == [str(model_path), str(other)] and result["tta"] == "tencrop"


def test_evaluate_defaults_to_the_pipelines_tta(model_path, tmp_path, monkeypatch, capsys):
    """The same model and split give the number metrics/eval.json reports: without --tta, `emotion
    evaluate` takes params.yaml's evaluate.tta (ten-crop in the committed params)."""
    import numpy as np

    from emotion.config import set_param
    from emotion.fileio import save_npz

    save_npz(tmp_path / "val.npz", images=np.random.default_rng(0).integers(0, 256, (7, 48, 48), dtype=np.uint8),
             labels=np.arange(7))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    set_param(tmp_path / "params.yaml", "evaluate.tta", "flip")
    monkeypatch.chdir(tmp_path)
    main(["evaluate", str(model_path), "val.npz", "--json", "a.json"])
    assert json.loads((tmp_path / "a.json").read_text())["tta"] == "flip"
    (tmp_path / "params.yaml").unlink()
    main(["evaluate", str(model_path), "val.npz", "--json", "b.json"])
    assert json.loads((tmp_path / "b.json").read_text())["tta"] == "none"


def test_evaluate_a_model_from_another_revision(pipeline_repo, capsys, monkeypatch):
    monkeypatch.chdir(pipeline_repo)
    (pipeline_repo / "models/model.keras").unlink()  # only the DVC cache has it now
    main(["evaluate", "HEAD:models/model.keras", "data/prepared/test.npz"])
    assert "accuracy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["evaluate", "no-such-exp:models/model.keras", "data/prepared/test.npz"])
    assert "'no-such-exp' is neither a git revision nor a single `dvc exp` name" in capsys.readouterr().err


def test_output_piped_into_head_ends_quietly():
    """Like `emotion params check --show | head -1`: the reader goes away before the output is written."""
    proc = subprocess.Popen([sys.executable, "-m", "emotion", "params", "check", "--show"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # long before the command has imported anything and printed
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def test_evaluate_scores_the_face_of_each_full_photo_and_says_how_each_was_found(model_path, tmp_path, capsys):
    from inference_fixtures import face_photo_path, write_fer_crop, write_no_face_photo

    for label in ("happy", "sad"):
        (tmp_path / "photos" / label).mkdir(parents=True)
    shutil.copy(face_photo_path(), tmp_path / "photos/happy/portrait.jpg")
    write_fer_crop(tmp_path / "photos/happy/crop.png")
    write_no_face_photo(tmp_path / "photos/sad/scene.jpg")
    out = tmp_path / "scores.json"
    main(["evaluate", str(model_path), str(tmp_path / "photos"), "--tta", "none", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "3 images" in printed and "1 found by blazeface" in printed and "1 with no face found" in printed
    faces = json.loads(out.read_text())["faces"]
    assert faces == {"mode": "auto", "detector": "blazeface", "detected": 1, "crop": 1, "no face": 1}
    main(["evaluate", str(model_path), str(tmp_path / "photos"), "--tta", "none", "--faces", "whole", "--json", str(out)])
    assert json.loads(out.read_text())["faces"] == {"mode": "whole", "detector": "blazeface", "crop": 3}
