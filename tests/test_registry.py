"""The model registry: GTO tags name versions and stages; `emotion pull` and `--model emotion@STAGE` fetch
exactly the tagged version's files from the DVC remote."""
import dataclasses
import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run
from emotion.fileio import save_npz
from emotion.models import build_model
from emotion.registry import parse_spec

ARTIFACTS = """artifacts:
  emotion:
    path: models/export
    type: model
"""


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def registry_repo(tmp_path, tiny_train):
    repo = tmp_path / "repo"
    (repo / "models/export").mkdir(parents=True)
    run("git init -q && git config user.email t@example.com && git config user.name tester && dvc init -q", repo)
    run(f"dvc remote add -d store {tmp_path / 'store'}", repo)
    (repo / "dvc.yaml").write_text(ARTIFACTS)
    digests = {}
    for version, seed in (("v1.0.0", 1), ("v2.0.0", 2)):
        model = repo / "models/export/model.keras"
        build_model(dataclasses.replace(tiny_train, width=4, seed=seed)).save(model)
        digests[version] = md5(model)
        run(f"dvc add -q models/export && git add -A && git commit -qm 'model {version}' && dvc push -q && "
            f"gto register emotion HEAD --version {version}", repo)
    run("gto assign emotion --version v1.0.0 --stage prod", repo)
    run("rm -rf .dvc/cache models/export", repo)  # only the remote has the files now
    return repo, digests


def emotion(repo, *args):
    return subprocess.run([sys.executable, "-m", "emotion", *args], cwd=repo, capture_output=True, text=True,
                          timeout=300)


def test_pull_by_stage_fetches_the_older_version_that_prod_points_to(registry_repo):
    repo, digests = registry_repo
    pulled = emotion(repo, "pull", "--stage", "prod")
    assert pulled.returncode == 0, pulled.stderr[-1500:]
    assert "emotion@v1.0.0" in pulled.stdout
    folder = repo / ".emotion-cache/registry/emotion/v1.0.0"
    assert md5(folder / "model.keras") == digests["v1.0.0"] != digests["v2.0.0"]
    latest = emotion(repo, "pull", "--out", "latest")
    assert latest.returncode == 0 and md5(repo / "latest/model.keras") == digests["v2.0.0"]
    save_npz(repo / "val.npz", images=np.zeros((7, 48, 48), np.uint8), labels=np.arange(7))
    scored = emotion(repo, "evaluate", "emotion@prod", "val.npz", "--tta", "none")
    assert scored.returncode == 0 and "7 images" in scored.stdout, scored.stderr[-1500:]


def test_unknown_stage_or_version_names_what_exists(registry_repo):
    repo, _ = registry_repo
    stage = emotion(repo, "pull", "--stage", "staging")
    assert stage.returncode == 1 and "Traceback" not in stage.stderr
    assert "no version of 'emotion' is in stage 'staging'; stages in use: prod" in stage.stderr
    version = emotion(repo, "pull", "--version", "v9")
    assert version.returncode == 1 and "registered: v2.0.0, v1.0.0" in version.stderr


def test_model_names_are_told_apart_from_paths():
    assert parse_spec("emotion@prod") == ("emotion", "prod", None)
    assert parse_spec("emotion@v1.2.0") == ("emotion", None, "v1.2.0")
    assert parse_spec("models/export") is None and parse_spec("exp-1a2b:models/model.keras") is None


def test_the_project_declares_its_model_artifact():
    import yaml

    assert yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]["emotion"]["path"] == "models/export"


def test_a_repository_with_nothing_registered_says_how_to_register(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    run("git init -q && git config user.email t@example.com && git config user.name tester && dvc init -q", repo)
    (repo / "dvc.yaml").write_text(ARTIFACTS)
    run("git add -A && git commit -qm 'no model yet'", repo)
    Image.new("L", (48, 48), 128).save(repo / "face.jpg")
    for args in (["pull", "--stage", "prod"], ["predict", "face.jpg", "--model", "emotion@prod"]):
        result = emotion(repo, *args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-1500:]
        assert "no registered versions of 'emotion'; register one with `gto register emotion" in result.stderr
