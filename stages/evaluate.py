"""Stage 6: score models/model.keras on test and val → metrics/eval.json, confusion and error plots."""
from pathlib import Path

from emotion.config import load_params
from emotion.errors import one_line_errors
from emotion.evaluation import predict_proba, score, write_confusion, write_misclassified
from emotion.fileio import load_npz, write_json
from emotion.inference import load_classifier
from emotion.pipeline import StageInputs


@one_line_errors
def main():
    inputs = StageInputs("evaluate")
    params = load_params().evaluate
    classifier = load_classifier(Path("models/model.keras"))
    results, scored = {"tta": params.tta}, {}
    for split in ("test", "val"):
        data = load_npz(f"data/prepared/{split}.npz")
        proba = predict_proba(classifier, data["images"], params.batch_size, params.tta, params.tta_crop)
        results[split] = score(data["labels"], proba)
        print(f"evaluate: {split} accuracy {results[split]['accuracy']:.4f}, macro-F1 {results[split]['macro_f1']:.4f}")
        scored[split] = data, proba
    inputs.verify()  # before any output is written
    data, proba = scored["test"]
    write_confusion(data["labels"], proba, Path("plots/confusion.csv"), Path("plots/confusion.png"),
                    f"Test confusion (accuracy {results['test']['accuracy']:.3f})")
    write_misclassified(data["images"], data["labels"], proba, Path("plots/misclassified.png"), params.misclassified)
    write_json("metrics/eval.json", results)


if __name__ == "__main__":
    main()
