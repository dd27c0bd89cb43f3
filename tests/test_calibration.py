import numpy as np
import pytest

from emotion.calibration import (apply_temperature, calibration_report, expected_calibration_error, fit_temperature,
                                 nll, reliability, write_reliability)


def sampled(temperature_true: float, n: int = 20000, seed: int = 0):
    """Labels drawn from softmax(z), and the over- or under-confident probabilities softmax(z · T_true)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 7))
    calibrated = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(7, p=p) for p in calibrated])
    shown = np.exp(logits * temperature_true)
    return labels, shown / shown.sum(1, keepdims=True)


def test_temperature_one_changes_nothing_and_keeps_the_ranking():
    _, proba = sampled(1.0, n=50)
    np.testing.assert_allclose(apply_temperature(proba, 1.0), proba, atol=1e-9)
    soft = apply_temperature(proba, 3.0)
    assert (soft.argmax(1) == proba.argmax(1)).all() and soft.max(1).mean() < proba.max(1).mean()
    np.testing.assert_allclose(soft.sum(1), 1)


@pytest.mark.parametrize("overconfidence", [2.0, 0.5])
def test_fitted_temperature_undoes_known_miscalibration(overconfidence):
    labels, proba = sampled(overconfidence)
    temperature = fit_temperature(labels, proba)
    assert temperature == pytest.approx(overconfidence, rel=0.05)
    report = calibration_report(labels, proba, temperature)
    assert report["ece_scaled"] < 0.02 < report["ece"] and report["nll_scaled"] < report["nll"]


def test_a_flat_nll_keeps_temperature_one():
    # a model that learned nothing: every T gives the same NLL, and the search used to end at T = 20
    uniform = np.full((50, 7), 1 / 7, dtype=np.float32)
    labels = np.arange(50) % 7
    assert fit_temperature(labels, uniform) == 1.0
    noisy = uniform + np.random.default_rng(2).normal(0, 1e-4, uniform.shape).astype(np.float32)
    noisy /= noisy.sum(axis=1, keepdims=True)
    report = calibration_report(labels, noisy, fit_temperature(labels, noisy))
    assert report["nll_scaled"] <= report["nll"]  # what the pipeline's metrics promise for val
    unscaled = calibration_report(labels, noisy, 1.0)  # seed 2: the float round trip used to raise this NLL
    assert unscaled["nll_scaled"] == unscaled["nll"] and unscaled["ece_scaled"] == unscaled["ece"]


def test_ece_of_a_calibrated_model_is_near_zero_and_reliability_bins_add_up():
    labels, proba = sampled(1.0)
    assert expected_calibration_error(labels, proba) < 0.02
    rows = reliability(labels, proba, bins=15)
    assert sum(r["count"] for r in rows) == len(labels) and all(0 <= r["accuracy"] <= 1 for r in rows)
    assert nll(labels, proba) == pytest.approx(-np.log(proba[np.arange(len(labels)), labels]).mean())


def test_always_confident_and_always_wrong_has_ece_one():
    proba = np.tile(np.eye(7)[0], (10, 1))
    assert expected_calibration_error(np.full(10, 3), proba) == pytest.approx(1.0)


def test_reliability_diagram_is_written_as_csv_and_png(tmp_path):
    labels, proba = sampled(2.0, n=500)
    write_reliability(labels, proba, 2.0, tmp_path / "r.csv", tmp_path / "r.png", "test")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "model,bin,confidence,accuracy,count" and {l.split(",")[0] for l in lines[1:]} == {
        "uncalibrated", "temperature 2.00"}
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_a_temperature_is_applied_only_when_it_lowers_val_ece(monkeypatch):
    from emotion import calibration

    labels, proba = sampled(2.0)
    temperature, why = calibration.choose_temperature(labels, proba)
    assert temperature == pytest.approx(2.0, rel=0.05) and "fitted on val" in why
    labels, proba = sampled(1.0)
    monkeypatch.setattr(calibration, "fit_temperature", lambda labels, proba: 3.0)  # a fit that makes ECE worse
    temperature, why = calibration.choose_temperature(labels, proba)
    assert temperature == 1.0 and "none is applied" in why


def test_a_flat_nll_says_why_no_temperature_is_applied():
    from emotion.calibration import choose_temperature

    temperature, why = choose_temperature(np.arange(50) % 7, np.full((50, 7), 1 / 7, dtype=np.float32))
    assert temperature == 1.0 and why.startswith("no temperature lowers val NLL")
