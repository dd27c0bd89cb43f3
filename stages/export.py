"""Stage 7: models/model.keras, with the evaluate stage's temperature folded in → models/export/
(SavedModel, ONNX, int8 ONNX, TFLite, labels, metadata), checking every format against Keras
(probabilities and val accuracy) → metrics/export.json; every runtime scored as the apps run it
(one view and the pipeline's TTA; accuracy, macro-F1, faces/s) → metrics/runtimes.json; and
models/export/MODEL_CARD.md."""
import json
from pathlib import Path

from emotion.config import load_params, to_dict
from emotion.errors import one_line_errors
from emotion.export import calibration_and_parity_images, export_model
from emotion.fileio import file_digest, load_npz, write_json, write_text
from emotion.modelcard import model_card
from emotion.pipeline import StageInputs
from emotion.scorecard import score_runtimes


@one_line_errors
def main():
    inputs = StageInputs("export")
    params = load_params()
    test, val = load_npz("data/prepared/test.npz"), load_npz("data/prepared/val.npz")
    scores = json.loads(Path("metrics/eval.json").read_text())
    metadata = {
        "model": params.train.model,
        "metrics": {split: {k: v for k, v in scores[split].items() if k in ("accuracy", "macro_f1")}
                    for split in ("test", "val")},
        "metrics_tta": scores["tta"],
        "single_view": scores["single_view"],
        "data_sha256": {split: file_digest(f"data/prepared/{split}.npz", "sha256") for split in ("train", "val", "test")},
    }
    calibration, parity_images = calibration_and_parity_images(val["images"], params.export.calibration_images,
                                                               params.export.parity_images)
    parity = export_model(Path("models/model.keras"), Path("models/export"), params.export.formats, parity_images,
                          metadata, calibration_images=calibration, val=val,
                          int8_max_accuracy_drop=params.export.int8_max_accuracy_drop,
                          temperature=scores["calibration"]["temperature"])
    evaluate = params.evaluate
    runtimes = score_runtimes(Path("models/export"), {"test": test, "val": val}, evaluate.tta, evaluate.tta_crop,
                              evaluate.batch_size)
    robustness = json.loads(Path("metrics/robustness.json").read_text())
    write_text("models/export/MODEL_CARD.md", model_card(metadata, scores, parity, to_dict(params), runtimes, robustness))
    inputs.verify()
    write_json("metrics/export.json", parity)
    write_json("metrics/runtimes.json", runtimes)


if __name__ == "__main__":
    main()
