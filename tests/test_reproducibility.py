"""The lock tells the truth: data tracked by content, params edited mid-run refused, and a training
run killed with SIGKILL that `dvc repro` resumes to bit-identical weights. Real `dvc repro` runs on
the tiny synthetic project (conftest.pipeline_template)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import emotion.models  # noqa: F401  registers the custom layers that keras.models.load_model meets below
from emotion.config import set_param
from emotion.synthetic import write_fake_fer_zip

from conftest import run

pytestmark = pytest.mark.slow
STATE = Path("models/train_state/state.json")


def start_repro(repo: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(repo / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(["dvc", "repro", *args], cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def poll(process: subprocess.Popen, ready, what: str, timeout: float):
    """Call `ready()` until it returns a value other than None, while the run is alive; return that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"training ended before {what}:\n{process.stdout.read()[-3000:]}"
        try:
            value = ready()
            if value is not None:
                return value
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    raise AssertionError(f"no {what} within {timeout} s")


def wait_for_epoch(repo: Path, process: subprocess.Popen, epoch: int, timeout: float = 300) -> int:
    """Poll the training state until it has reached `epoch`; return the epoch it holds."""
    def reached():
        state = json.loads((repo / STATE).read_text())
        return state["epoch"] if not state.get("complete") and state.get("epoch", 0) >= epoch else None
    return poll(process, reached, f"epoch {epoch}", timeout)


def kill_after_a_logged_epoch(repo: Path, process: subprocess.Popen, epoch: int, timeout: float = 300) -> int:
    """SIGKILL dvc and the training (as the OOM killer or a power cut would) once the state holds `epoch` or
    later and DVCLive has logged every epoch the state holds; return the state's epoch. The run is frozen
    (SIGSTOP) while its files are read, so it cannot move on between the check and the kill."""
    log = repo / "dvclive/plots/metrics/val/accuracy.tsv"  # a header, then a line per epoch
    summary = repo / "dvclive/metrics.json"

    def frozen_at_a_logged_epoch():
        os.killpg(process.pid, signal.SIGSTOP)
        try:
            state = json.loads((repo / STATE).read_text())
            done = state.get("epoch", 0)
            if (not state.get("complete") and done >= epoch and len(log.read_text().splitlines()) - 1 == done
                    and json.loads(summary.read_text())["step"] == done - 1):
                os.killpg(process.pid, signal.SIGKILL)
                return done
        except (OSError, ValueError, KeyError):
            pass
        os.killpg(process.pid, signal.SIGCONT)
        return None
    killed_at = poll(process, frozen_at_a_logged_epoch, f"a logged epoch {epoch} or later", timeout)
    process.wait()
    return killed_at


def model_weights(path: Path) -> list:
    return keras.models.load_model(path).get_weights()


def test_a_killed_training_run_resumes_to_the_same_weights(pipeline_repo):
    set_param(pipeline_repo / "params.yaml", "train.epochs", "12")
    run(["dvc", "repro", "train"], pipeline_repo)
    uninterrupted = model_weights(pipeline_repo / "models/model.keras")
    lock = (pipeline_repo / "dvc.lock").read_text()

    process = start_repro(pipeline_repo, "--force", "train")
    killed_at = kill_after_a_logged_epoch(pipeline_repo, process, 3)  # a kill between state and log loses a line
    assert killed_at < 12 and not (pipeline_repo / "models/model.keras").exists()  # no partial model in models/
    (pipeline_repo / "dvclive/metrics.json").write_text("")  # as a kill during DVCLive's rewrite of it leaves it

    resumed = run(["dvc", "repro", "train"], pipeline_repo)
    assert "train: resuming after epoch" in resumed.stdout
    done = json.loads((pipeline_repo / STATE).read_text())
    assert done["complete"] and not (pipeline_repo / "models/train_state/state.npz").exists()
    for left, right in zip(uninterrupted, model_weights(pipeline_repo / "models/model.keras"), strict=True):
        np.testing.assert_array_equal(left, right)
    lock_now = (pipeline_repo / "dvc.lock").read_text()
    model_entry = lambda text: text.split("path: models/model.keras")[1].split("size:")[0]  # noqa: E731
    assert model_entry(lock_now) == model_entry(lock)  # the same bytes, so the same hash in the lock
    steps = (pipeline_repo / "dvclive/plots/metrics/val/accuracy.tsv").read_text().splitlines()[1:]
    assert [int(line.split("\t")[0]) for line in steps] == list(range(12))  # DVCLive resumed its logs


def test_stale_state_is_discarded_when_a_train_param_changes(pipeline_repo):
    set_param(pipeline_repo / "params.yaml", "train.epochs", "40")
    process = start_repro(pipeline_repo, "--force", "train")
    wait_for_epoch(pipeline_repo, process, 2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    set_param(pipeline_repo / "params.yaml", "train.epochs", "3")
    result = run(["dvc", "repro", "train"], pipeline_repo)
    assert "resuming" not in result.stdout
    assert json.loads((pipeline_repo / "dvclive/metrics.json").read_text())["epochs_run"] == 3


def test_params_edited_while_a_stage_runs_are_refused_and_the_lock_is_kept(pipeline_repo):
    lock = (pipeline_repo / "dvc.lock").read_text()
    set_param(pipeline_repo / "params.yaml", "train.epochs", "40")
    process = start_repro(pipeline_repo, "train")
    wait_for_epoch(pipeline_repo, process, 1)
    set_param(pipeline_repo / "params.yaml", "train.lr", "0.0005")
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0
    error = next(line for line in output.splitlines() if line.startswith("error:"))
    assert "train.lr (0.004 → 0.0005) changed while stage 'train' ran" in error
    assert (pipeline_repo / "dvc.lock").read_text() == lock


def test_the_archive_is_tracked_by_content_not_by_path(pipeline_repo, tmp_path):
    lock = (pipeline_repo / "dvc.lock").read_text()
    tracked = (pipeline_repo / "data/source.dvc").read_text()
    for text in (lock, tracked, (pipeline_repo / "params.yaml").read_text()):
        assert str(tmp_path.parent) not in text and "fer2013.zip\n" not in text.split("path:")[0]
    # the same archive from another place: nothing changes
    elsewhere = tmp_path / "Downloads" / "fer2013.zip"
    elsewhere.parent.mkdir()
    shutil.copy(pipeline_repo / "data/source/fer2013.zip", elsewhere)
    run(["emotion", "fetch", str(elsewhere)], pipeline_repo)
    assert (pipeline_repo / "data/source.dvc").read_text() == tracked
    assert "up to date" in run(["dvc", "status"], pipeline_repo).stdout
    # a different archive re-runs download
    write_fake_fer_zip(elsewhere, train_per_class=11, test_per_class=4)
    run(["emotion", "fetch", str(elsewhere)], pipeline_repo)
    status = run(["dvc", "status", "download"], pipeline_repo).stdout
    assert "data/source" in status and "modified" in status
