"""benchmarks/distillation.py builds the soft targets a distilled student trains on: the label must keep
the largest share, or class weights (read from the target's largest entry) would weigh the wrong class."""
import numpy as np
import pytest

from conftest import load_script


def test_soft_targets_mix_the_label_with_the_softened_teacher_and_keep_the_label_on_top():
    bench = load_script("benchmarks/distillation.py")
    rng = np.random.default_rng(0)
    labels = np.arange(50) % 7
    teacher = rng.dirichlet(np.full(7, 0.2), 50)  # confident, often wrong teachers
    targets = bench.soft_targets(teacher, labels, temperature=2.0, mix=0.5)
    np.testing.assert_allclose(targets.sum(1), 1, atol=1e-6)
    assert (targets.argmax(1) == labels).all()
    softened = np.sqrt(teacher) / np.sqrt(teacher).sum(1, keepdims=True)
    np.testing.assert_allclose(targets[np.arange(50), labels], 0.5 + 0.5 * softened[np.arange(50), labels], atol=1e-6)
    # a higher temperature flattens what the teachers add
    flatter = bench.soft_targets(teacher, labels, temperature=8.0, mix=0.5)
    assert flatter.std(axis=1).mean() < targets.std(axis=1).mean()
    np.testing.assert_array_equal(bench.soft_targets(teacher, labels, 2.0, mix=0.0).argmax(1), labels)


def test_a_mix_that_would_let_the_teacher_outvote_the_label_is_refused():
    bench = load_script("benchmarks/distillation.py")
    with pytest.raises(ValueError, match="mix must be in 0..0.5"):
        bench.soft_targets(np.full((2, 7), 1 / 7), np.array([0, 1]), 2.0, mix=0.6)


def test_ensembles_are_scored_with_weights_chosen_on_the_labels():
    bench = load_script("benchmarks/distillation.py")
    labels = np.arange(70) % 7
    good = np.eye(7)[labels] * 0.6 + 0.4 / 7
    noise = np.random.default_rng(1).dirichlet(np.ones(7), 70)
    accuracy, weights = bench.ensemble_accuracy([noise, good], labels)
    assert accuracy == 100.0 and weights[1] >= weights[0]
