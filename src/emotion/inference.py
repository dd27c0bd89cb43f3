"""Load any model the project produces (.keras, SavedModel, ONNX, TFLite, or an export folder) behind
one interface: predict_proba(uint8 N×48×48) → float32 N×7."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from emotion.errors import EmotionError

# Fastest first: the order in which an export folder's formats are tried. The export stage keeps the int8
# model only if it holds Keras's val accuracy; metrics/runtimes.json records each format's speed and accuracy.
RUNTIME_ORDER = ("model.int8.onnx", "model.onnx", "model.tflite", "model.keras", "saved_model")


def _as_input(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return images.astype(np.float32)


class _Batched:
    """Subclasses implement _run(float32 N×H×W×1) for one batch."""

    def predict_proba(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        x = _as_input(images)
        if len(x) == 0:
            return np.zeros((0, 7), dtype=np.float32)
        return np.concatenate([self._run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


class KerasClassifier(_Batched):
    runtime = "keras"

    def __init__(self, path: Path):
        import keras

        import emotion.models  # noqa: F401  registers the custom layers a saved model may use

        if not zipfile.is_zipfile(path):  # Keras would call it "File not found"
            raise EmotionError(f"{path}: not a Keras model (a .keras file is a zip archive; this may be a partial "
                               "download or a Git LFS pointer): `dvc pull` it or train it again with `dvc repro`")
        self.model = keras.models.load_model(path, compile=False)

    def _run(self, x):
        return np.asarray(self.model(x, training=False), dtype=np.float32)


class SavedModelClassifier(_Batched):
    runtime = "tf_saved_model"

    def __init__(self, path: Path):
        import keras

        self.layer = keras.layers.TFSMLayer(str(path), call_endpoint="serve")

    def _run(self, x):
        return np.asarray(self.layer(x), dtype=np.float32)


class OnnxClassifier(_Batched):
    runtime = "onnxruntime"

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Idle worker threads otherwise spin after each run, starving face detection on small CPUs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=ort.get_available_providers())
        self.input_name = self.session.get_inputs()[0].name

    def _run(self, x):
        return self.session.run(None, {self.input_name: x})[0]


class LiteRTClassifier(_Batched):
    runtime = "litert"

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path))
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.batch = None

    def _run(self, x):
        if self.batch != len(x):
            self.interpreter.resize_tensor_input(self.input, list(x.shape))
            self.interpreter.allocate_tensors()
            self.batch = len(x)
        self.interpreter.set_tensor(self.input, x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output).copy()


def load_classifier(path: str | Path):
    """Pick the runtime from the file type; for an export folder, the fastest format that loads."""
    path = Path(path)
    if not path.exists():
        from emotion.storage import pull_missing

        hint = pull_missing(path)
        if hint:
            raise EmotionError(f"{path}: model not found; {hint}")
    check_labels(path)
    if path.is_dir() and not (path / "saved_model.pb").exists():
        errors = []
        for name in RUNTIME_ORDER:
            if (path / name).exists():
                try:
                    return load_classifier(path / name)
                except ImportError as err:  # runtime not installed: try the next format
                    errors.append(f"{name}: {err}")
        raise EmotionError(f"{path}: no loadable model (.onnx, .tflite, .keras or saved_model/) inside"
                           + (f" ({'; '.join(errors)})" if errors else ""))
    if path.suffix == ".json":
        from emotion.ensemble import load_ensemble

        return load_ensemble(path)
    loaders = {".keras": KerasClassifier, ".onnx": OnnxClassifier, ".tflite": LiteRTClassifier}
    loader = SavedModelClassifier if path.is_dir() else loaders.get(path.suffix)
    if loader is None:
        raise EmotionError(f"{path}: unknown model type '{path.suffix}'; use .keras, .onnx, .tflite, a folder "
                           "or an ensemble .json")
    try:
        classifier = loader(path)
        classifier.path = path  # which file an export folder resolved to
        return classifier
    except ImportError:
        raise
    except Exception as err:
        raise EmotionError(f"{path}: could not load model ({str(err).splitlines()[0][:160]})") from None


def check_labels(path: Path) -> None:
    """Stop in one line if the labels.json beside a model (or in its export folder) lists other classes
    than ours: its probabilities would be read in the wrong order."""
    from emotion.data import CLASSES

    exported = path.is_dir() and not (path / "saved_model.pb").exists()
    labels = read_labels(path if exported else path.parent)
    if labels is not None and list(labels) != list(CLASSES):
        raise EmotionError(f"{path}: its labels.json lists {labels}, not this project's classes {list(CLASSES)}; "
                           "re-export the model with this project, or use one trained on these classes")


def read_labels(export_dir: Path) -> list[str] | None:
    labels = Path(export_dir) / "labels.json"
    return json.loads(labels.read_text()) if labels.exists() else None
