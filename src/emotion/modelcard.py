"""MODEL_CARD.md for an export: what the model is for and not for, what it was trained on, and the
measured numbers (per class, per runtime, calibration) with the exact params and data that made it.
Everything in it comes from the pipeline's own outputs; nothing is typed in by hand."""
from __future__ import annotations

from emotion.data import CLASSES
from emotion.scorecard import runtime_table

INTENDED = """\
## Intended use
- Research, teaching and prototyping of facial-expression recognition: which of seven expression
  categories a face most resembles, from a frontal or near-frontal face crop.
- Aggregate, consented analysis (e.g. the reaction of a test audience that agreed to be filmed),
  where single errors average out and a person reviews the result.

## Out of scope (misuse)
- Inferring what a person *feels*. The labels are how annotators read a face, not inner states,
  and expressions differ across people, cultures and situations.
- Any decision about a person: hiring, admission, policing, credit, insurance, medical or
  psychological assessment, lie detection, surveillance of people who have not agreed to it.
- Children, and faces far from the training distribution (profiles, heavy occlusion, very low light).

## Training data and its known biases
- FER2013 (Goodfellow et al., 2013): 48×48 greyscale face crops found by web image search for
  emotion keywords, labelled by a single annotator each. The folder layout is Kaggle's.
- The images mix posed and spontaneous expressions. Many are low quality, and a few are not faces at all.
  Exact duplicates cross the official splits, and the pipeline drops their training copies. Published
  re-annotations (FER+) disagree with roughly one label in ten.
- Classes are imbalanced: disgust has about 1.5% of the training images and happy about 25%.
- There are no demographic labels (age, gender, skin tone), so no per-group accuracy can be reported.
  Web photos under-represent many groups, and errors may well be higher for them.
"""


def model_card(metadata: dict, scores: dict, export_report: dict, params: dict, runtimes: dict | None = None,
               robustness: dict | None = None) -> str:
    """The card as Markdown, from the export's metadata, metrics/eval.json, the export report
    (per-format parity and val accuracy), each runtime scored as the apps run it
    (scorecard.score_runtimes), metrics/robustness.json and the params the pipeline ran with."""
    calibration = scores["calibration"]
    lines = [f"# Model card: {metadata['model']} facial-expression classifier", "",
             "Seven classes in this order: " + ", ".join(CLASSES) + ". Input: a 48×48 greyscale face crop "
             "(grey levels 0–255). Output: seven probabilities. The apps find faces first.", "", INTENDED,
             "## Performance", "",
             f"Headline figures use the pipeline's test-time augmentation (`{scores['tta']}`), which the apps "
             "(`emotion predict|video|serve`) run by default; `--tta none` gives the single view. Test is Kaggle's "
             "`test/` and was never used to choose anything. Val was carved from `train/` and made every choice.", "",
             "| split | view | accuracy | macro-F1 |", "|---|---|---:|---:|"]
    for split in ("test", "val"):
        lines.append(f"| {split} | {scores['tta']} | {scores[split]['accuracy']:.2%} | {scores[split]['macro_f1']:.3f} |")
        single = scores["single_view"][split]
        lines.append(f"| {split} | single (`--tta none`) | {single['accuracy']:.2%} | {single['macro_f1']:.3f} |")
    lines += ["", f"Per class on test ({scores['tta']}):", "", "| class | precision | recall | F1 | images |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |"
              for name, c in scores["test"]["per_class"].items()]
    if runtimes:
        lines += ["", "Per runtime, on test, as the apps run each file of the export (faces/s: batches of 256 on "
                  "the machine that ran the pipeline):", "", *runtime_table(runtimes)]
    lines += ["", "Per runtime, on val (single view), against the Keras model they were exported from:", "",
              "| runtime | val accuracy | max \\|Δp\\| vs Keras (256 test images) | size |", "|---|---:|---:|---:|"]
    for fmt, row in export_report.items():
        parity = f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "reference"
        size = f"{row['size_bytes'] / 1e6:.1f} MB" if "size_bytes" in row else ""
        accuracy = f"{row['val_accuracy']:.2%}" if "val_accuracy" in row else ""
        lines.append(f"| {fmt} | {accuracy} | {parity} | {size} |")
    lines += ["", "## Calibration", "",
              f"Every export divides the final logits by the temperature **{calibration['temperature']:.3f}**, "
              f"chosen on val ({calibration.get('choice', 'fitted by minimising NLL')}), so the probabilities the "
              "apps return are the calibrated ones. ECE is the expected calibration error over 15 bins, and lower "
              "is better.", "",
              "| split | ECE before | ECE after | NLL before | NLL after |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {split} | {calibration[split]['ece']:.4f} | {calibration[split]['ece_scaled']:.4f} | "
              f"{calibration[split]['nll']:.4f} | {calibration[split]['nll_scaled']:.4f} |" for split in ("test", "val")]
    if robustness:
        lines += ["", "## Robustness", "", f"Test accuracy (single view) is {robustness['clean']:.2%} on clean images and "
                  f"{robustness['mean_corrupted']:.2%} on average under the corruptions a webcam or phone adds:", "",
                  "| corruption | accuracy | change |", "|---|---:|---:|"]
        lines += [f"| {name} | {value:.2%} | {(value - robustness['clean']) * 100:+.1f} |"
                  for name, value in robustness["accuracy"].items()]
    lines += ["", "## Provenance", "", "Data (sha256 of the prepared arrays):", ""]
    lines += [f"- {split}: `{digest}`" for split, digest in metadata["data_sha256"].items()]
    lines += ["", "Parameters (`params.yaml` as the pipeline ran):", "", "```yaml", *_yaml(params), "```", ""]
    return "\n".join(lines)


def _yaml(params: dict) -> list[str]:
    import yaml

    return yaml.safe_dump(params, sort_keys=True, default_flow_style=None, width=100).splitlines()
