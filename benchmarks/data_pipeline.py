"""Time the data stages (download from a local zip, manifest, split, preprocess) on a real archive.

    python benchmarks/data_pipeline.py ../shared/data/fer2013.zip

Prints seconds per step and peak memory. Target (issue): preprocess of the whole dataset < 30 s
on 2 cores."""
import resource
import sys
import tempfile
import time
from pathlib import Path

from emotion.data import assign_splits, build_manifest, fetch_raw, pack_split


def main(source: str) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        clock = time.perf_counter()

        def lap(name, detail=""):
            nonlocal clock
            now = time.perf_counter()
            rows.append((name, now - clock, detail))
            clock = now

        fetch_raw(source, raw)
        lap("download (extract zip)")
        manifest, skipped = build_manifest(raw, blank_std_max=2.0, progress_every=0)
        lap("manifest (decode + hash)", f"{len(manifest)} images, {len(skipped)} skipped")
        splits = assign_splits(manifest, 0.1, 42, True, True)
        lap("split")
        for name in ("train", "val", "test"):
            arrays = pack_split(raw, splits[splits.split == name], 48, progress_every=0)
            lap(f"preprocess {name}", f"{arrays['images'].shape[0]} images")
    total = sum(seconds for _, seconds, _ in rows)
    print(f"{'step':28s} {'seconds':>8s}")
    for name, seconds, detail in rows:
        print(f"{name:28s} {seconds:8.2f}  {detail}")
    print(f"{'total':28s} {total:8.2f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
