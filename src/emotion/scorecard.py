"""Everything the pipeline reports about a trained model, as the evaluate and export stages run it:
headline scores with the pipeline's test-time views, the single view, calibration, robustness and a
label audit (`evaluate_model`, written by `write_scorecard`), and each exported runtime scored the
way the apps run it, with its speed (`score_runtimes`)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion.audit import audit_split, plot_label_issues, summary, write_label_issues
from emotion.calibration import calibration_report, choose_temperature, write_reliability
from emotion.config import EvaluateParams
from emotion.evaluation import predict_proba, score, write_confusion, write_misclassified
from emotion.fileio import atomic_path, write_json
from emotion.inference import RUNTIME_ORDER, load_classifier
from emotion.robustness import plot_robustness, robustness_report


@dataclass
class Scorecard:
    results: dict  # metrics/eval.json
    proba: dict[str, np.ndarray]  # per split, with the pipeline's test-time views
    single: dict[str, np.ndarray]  # per split, one view
    robustness: dict
    audits: dict


def evaluate_model(classifier, splits: dict[str, dict], params: EvaluateParams) -> Scorecard:
    """Score `classifier` on each split ({"test": arrays, "val": arrays}); val alone chooses the
    temperature, and the robustness report and label audit are made on test."""
    results, proba, single = {"tta": params.tta}, {}, {}
    for split, data in splits.items():
        proba[split] = predict_proba(classifier, data["images"], params.batch_size, params.tta, params.tta_crop)
        single[split] = predict_proba(classifier, data["images"], params.batch_size)  # the apps' `--tta none`
        results[split] = score(data["labels"], proba[split])
        print(f"evaluate: {split} accuracy {results[split]['accuracy']:.4f}, "
              f"macro-F1 {results[split]['macro_f1']:.4f}", flush=True)
    labels = {split: data["labels"] for split, data in splits.items()}
    temperature, why = choose_temperature(labels["val"], single["val"])
    results["single_view"] = {split: _headline(score(labels[split], single[split])) for split in splits}
    results["calibration"] = {"temperature": temperature, "fitted_on": "val, single view", "choice": why,
                              **{split: calibration_report(labels[split], single[split], temperature)
                                 for split in splits}}
    print(f"evaluate: temperature {temperature:.3f}; test ECE {results['calibration']['test']['ece']:.4f} → "
          f"{results['calibration']['test']['ece_scaled']:.4f}", flush=True)
    robustness = robustness_report(lambda x: predict_proba(classifier, x, params.batch_size),
                                   splits["test"]["images"], labels["test"])
    print(f"evaluate: test single view {robustness['clean']:.4f}, under corruptions "
          f"{robustness['mean_corrupted']:.4f}", flush=True)
    audits = {split: audit_split(labels[split], proba[split]) for split in splits}
    test_audit = summary(audits["test"])
    print(f"evaluate: label audit flags {test_audit['flagged']} test images; test accuracy without them "
          f"{test_audit['accuracy_without_flagged']:.4f} (reported, not dropped)", flush=True)
    return Scorecard(results, proba, single, robustness, audits)


def write_scorecard(card: Scorecard, splits: dict[str, dict], params: EvaluateParams, metrics: Path,
                    plots: Path) -> None:
    """metrics/{eval,robustness,label_audit}.json and the plots behind them."""
    test, results = splits["test"], card.results
    write_confusion(test["labels"], card.proba["test"], plots / "confusion.csv", plots / "confusion.png",
                    f"Test confusion (accuracy {results['test']['accuracy']:.3f})")
    write_misclassified(test["images"], test["labels"], card.proba["test"], plots / "misclassified.png",
                        params.misclassified)
    write_reliability(test["labels"], card.single["test"], results["calibration"]["temperature"],
                      plots / "reliability.csv", plots / "reliability.png", "Test reliability, single view")
    with atomic_path(plots / "robustness.csv") as tmp:
        tmp.write_text("corruption,accuracy\n" + "".join(f"{k},{v}\n" for k, v in card.robustness["accuracy"].items()))
    plot_robustness(card.robustness, plots / "robustness.png", "Test accuracy under corruption (single view)")
    write_json(metrics / "robustness.json", card.robustness)
    write_label_issues(card.audits, {split: data["ids"] for split, data in splits.items()}, plots / "label_issues.csv")
    plot_label_issues(test["images"], card.audits["test"], plots / "label_issues.png")
    audit = {split: summary(table) for split, table in card.audits.items()}
    write_json(metrics / "label_audit.json", {"method": "cleanlab find_label_issues on the pipeline's probabilities "
                                              f"(tta {params.tta}); val chose the checkpoint, test is unseen", **audit})
    write_json(metrics / "eval.json", results)


def score_runtimes(export_dir: Path, splits: dict[str, dict], tta: str, crop: float, batch_size: int) -> dict:
    """Every runtime in an export folder that the apps can load, scored as they run it: one view and
    `tta`, accuracy and macro-F1 per split, and faces/s over all splits (a face = all of its views,
    `batch_size` faces per call, on this machine's cores)."""
    report = {}
    for name in RUNTIME_ORDER:
        if not (export_dir / name).exists():
            continue
        classifier = load_classifier(export_dir / name)
        report[name] = {}
        for view in dict.fromkeys(("none", tta)):
            row, faces, seconds = {}, 0, 0.0
            for split, data in splits.items():
                start = time.perf_counter()
                proba = predict_proba(classifier, data["images"], batch_size, view, crop)
                seconds += time.perf_counter() - start
                faces += len(data["images"])
                row[split] = _headline(score(data["labels"], proba))
            report[name][view] = {**row, "faces_per_s": round(faces / seconds, 1)}
            print(f"export: {name:16s} {view:8s} " + ", ".join(f"{s} {r['accuracy']:.4f}" for s, r in row.items())
                  + f", {faces / seconds:,.0f} faces/s", flush=True)
    return report


def runtime_table(runtimes: dict, split: str = "test") -> list[str]:
    """Markdown rows: each runtime and view with its accuracy, macro-F1 and faces/s."""
    lines = [f"| runtime | view | {split} accuracy | {split} macro-F1 | faces/s |", "|---|---|---:|---:|---:|"]
    for name, views in runtimes.items():
        for view, row in views.items():
            lines.append(f"| {name} | {view} | {row[split]['accuracy']:.2%} | {row[split]['macro_f1']:.3f} | "
                         f"{row['faces_per_s']:,.0f} |")
    return lines


def _headline(scores: dict) -> dict:
    return {key: scores[key] for key in ("accuracy", "macro_f1")}
