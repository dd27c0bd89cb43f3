"""Export the trained model to deployable formats and check they agree with the Keras original."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from emotion.data import CLASSES, IMAGE_SIZE
from emotion.errors import EmotionError
from emotion.fileio import atomic_path, file_digest, write_json
from emotion.inference import KerasClassifier, load_classifier

FILES = {"saved_model": "saved_model", "onnx": "model.onnx", "onnx_int8": "model.int8.onnx", "tflite": "model.tflite"}
KERAS_FORMAT = {"saved_model": "tf_saved_model", "onnx": "onnx", "tflite": "litert"}
# Largest |probability difference| from Keras an export may show: float formats only round; int8 quantizes
# (0.03-0.05 for the default model: metrics/export.json). Beyond these the converted graph computes something else.
PARITY_LIMIT = {"saved_model": 1e-3, "onnx": 1e-3, "tflite": 1e-3, "onnx_int8": 0.1}


def calibration_and_parity_images(val_images: np.ndarray, calibration: int, parity: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation faces for the export: the first `calibration` calibrate int8, the last `parity` compare
    every format with Keras. The two are disjoint whenever val holds both (the default's 2,902 faces
    against 512 + 256); parity needs no labels, so an overlap on a tiny val costs nothing."""
    parity = min(max(parity, 0), len(val_images))
    return val_images[:max(calibration, 0)], val_images[len(val_images) - parity:]


def export_model(model_path: Path, out_dir: Path, formats: list[str], parity_images: np.ndarray,
                 metadata: dict, calibration_images: np.ndarray | None = None, val: dict | None = None,
                 int8_max_accuracy_drop: float = 0.005, temperature: float = 1.0) -> dict:
    """Write model.keras + each format + labels.json + metadata.json into out_dir (atomically);
    return per-format parity: the max |probability difference| from Keras on the same images, and,
    given `val` (images, labels), each format's single-view val accuracy. onnx_int8 is calibrated on
    `calibration_images` (validation data: never the test split) and must not lose more than
    `int8_max_accuracy_drop` of Keras's val accuracy. A `temperature` (fitted on val by the evaluate
    stage) is folded into the final layer first, so every format returns calibrated probabilities."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        with_temperature(KerasClassifier(model_path).model, temperature).save(tmp / "model.keras")
        reference = KerasClassifier(tmp / "model.keras")
        expected = reference.predict_proba(parity_images)
        report = {"keras": {"val_accuracy": _accuracy(reference, val)}} if val else {}
        for fmt in sorted(formats, key=list(FILES).index):  # onnx_int8 is made from the onnx file
            target = tmp / FILES[fmt]
            if fmt == "onnx_int8":
                quantize_onnx(reference.model, tmp / FILES["onnx"], target, calibration_images)
            else:
                reference.model.export(str(target), format=KERAS_FORMAT[fmt], verbose=False)
            got = load_classifier(target).predict_proba(parity_images)
            report[fmt] = {"max_abs_diff": float(np.abs(got - expected).max()),
                           "argmax_agreement": float((got.argmax(1) == expected.argmax(1)).mean()),
                           "size_bytes": _size(target)}
            print(f"export: {fmt:12s} max |Δp| = {report[fmt]['max_abs_diff']:.2e}", flush=True)
            if report[fmt]["max_abs_diff"] > PARITY_LIMIT[fmt]:
                raise EmotionError(f"{out_dir}: the {fmt} export disagrees with {model_path.name} by up to "
                                   f"{report[fmt]['max_abs_diff']:.3g} in probability (limit {PARITY_LIMIT[fmt]:g}), "
                                   f"so nothing was written; drop {fmt} from export.formats and report the model")
            if val:
                report[fmt]["val_accuracy"] = _accuracy(load_classifier(target), val)
                if fmt == "onnx_int8":  # float formats only round, and parity above already bounds them
                    _check_accuracy(fmt, report, int8_max_accuracy_drop, out_dir)
        write_json(tmp / "labels.json", list(CLASSES))
        write_json(tmp / "metadata.json", {**metadata, "formats": {f: FILES[f] for f in formats},
                                           "temperature": temperature, "parity": report, **input_spec()})
    return report


def with_temperature(model, temperature: float):
    """A copy of `model` whose final softmax layer ("probabilities") sees its logits divided by T:
    the same predicted classes, probabilities softened (T > 1) or sharpened (T < 1)."""
    import keras

    calibrated = keras.models.clone_model(model)
    calibrated.set_weights(model.get_weights())
    layer = calibrated.get_layer("probabilities")
    layer.set_weights([weights / temperature for weights in layer.get_weights()])
    return calibrated


def _accuracy(classifier, data: dict) -> float:
    return float((classifier.predict_proba(data["images"]).argmax(1) == data["labels"]).mean())


def _check_accuracy(fmt: str, report: dict, max_drop: float, out_dir: Path) -> None:
    drop = report["keras"]["val_accuracy"] - report[fmt]["val_accuracy"]
    print(f"export: {fmt:12s} val accuracy {report[fmt]['val_accuracy']:.4f} "
          f"(Keras {report['keras']['val_accuracy']:.4f})", flush=True)
    if drop > max_drop:
        raise EmotionError(f"{out_dir}: the {fmt} export loses {drop * 100:.2f} points of val accuracy against Keras "
                           f"(limit {max_drop * 100:g}, export.int8_max_accuracy_drop), so nothing was written; "
                           f"drop {fmt} from export.formats or raise export.calibration_images")


def quantize_onnx(model, fp32_path: Path, dest: Path, calibration_images: np.ndarray | None) -> None:
    """Static int8 ONNX (QDQ, per-channel weights, min-max calibration). metrics/runtimes.json records its
    speed and val accuracy against the float formats; `export_model` rejects it if it loses val accuracy."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration_images is None or not len(calibration_images):
        raise ValueError("onnx_int8 export needs calibration images")
    if not fp32_path.exists():
        model.export(str(fp32_path), format="onnx", verbose=False)
    import onnx

    graph = onnx.load(str(fp32_path)).graph
    input_name = graph.input[0].name
    softmax = [node.name for node in graph.node if node.op_type == "Softmax"]  # keep probabilities exact
    batches = [{input_name: calibration_images[i:i + 32, ..., None].astype(np.float32)}
               for i in range(0, len(calibration_images), 32)]

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.items = iter(batches)

        def get_next(self):
            return next(self.items, None)

    prepared = dest.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(str(prepared), str(dest), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=softmax)
    prepared.unlink()


def input_spec() -> dict:
    return {
        "input": {"name": "image", "shape": [None, IMAGE_SIZE, IMAGE_SIZE, 1], "dtype": "float32",
                  "range": [0, 255]},
        "output": {"shape": [None, len(CLASSES)], "meaning": "softmax probabilities in class order"},
        "class_order": list(CLASSES),
        "preprocessing": ("grayscale (PIL convert('L'); alpha composited on white), resize to "
                          f"{IMAGE_SIZE}x{IMAGE_SIZE} bilinear, raw grey levels 0-255 as float32; "
                          "scaling to 0-1 is inside the model"),
    }


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
