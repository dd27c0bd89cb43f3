"""benchmarks/retrain_on_val.py measures lever 5 on a second val split: that split must be unseen by both
runs, duplicates included, or the gain in docs/experiments.md would be partly memorised faces."""
import hashlib

import numpy as np

from conftest import load_script


def _faces(n, seed):
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), "labels": np.arange(n) % 7,
            "ids": np.array([f"{seed}-{i}" for i in range(n)])}


def test_val2_is_unseen_by_both_runs_and_run_b_adds_exactly_val():
    bench = load_script("benchmarks/retrain_on_val.py")
    train, val = _faces(210, 0), _faces(35, 1)
    train["images"][200:] = train["images"][:10]  # ten faces twice, as FER2013 has them
    sets = bench.make_sets(train, val)
    digest = lambda images: {hashlib.sha1(i.tobytes()).hexdigest() for i in images}  # noqa: E731
    val2 = digest(sets["val2"]["images"])
    assert len(sets["val2"]["labels"]) == 35 and np.bincount(sets["val2"]["labels"]).tolist() == [5] * 7
    assert not val2 & digest(sets["train_A"]["images"]) and not val2 & digest(sets["train_B"]["images"])
    dropped = set(train["ids"]) - set(sets["train_A"]["ids"]) - set(sets["val2"]["ids"])
    assert dropped and digest(train["images"][np.isin(train["ids"], list(dropped))]) <= val2  # only duplicates
    np.testing.assert_array_equal(sets["train_B"]["ids"][-35:], val["ids"])
    np.testing.assert_array_equal(sets["train_B"]["ids"][:-35], sets["train_A"]["ids"])
    again = bench.make_sets(train, val)
    np.testing.assert_array_equal(again["val2"]["ids"], sets["val2"]["ids"])  # seeded: the same split every time


def test_paired_counts_and_interval():
    bench = load_script("benchmarks/retrain_on_val.py")
    right_a = np.array([True] * 50 + [False] * 50)
    right_b = np.array([True] * 40 + [False] * 10 + [True] * 30 + [False] * 20)
    result = bench.paired(right_a, right_b, draws=2000)
    assert (result["only_a"], result["only_b"]) == (10, 30) and result["gain"] == 20.0
    assert result["low"] < 20 < result["high"] and result["low"] > 0
