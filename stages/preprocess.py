"""Stage 4: decode each split once into data/prepared/<split>.npz (images N×S×S uint8, labels, ids)."""
from pathlib import Path

import pandas as pd

from emotion.config import load_params
from emotion.data import pack_split
from emotion.errors import one_line_errors
from emotion.fileio import atomic_path, save_npz
from emotion.pipeline import StageInputs

SPLITS = ("train", "val", "test")


@one_line_errors
def main():
    inputs = StageInputs("preprocess")
    params = load_params().preprocess
    splits = pd.read_parquet("data/split.parquet")
    with atomic_path("data/prepared", is_dir=True) as tmp:
        for name in SPLITS:
            arrays = pack_split(Path("data/raw"), splits[splits.split == name], params.image_size)
            save_npz(tmp / f"{name}.npz", **arrays)
            print(f"preprocess: {name} {arrays['images'].shape}")
        inputs.verify()  # before the folder replaces data/prepared


if __name__ == "__main__":
    main()
