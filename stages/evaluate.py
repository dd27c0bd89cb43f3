"""Stage 6: score models/model.keras on test and val → metrics/eval.json, confusion and error plots.
Also the single view: its calibration (a temperature chosen on val, which the export stage folds into
every exported model; ECE/NLL before and after; a reliability diagram), its test accuracy under webcam
and phone corruptions → metrics/robustness.json, and a label audit (cleanlab, on the pipeline's
out-of-sample probabilities for val and test) → metrics/label_audit.json, plots/label_issues.*"""
from pathlib import Path

from emotion.config import load_params
from emotion.errors import one_line_errors
from emotion.fileio import load_npz
from emotion.inference import load_classifier
from emotion.pipeline import StageInputs
from emotion.scorecard import evaluate_model, write_scorecard


@one_line_errors
def main():
    inputs = StageInputs("evaluate")
    params = load_params().evaluate
    classifier = load_classifier(Path("models/model.keras"))
    splits = {split: load_npz(f"data/prepared/{split}.npz") for split in ("test", "val")}
    card = evaluate_model(classifier, splits, params)
    inputs.verify()  # before any output is written
    write_scorecard(card, splits, params, Path("metrics"), Path("plots"))


if __name__ == "__main__":
    main()
