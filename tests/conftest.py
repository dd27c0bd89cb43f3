import dataclasses
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from emotion.config import load_params  # noqa: E402
from emotion.synthetic import write_fake_fer, write_fake_fer_zip  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params():
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def tiny_train(params):
    """Train params small enough to fit in seconds."""
    return dataclasses.replace(params.train, model="cnn_small", width=8, epochs=2, batch_size=16,
                               precision="float32", patience=5)


@pytest.fixture
def fake_fer(tmp_path):
    return write_fake_fer(tmp_path / "fer", train_per_class=6, test_per_class=3)


@pytest.fixture
def fake_zip(tmp_path):
    return write_fake_fer_zip(tmp_path / "fer2013.zip", train_per_class=6, test_per_class=3)
