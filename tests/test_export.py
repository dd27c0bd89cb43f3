import dataclasses
import json

import numpy as np
import pytest

from emotion import export
from emotion.data import CLASSES
from emotion.errors import EmotionError
from emotion.export import export_model
from emotion.inference import KerasClassifier
from emotion.inference import load_classifier
from emotion.models import build_model


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory, tiny_train):
    import keras

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_model(dataclasses.replace(tiny_train, model="cnn_small", width=4)).save(path)
    return path


@pytest.fixture(scope="module")
def exported(keras_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "export"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 48, 48), dtype=np.uint8)
    calibration = rng.integers(0, 256, (64, 48, 48), dtype=np.uint8)
    report = export_model(keras_model, out, ["tflite", "onnx_int8", "saved_model", "onnx"], images,
                          {"model": "cnn_small"}, calibration_images=calibration)
    return out, report, images


def test_every_format_agrees_with_keras(exported):
    out, report, _ = exported
    assert set(report) == {"saved_model", "onnx", "onnx_int8", "tflite"}
    for fmt in ("saved_model", "onnx", "tflite"):
        assert report[fmt]["max_abs_diff"] < 1e-4, fmt
        assert report[fmt]["argmax_agreement"] == 1.0 and report[fmt]["size_bytes"] > 0
    # int8 rounds weights and activations: close, not equal
    assert 0 < report["onnx_int8"]["max_abs_diff"] < 0.05


def test_export_that_disagrees_with_keras_writes_nothing(keras_model, tmp_path, monkeypatch):
    real = export.load_classifier

    def disagreeing(path):
        classifier = real(path)
        run = classifier.predict_proba
        classifier.predict_proba = lambda images: (run(images) + np.eye(len(CLASSES))[0]) / 2
        return classifier

    monkeypatch.setattr(export, "load_classifier", disagreeing)
    images = np.random.default_rng(0).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    out = tmp_path / "export"
    with pytest.raises(EmotionError, match=r"the onnx export disagrees with model.keras by up to .*drop onnx from"):
        export_model(keras_model, out, ["onnx"], images, {"model": "cnn_small"})
    assert not out.exists() and not list(tmp_path.glob(".export.*"))


def test_int8_export_reports_val_accuracy_and_fails_past_the_allowed_drop(keras_model, tmp_path):
    rng = np.random.default_rng(1)
    val = {"images": rng.integers(0, 256, (40, 48, 48), dtype=np.uint8), "labels": rng.integers(0, 7, 40)}
    images = val["images"][:8]
    report = export_model(keras_model, tmp_path / "ok", ["onnx_int8"], images, {"model": "cnn_small"},
                          calibration_images=val["images"], val=val, int8_max_accuracy_drop=1.0)
    keras_accuracy = (KerasClassifier(keras_model).predict_proba(val["images"]).argmax(1) == val["labels"]).mean()
    assert report["keras"]["val_accuracy"] == pytest.approx(keras_accuracy)
    assert 0 <= report["onnx_int8"]["val_accuracy"] <= 1
    # a limit below the drop actually measured (here: any drop, even none) refuses the export
    limit = report["keras"]["val_accuracy"] - report["onnx_int8"]["val_accuracy"] - 0.01
    with pytest.raises(EmotionError, match=r"onnx_int8 export loses .* points of val accuracy"):
        export_model(keras_model, tmp_path / "strict", ["onnx_int8"], images, {"model": "cnn_small"},
                     calibration_images=val["images"], val=val, int8_max_accuracy_drop=limit)
    assert not (tmp_path / "strict").exists()


def test_export_folder_has_labels_and_metadata(exported):
    out, _, _ = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.json", "metadata.json", "model.int8.onnx", "model.keras", "model.onnx", "model.tflite", "saved_model"]
    assert json.loads((out / "labels.json").read_text()) == list(CLASSES)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["class_order"] == list(CLASSES) and meta["input"]["shape"] == [None, 48, 48, 1]
    assert "parity" in meta and meta["model"] == "cnn_small"


@pytest.mark.parametrize("name, runtime, loaded", [
    ("model.onnx", "onnxruntime", "model.onnx"), ("model.int8.onnx", "onnxruntime", "model.int8.onnx"),
    ("model.tflite", "litert", "model.tflite"), ("model.keras", "keras", "model.keras"),
    ("saved_model", "tf_saved_model", "saved_model"), (".", "onnxruntime", "model.int8.onnx")])
def test_load_classifier_picks_runtime(exported, name, runtime, loaded):
    out, _, images = exported
    classifier = load_classifier(out / name)
    assert classifier.runtime == runtime and classifier.path.name == loaded
    proba = classifier.predict_proba(images, batch_size=3)  # batches of uneven size
    assert proba.shape == (8, 7)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)


def test_missing_or_unknown_model_files(tmp_path):
    with pytest.raises(EmotionError, match="missing.onnx: model not found; run `dvc repro`"):
        load_classifier(tmp_path / "missing.onnx")
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(EmotionError, match="unknown model type '.pt'"):
        load_classifier(tmp_path / "model.pt")
    (tmp_path / "broken.onnx").write_bytes(b"not onnx")
    with pytest.raises(EmotionError, match="broken.onnx: could not load model"):
        load_classifier(tmp_path / "broken.onnx")
    (tmp_path / "pointer.keras").write_text("version https://git-lfs.github.com/spec/v1\nsize 123\n")
    with pytest.raises(EmotionError, match=r"pointer.keras: not a Keras model \(a .keras file is a zip archive"):
        load_classifier(tmp_path / "pointer.keras")


@pytest.mark.parametrize("name, resize", [("resnet", 48), ("mobilenet", 48), ("vgg16", 32), ("vgg", 40)])
def test_zoo_models_export_with_parity(tiny_train, tmp_path, name, resize):
    """Residual adds, depthwise convs, in-model resizing and ImageNet scaling all survive conversion.
    vgg at 40: batch norm after in-model resizing once ran in training mode in exported graphs."""
    path = tmp_path / "model.keras"
    build_model(dataclasses.replace(tiny_train, model=name, width=8, resize=resize)).save(path)
    images = np.random.default_rng(1).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    report = export_model(path, tmp_path / "export", ["saved_model", "onnx"], images, {"model": name})
    for fmt in ("saved_model", "onnx"):
        assert report[fmt]["max_abs_diff"] < 1e-4 and report[fmt]["argmax_agreement"] == 1.0, fmt


def test_temperature_is_folded_into_every_export(keras_model, tmp_path):
    from emotion.calibration import apply_temperature

    images = np.random.default_rng(2).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    out = tmp_path / "export"
    export_model(keras_model, out, ["onnx", "tflite"], images, {"model": "cnn_small"}, temperature=2.5)
    expected = apply_temperature(KerasClassifier(keras_model).predict_proba(images), 2.5)
    for name in ("model.keras", "model.onnx", "model.tflite"):
        np.testing.assert_allclose(load_classifier(out / name).predict_proba(images), expected, atol=1e-5)
    assert json.loads((out / "metadata.json").read_text())["temperature"] == 2.5


def test_every_runtime_is_scored_as_the_apps_run_it(exported, keras_model):
    from emotion.evaluation import predict_proba
    from emotion.scorecard import runtime_table, score_runtimes

    out, _, _ = exported
    rng = np.random.default_rng(1)
    splits = {split: {"images": rng.integers(0, 256, (9, 48, 48), dtype=np.uint8),
                      "labels": rng.integers(0, len(CLASSES), 9)} for split in ("test", "val")}
    runtimes = score_runtimes(out, splits, "tencrop", 0.833, batch_size=4)
    assert set(runtimes) == {"model.int8.onnx", "model.onnx", "model.tflite", "model.keras", "saved_model"}
    for views in runtimes.values():
        assert set(views) == {"none", "tencrop"}
        assert all(row["faces_per_s"] > 0 and set(row) == {"test", "val", "faces_per_s"} for row in views.values())
    # the numbers are those of the file itself, under the views named
    onnx = load_classifier(out / "model.onnx")
    expected = (predict_proba(onnx, splits["val"]["images"], 4, "tencrop").argmax(1) == splits["val"]["labels"]).mean()
    assert runtimes["model.onnx"]["tencrop"]["val"]["accuracy"] == pytest.approx(expected)
    table = runtime_table(runtimes)
    assert len(table) == 2 + 2 * 5 and table[2].startswith("| model.int8.onnx | none |")


def test_parity_images_are_val_faces_the_int8_calibration_did_not_see():
    val = np.arange(3000)
    calibration, parity = export.calibration_and_parity_images(val, 512, 256)
    assert calibration.tolist() == list(range(512))
    assert parity.tolist() == list(range(2744, 3000))
    tiny = np.arange(10)  # too few to keep them apart: parity takes what there is, calibration too
    calibration, parity = export.calibration_and_parity_images(tiny, 512, 256)
    assert len(calibration) == len(parity) == 10
    assert len(export.calibration_and_parity_images(tiny, 4, 0)[1]) == 0
