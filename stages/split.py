"""Stage 3: seeded, stratified train/val/test assignment → data/split.parquet, metrics/split.json."""
import pandas as pd

from emotion.config import load_params
from emotion.data import assign_splits, split_stats
from emotion.errors import one_line_errors
from emotion.fileio import atomic_path, write_json
from emotion.pipeline import StageInputs


@one_line_errors
def main():
    inputs = StageInputs("split")
    params = load_params().split
    manifest = pd.read_parquet("data/manifest.parquet")
    splits = assign_splits(manifest, params.val_fraction, params.seed,
                           params.drop_eval_duplicates, params.drop_near_blank)
    inputs.verify()
    with atomic_path("data/split.parquet") as tmp:
        splits.to_parquet(tmp, index=False)
    stats = split_stats(splits)
    write_json("metrics/split.json", stats)
    print("split:", ", ".join(f"{k} {v}" for k, v in stats["per_split"].items()))


if __name__ == "__main__":
    main()
