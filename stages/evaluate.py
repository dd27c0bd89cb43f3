"""Stage 6: score models/model.keras on test and val → metrics/eval.json, confusion and error plots.
Also the single view the apps run: its calibration (a temperature fitted on val, which the export stage
folds into every exported model; ECE/NLL before and after; a reliability diagram) and its test accuracy
under webcam and phone corruptions → metrics/robustness.json. And a label audit (cleanlab, on the
pipeline's out-of-sample probabilities for val and test) → metrics/label_audit.json, plots/label_issues.*"""
from pathlib import Path

from emotion.audit import audit_split, plot_label_issues, summary, write_label_issues
from emotion.calibration import calibration_report, choose_temperature, write_reliability
from emotion.config import load_params
from emotion.errors import one_line_errors
from emotion.evaluation import predict_proba, score, write_confusion, write_misclassified
from emotion.fileio import atomic_path, load_npz, write_json
from emotion.inference import load_classifier
from emotion.pipeline import StageInputs
from emotion.robustness import plot_robustness, robustness_report


@one_line_errors
def main():
    inputs = StageInputs("evaluate")
    params = load_params().evaluate
    classifier = load_classifier(Path("models/model.keras"))
    results, scored, single = {"tta": params.tta}, {}, {}
    for split in ("test", "val"):
        data = load_npz(f"data/prepared/{split}.npz")
        proba = predict_proba(classifier, data["images"], params.batch_size, params.tta, params.tta_crop)
        results[split] = score(data["labels"], proba)
        single[split] = predict_proba(classifier, data["images"], params.batch_size)  # what the apps run
        print(f"evaluate: {split} accuracy {results[split]['accuracy']:.4f}, macro-F1 {results[split]['macro_f1']:.4f}")
        scored[split] = data, proba
    temperature, why = choose_temperature(scored["val"][0]["labels"], single["val"])
    results["single_view"] = {split: {k: v for k, v in score(scored[split][0]["labels"], single[split]).items()
                                      if k in ("accuracy", "macro_f1")} for split in single}
    results["calibration"] = {"temperature": temperature, "fitted_on": "val, single view", "choice": why,
                              **{split: calibration_report(scored[split][0]["labels"], single[split], temperature)
                                 for split in single}}
    print(f"evaluate: temperature {temperature:.3f}; test ECE {results['calibration']['test']['ece']:.4f} → "
          f"{results['calibration']['test']['ece_scaled']:.4f}")
    data, proba = scored["test"]
    robustness = robustness_report(lambda x: predict_proba(classifier, x, params.batch_size), data["images"],
                                   data["labels"])
    print(f"evaluate: test single view {robustness['clean']:.4f}, under corruptions {robustness['mean_corrupted']:.4f}")
    audits = {split: audit_split(scored[split][0]["labels"], scored[split][1]) for split in scored}
    audit = {split: summary(table) for split, table in audits.items()}
    print(f"evaluate: label audit flags {audit['test']['flagged']} test images; test accuracy without them "
          f"{audit['test']['accuracy_without_flagged']:.4f} (reported, not dropped)")
    inputs.verify()  # before any output is written
    write_confusion(data["labels"], proba, Path("plots/confusion.csv"), Path("plots/confusion.png"),
                    f"Test confusion (accuracy {results['test']['accuracy']:.3f})")
    write_misclassified(data["images"], data["labels"], proba, Path("plots/misclassified.png"), params.misclassified)
    write_reliability(data["labels"], single["test"], temperature, Path("plots/reliability.csv"),
                      Path("plots/reliability.png"), "Test reliability, single view")
    with atomic_path("plots/robustness.csv") as tmp:
        tmp.write_text("corruption,accuracy\n" + "".join(f"{k},{v}\n" for k, v in robustness["accuracy"].items()))
    plot_robustness(robustness, Path("plots/robustness.png"), "Test accuracy under corruption (single view)")
    write_json("metrics/robustness.json", robustness)
    write_label_issues(audits, {split: scored[split][0]["ids"] for split in scored}, Path("plots/label_issues.csv"))
    plot_label_issues(data["images"], audits["test"], Path("plots/label_issues.png"))
    write_json("metrics/label_audit.json", {"method": "cleanlab find_label_issues on the pipeline's probabilities "
                                            f"(tta {params.tta}); val chose the checkpoint, test is unseen", **audit})
    write_json("metrics/eval.json", results)

if __name__ == "__main__":
    main()
