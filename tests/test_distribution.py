"""Data-parallel training with Keras's distribution API on the JAX backend, proved on CPU: XLA can
split the host into two devices, and one process trains the same model on one and on two of them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, skip_or_fail
from emotion.config import load_params
from emotion.errors import EmotionError
from emotion import training

SCRIPT = """
import dataclasses, faulthandler, json, sys
faulthandler.dump_traceback_later(float(sys.argv[3]), exit=True)  # a hang ends with its Python stack, not a kill
import jax, keras, numpy as np
from emotion import models
from emotion.config import load_params
from emotion.training import train

shardings = []
crop_call = models.CropWindow.call
# records how the training batch is laid out across devices (recompute_bn is off below: its pass after
# training calls the model eagerly, on one device, and would show up here as an unsplit batch)
def probe(self, images, training=False):
    if training:
        jax.debug.inspect_array_sharding(images, callback=lambda s: shardings.append(s))
    return crop_call(self, images, training)
models.CropWindow.call = probe

class Live:
    def __init__(self): self.loss = []
    def log_metric(self, name, value, plot=True):
        if name == "train/loss": self.loss.append(value)
    def next_step(self): pass

base = load_params(sys.argv[2]).train
rng = np.random.default_rng(0)
data = {"images": rng.integers(0, 256, (128, 48, 48), dtype=np.uint8), "labels": np.arange(128) % 7}
val = {"images": rng.integers(0, 256, (35, 48, 48), dtype=np.uint8), "labels": np.arange(35) % 7}
result = {"devices_seen": len(jax.devices())}
for devices in (1, 2):
    shardings.clear()
    params = dataclasses.replace(base, model="cnn_small", width=8, epochs=3, batch_size=32, devices=devices,
                                 precision="float32", class_weight="none", recompute_bn=False,
                                 augment=dataclasses.replace(base.augment, erasing=0.0))
    live = Live()
    model, summary = train(params, data, val, live, f"{sys.argv[1]}/state{devices}")
    kernel = next(w for w in model.weights if "kernel" in w.path)
    result[devices] = {"loss": live.loss, "summary_devices": summary["devices"],
                       "batch_on_devices": sorted({s.num_devices for s in shardings}),
                       "batch_replicated": any(s.is_fully_replicated for s in shardings)}
# the batch-norm pass and its val scoring under the two-device distribution (35 val images: padded to split)
from emotion.training import keep_recomputed_batchnorm_if_better
result["recomputed"] = keep_recomputed_batchnorm_if_better(model, data, val, devices=2)
print(json.dumps(result))
"""


def test_two_devices_follow_one_devices_loss_curve_with_the_batch_split_between_them(tmp_path):
    try:
        import jax  # noqa: F401
    except ImportError:
        skip_or_fail("jax is not installed (it is in requirements.txt)")
    script = tmp_path / "data_parallel.py"
    script.write_text(SCRIPT)
    # On a loaded 2-core host one device's thread can wait minutes for the other at an all-reduce; XLA's
    # default is to abort after 40 s, so allow several minutes. XLA's multi-threaded Eigen pool on CPU has
    # been seen to wedge in CI (one device never reached the all-reduce in 10 minutes): the tiny model runs its
    # ops single-threaded instead, which is also faster here (62 s against 77-89 s a run).
    flags = ["--xla_force_host_platform_device_count=2", "--xla_cpu_multi_thread_eigen=false",
             "--xla_cpu_collective_call_terminate_timeout_seconds=400", "--xla_cpu_collective_timeout_seconds=400",
             "--xla_cpu_collective_call_warn_stuck_timeout_seconds=120"]
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": " ".join(flags)}
    for attempt in (1, 2):  # a second try only after XLA's own stuck-rendezvous report (an upstream hang)
        run = subprocess.run([sys.executable, str(script), str(tmp_path / f"try{attempt}"), str(REPO / "params.yaml"),
                              "420"], capture_output=True, text=True, env=env, timeout=480)
        if run.returncode == 0 or "may be stuck" not in run.stderr:
            break
        print(f"attempt {attempt}: XLA reported a stuck rendezvous; stderr tail:\n{run.stderr[-1500:]}")
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    one, two = result["1"], result["2"]
    assert result["devices_seen"] == 2
    assert one["summary_devices"] == 1 and two["summary_devices"] == 2
    assert one["batch_on_devices"] == [1] and two["batch_on_devices"] == [2] and not two["batch_replicated"]
    # Same global batch, seed and order: only the order of floating-point sums differs between the two.
    assert len(one["loss"]) == len(two["loss"]) == 3
    assert one["loss"] == pytest.approx(two["loss"], rel=1e-3)
    assert set(result["recomputed"]) == {"batchnorm", "val_accuracy_bn_trained", "val_accuracy_bn_recomputed"}


def test_more_devices_than_present_names_what_exists(monkeypatch):
    monkeypatch.setattr(training.keras.distribution, "list_devices", lambda: ["cpu:0"])
    with pytest.raises(EmotionError, match=r"'train.devices' is 3 but this machine has 1 \(cpu:0\)"):
        training.use_devices(3)


def test_several_devices_need_the_jax_backend(monkeypatch):
    monkeypatch.setattr(training.keras.distribution, "list_devices", lambda: ["gpu:0", "gpu:1"])
    with pytest.raises(EmotionError, match="needs the JAX backend"):
        training.use_devices("auto", backend="tensorflow")
    assert training.use_devices(1, backend="tensorflow") == 1


def test_several_hosts_without_a_coordinator_stop_in_one_line(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.delenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", raising=False)
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    with pytest.raises(EmotionError, match="KERAS_DISTRIBUTION_JOB_ADDRESSES is not set"):
        training.use_devices("auto")


def test_several_hosts_are_joined_once_and_before_any_device_is_queried(monkeypatch):
    """The run fingerprint asks for devices and precision before `train` does; a second
    `keras.distribution.initialize`, or a device query before the first, would stop a multi-host run."""
    calls = []
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "2")
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "10.0.0.1:1234")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    monkeypatch.setattr(training, "_hosts_joined", False)
    monkeypatch.setattr(training.keras.distribution, "initialize", lambda: calls.append("join"))
    monkeypatch.setattr(training.keras.distribution, "list_devices", lambda: calls.append("devices") or ["cpu:0"])
    training.run_fingerprint("inputs", load_params(REPO / "params.yaml").train)
    training.use_devices("auto")
    assert calls[0] == "join" and calls.count("join") == 1 and "devices" in calls
