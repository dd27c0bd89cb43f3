from emotion.data import CLASSES
from emotion.modelcard import model_card


def test_model_card_reports_what_the_pipeline_measured():
    per_class = {name: {"precision": 0.5, "recall": 0.25 + i / 100, "f1": 0.4, "support": 10 + i}
                 for i, name in enumerate(CLASSES)}
    scores = {"tta": "tencrop", "test": {"accuracy": 0.6543, "macro_f1": 0.61, "per_class": per_class},
              "val": {"accuracy": 0.66, "macro_f1": 0.62, "per_class": per_class},
              "single_view": {"test": {"accuracy": 0.6412, "macro_f1": 0.6}, "val": {"accuracy": 0.65, "macro_f1": 0.6}},
              "calibration": {"temperature": 1.234, **{s: {"ece": 0.05, "ece_scaled": 0.0123, "nll": 1.0,
                                                           "nll_scaled": 0.9} for s in ("test", "val")}}}
    report = {"keras": {"val_accuracy": 0.65}, "onnx_int8": {"val_accuracy": 0.648, "max_abs_diff": 0.03,
                                                            "size_bytes": 1_800_000, "argmax_agreement": 0.99}}
    metadata = {"model": "vgg", "data_sha256": {"train": "aa", "val": "bb", "test": "cc"}}
    runtimes = {"model.int8.onnx": {"none": {"test": {"accuracy": 0.6401, "macro_f1": 0.611}, "faces_per_s": 2500.0},
                                    "tencrop": {"test": {"accuracy": 0.6577, "macro_f1": 0.632}, "faces_per_s": 280.4}}}
    robustness = {"clean": 0.64, "mean_corrupted": 0.55, "accuracy": {"blur_2": 0.2051, "jpeg_10": 0.6}}
    card = model_card(metadata, scores, report, {"train": {"lr": 0.002, "epochs": 32}}, runtimes, robustness)
    for expected in ("| model.int8.onnx | none | 64.01% | 0.611 | 2,500 |", "| model.int8.onnx | tencrop | 65.77% |",
                     "| blur_2 | 20.51% | -43.5 |", "55.00% on average"):
        assert expected in card, expected
    for expected in ("# Model card: vgg", "65.43%", "64.12%", "single (`--tta none`)", "| fear | 0.500 | 0.270 |",
                     "| onnx_int8 | 64.80% | 3.0e-02 | 1.8 MB |", "**1.234**", "0.0123", "- test: `cc`",
                     "lr: 0.002", "Out of scope", "no demographic labels"):
        assert expected in card, expected
