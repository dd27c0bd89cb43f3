"""emotion report's tables (src/emotion/review.py): val, where choices are made, comes before test."""
from emotion.review import headline_table, per_class_table


def test_review_puts_val_first_and_gives_per_class_changes_on_each_split():
    base = {"val": {"accuracy": 0.60, "per_class": {"happy": {"recall": 0.80, "f1": 0.70}}},
            "test": {"accuracy": 0.50, "per_class": {"happy": {"recall": 0.90, "f1": 0.60}}}}
    new = {"val": {"accuracy": 0.62, "per_class": {"happy": {"recall": 0.85, "f1": 0.70}}},
           "test": {"accuracy": 0.49, "per_class": {"happy": {"recall": 0.70, "f1": 0.65}}}}
    head = headline_table(base, new)
    assert head.index("| val accuracy | 60.00 | 62.00 | +2.00 |") < head.index("| test accuracy | 50.00 | 49.00 | -1.00 |")
    assert "| happy | 80.00 | 85.00 | +5.00 | 70.00 | 70.00 | +0.00 |" in per_class_table(base, new, "val")
    assert "| happy | 90.00 | 70.00 | -20.00 | 60.00 | 65.00 | +5.00 |" in per_class_table(base, new, "test")
    assert "| angry | – | – | – | – | – | – |" in per_class_table(base, new, "val")  # absent: a dash, not a crash
