"""Stage 2: one row per image → data/manifest.parquet; dataset statistics and plots."""
from pathlib import Path

import numpy as np

from emotion import plots
from emotion.config import load_params
from emotion.data import CLASSES, build_manifest, dataset_stats
from emotion.images import read_image
from emotion.errors import one_line_errors
from emotion.fileio import atomic_path, write_json
from emotion.pipeline import StageInputs

RAW = Path("data/raw")


@one_line_errors
def main():
    inputs = StageInputs("manifest")
    params = load_params().manifest
    manifest, skipped = build_manifest(RAW, params.blank_std_max)
    inputs.verify()
    with atomic_path("data/manifest.parquet") as tmp:
        manifest.to_parquet(tmp, index=False)
    stats = dataset_stats(manifest, skipped)
    write_json("metrics/dataset.json", stats)
    print(f"manifest: {stats['images']} images, {stats['skipped']} skipped, "
          f"{stats['duplicates']['groups']} duplicate groups, {stats['near_blank']} near-blank")

    counts = plots.class_distribution(manifest)
    with atomic_path("plots/class_distribution.csv") as tmp:
        counts.to_csv(tmp, index=False)
    plots.plot_class_distribution(counts, Path("plots/class_distribution.png"))

    train = manifest[manifest.folder == "train"]
    picks = [row for c in CLASSES for row in train[train.label == c].head(params.samples_per_class).itertuples()]
    images = np.stack([read_image(RAW / row.id) for row in picks])
    plots.image_grid(images, [row.label for row in picks], Path("plots/samples.png"),
                     columns=params.samples_per_class, title="First training images per class")


if __name__ == "__main__":
    main()
