"""Calibrated confidence: temperature scaling (Guo et al. 2017) fitted on validation data, and the
numbers that say whether a model's probabilities can be taken at face value (ECE, NLL, reliability)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

ECE_BINS = 15
_EPS = 1e-12


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities of logits divided by T (T > 1 softens, < 1 sharpens). T = 1 gives
    proba itself, not its float round trip, so "no temperature" scores exactly as the unscaled model."""
    if temperature == 1:
        return proba
    logits = np.log(np.clip(proba, _EPS, 1)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def nll(labels: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class."""
    return float(-np.log(np.clip(proba[np.arange(len(labels)), labels], _EPS, 1)).mean())


def fit_temperature(labels: np.ndarray, proba: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises NLL on (labels, proba), or 1.0 unless it strictly lowers NLL: a
    model that learned nothing has a flat NLL curve, where the search would otherwise end at a bound.
    Fit it on validation data only."""
    result = minimize_scalar(lambda log_t: nll(labels, apply_temperature(proba, np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-6})
    fitted = float(np.exp(result.x))
    return fitted if nll(labels, apply_temperature(proba, fitted)) < nll(labels, proba) else 1.0


def choose_temperature(labels: np.ndarray, proba: np.ndarray) -> tuple[float, str]:
    """The NLL-fitted temperature if it also lowers the expected calibration error on these (validation)
    labels, else 1.0 (leave the model as it is); with the reason, for the report."""
    fitted = fit_temperature(labels, proba)
    before = expected_calibration_error(labels, proba)
    if fitted == 1.0:
        return 1.0, f"no temperature lowers val NLL, so none is applied (val ECE {before:.4f})"
    after = expected_calibration_error(labels, apply_temperature(proba, fitted))
    if after <= before:
        return fitted, f"fitted on val (NLL); val ECE {before:.4f} → {after:.4f}"
    return 1.0, (f"fitted T = {fitted:.3f} (NLL) would raise val ECE {before:.4f} → {after:.4f}, "
                 "so none is applied")


def reliability(labels: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per confidence bin (equal width over [0, 1]): mean confidence, accuracy and image count."""
    confidence, correct = proba.max(axis=1), proba.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"bin": b, "confidence": float(confidence[inside].mean()),
                         "accuracy": float(correct[inside].mean()), "count": int(inside.sum())})
    return rows


def expected_calibration_error(labels: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ over bins of (share of images) × |accuracy − mean confidence|."""
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"])
                     for row in reliability(labels, proba, bins)) / max(len(labels), 1))


def calibration_report(labels: np.ndarray, proba: np.ndarray, temperature: float) -> dict:
    """ECE and NLL before and after temperature scaling."""
    scaled = apply_temperature(proba, temperature)
    return {"ece": expected_calibration_error(labels, proba), "nll": nll(labels, proba),
            "ece_scaled": expected_calibration_error(labels, scaled), "nll_scaled": nll(labels, scaled)}


def write_reliability(labels: np.ndarray, proba: np.ndarray, temperature: float, csv_path, png_path,
                      title: str) -> None:
    """Reliability diagram of `proba` before and after temperature scaling: a CSV for `dvc plots`
    (confidence, accuracy, model) and a PNG, where a calibrated model lies on the diagonal."""
    import pandas as pd

    from emotion import plots
    from emotion.fileio import atomic_path

    curves = {"uncalibrated": proba, f"temperature {temperature:.2f}": apply_temperature(proba, temperature)}
    rows = pd.DataFrame([{**row, "model": name} for name, p in curves.items() for row in reliability(labels, p)])
    with atomic_path(csv_path) as tmp:
        rows[["model", "bin", "confidence", "accuracy", "count"]].to_csv(tmp, index=False)
    fig, ax = plots.plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="calibrated")
    for name, curve in rows.groupby("model", sort=False):
        ece = expected_calibration_error(labels, curves[name])
        ax.plot(curve.confidence, curve.accuracy, marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlabel="confidence (mean per bin)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left", fontsize=8)
    plots.save_figure(fig, png_path)
