"""FER2013 in the Kaggle layout: fetch it, read images the one way the whole project reads them,
build the per-image manifest, assign train/val/test, and pack splits into uint8 arrays."""
from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emotion.errors import EmotionError
from emotion.fileio import atomic_path
from emotion.images import IMAGE_SIZE, image_header, read_image

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
FOLDERS = ("train", "test")
_USAGE = re.compile(r"^(Training|PublicTest|PrivateTest)_")
_FIX_SOURCE = "run `emotion fetch PATH` (or `make run SOURCE=PATH`) with a local fer2013.zip or its extracted folder"
SOURCE_DIR = Path("data/source")  # the archive the pipeline starts from, tracked by content in data/source.dvc


# --- download -------------------------------------------------------------------------------

def place_source(source: str | None, kaggle_handle: str, folder: Path = SOURCE_DIR) -> Path:
    """Make `folder` hold exactly one copy of FER2013: the local zip or extracted folder `source`, or,
    without one, the Kaggle dataset `kaggle_handle`. Returns the copy. Its content, not its original
    path, is what DVC then tracks, so the same archive anywhere on any machine gives the same lock."""
    origin = Path(_kaggle_download(kaggle_handle)) if source is None else Path(source).expanduser()
    if not origin.exists():
        raise EmotionError(f"{source}: does not exist; {_FIX_SOURCE}")
    if origin.is_file() and not zipfile.is_zipfile(origin):
        raise EmotionError(f"{origin}: not a zip archive (corrupt or truncated?); re-download it or {_FIX_SOURCE}")
    name = "fer2013.zip" if origin.is_file() else "fer2013"
    with atomic_path(folder, is_dir=True) as tmp:
        if origin.is_file():
            shutil.copyfile(origin, tmp / name)
        else:
            _copy_layout(_find_root(origin, str(origin)), tmp / name)
    return folder / name


def source_archive(folder: Path = SOURCE_DIR) -> Path:
    """The one zip or extracted folder in `folder` (what `place_source` put there)."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []
    if len(entries) != 1:
        found = ", ".join(p.name for p in entries) or "nothing"
        raise EmotionError(f"{folder}: expected one fer2013.zip or extracted folder, found {found}; {_FIX_SOURCE}")
    return entries[0]


def fetch_raw(source: str | Path, dest: Path) -> Path:
    """Copy FER2013 (Kaggle layout) from a zip or a folder into `dest`."""
    origin = Path(source).expanduser()
    if not origin.exists():
        raise EmotionError(f"{source}: does not exist; {_FIX_SOURCE}")
    with atomic_path(dest, is_dir=True) as tmp:
        if origin.is_file():
            _extract_zip(origin, tmp)
        else:
            _copy_layout(_find_root(origin, str(origin)), tmp)
    return dest


def _kaggle_download(handle: str) -> str:
    try:
        import kagglehub

        return kagglehub.dataset_download(handle)
    except Exception as err:  # kagglehub raises many types: network, auth, not found
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise EmotionError(f"could not download Kaggle dataset '{handle}' ({reason}); {_FIX_SOURCE}") from None


def _extract_zip(archive: Path, dest: Path) -> None:
    if not zipfile.is_zipfile(archive):
        raise EmotionError(f"{archive}: not a zip archive (corrupt or truncated?); re-download it or {_FIX_SOURCE}")
    with tempfile.TemporaryDirectory(dir=dest.parent) as scratch:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(scratch)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise EmotionError(f"{archive}: corrupt zip archive ({err}); re-download it") from None
        _copy_layout(_find_root(Path(scratch), str(archive)), dest)


def _find_root(base: Path, label: str) -> Path:
    """The folder holding train/ and test/ (the archive may wrap them in one top folder)."""
    candidates = [base] + sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    for root in candidates:
        if all((root / folder).is_dir() for folder in FOLDERS):
            return root
    raise EmotionError(f"{label}: no train/ and test/ folders inside; expected the Kaggle layout train/<class>/*.jpg")


def _copy_layout(root: Path, dest: Path) -> None:
    for folder in FOLDERS:
        shutil.copytree(root / folder, dest / folder)


# --- reading images ---------------------------------------------------------------------------

def list_class_folders(root: Path, allow_missing: bool) -> dict[str, Path]:
    """Class-name → folder for `root`, refusing unknown class folders."""
    if not root.is_dir():
        raise EmotionError(f"{root}: folder not found")
    found = {}
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if not child.is_dir():
            continue
        if child.name.lower() not in CLASSES:
            raise EmotionError(
                f"{child}: unknown class folder '{child.name}'; rename it to one of {', '.join(CLASSES)} or remove it")
        found[child.name.lower()] = child
    missing = [c for c in CLASSES if c not in found]
    if missing and not allow_missing:
        raise EmotionError(f"{root}: missing class folder(s) {', '.join(missing)}; every class needs training images")
    if not found:
        raise EmotionError(f"{root}: no class folders; expected {root}/<class>/<image> with classes {', '.join(CLASSES)}")
    return found


# --- manifest ---------------------------------------------------------------------------------

@dataclass
class Skipped:
    path: str
    reason: str


def build_manifest(raw_dir: Path, blank_std_max: float, progress_every: int = 5000):
    """One row per readable image under raw_dir/{train,test}/<class>/; unreadable files are skipped."""
    rows, skipped, seen = [], [], 0
    for folder in FOLDERS:
        classes = list_class_folders(raw_dir / folder, allow_missing=(folder == "test"))
        for label, class_dir in classes.items():
            before = len(rows)
            for file in sorted(p for p in class_dir.rglob("*") if p.is_file()):
                seen += 1
                if progress_every and seen % progress_every == 0:
                    print(f"  manifest: {seen} files read", flush=True)
                row = _describe(file, raw_dir, folder, label, blank_std_max, skipped)
                if row:
                    rows.append(row)
            if len(rows) == before:
                raise EmotionError(f"{class_dir}: class folder has no readable images; add images or remove the folder")
    manifest = pd.DataFrame(rows).sort_values("id", ignore_index=True)
    return _add_duplicate_groups(manifest), skipped


def _describe(file: Path, raw_dir: Path, folder: str, label: str, blank_std_max: float, skipped: list) -> dict | None:
    rel = file.relative_to(raw_dir).as_posix()
    if file.name.startswith("."):
        skipped.append(Skipped(rel, "hidden file"))
        return None
    data = file.read_bytes()
    try:
        fmt, mode, width, height = image_header(file)
        pixels = read_image(file)
    except EmotionError as err:  # the decoder's one line: "<file>: <reason>; <fix>"
        reason = str(err).removeprefix(f"{file}: ")
        skipped.append(Skipped(rel, reason))
        print(f"  skipped {rel}: {reason}", flush=True)
        return None
    usage = _USAGE.match(file.name)
    return {
        "id": rel,
        "folder": folder,
        "label": label,
        "label_idx": CLASSES.index(label),
        "usage": usage.group(1) if usage else "",
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "pixel_sha256": hashlib.sha256(pixels.tobytes()).hexdigest(),
        "bytes": len(data),
        "format": fmt or "",
        "mode": mode,
        "width": width,
        "height": height,
        "pixel_std": round(float(pixels.std()), 3),
        "near_blank": bool(pixels.std() < blank_std_max),
    }


def _add_duplicate_groups(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images with identical pixels share a dup_group id (-1 = unique); ids are stable across runs."""
    sizes = manifest.groupby("pixel_sha256")["id"].transform("size")
    dup_hashes = sorted(manifest.loc[sizes > 1, "pixel_sha256"].unique())
    group_of = {h: i for i, h in enumerate(dup_hashes)}
    manifest["dup_group"] = manifest["pixel_sha256"].map(group_of).fillna(-1).astype("int64")
    manifest["dup_size"] = sizes.astype("int64")
    per_group = manifest[manifest.dup_group >= 0].groupby("dup_group")
    conflict = per_group["label"].nunique() > 1
    cross = per_group["folder"].nunique() > 1
    manifest["dup_conflict"] = manifest["dup_group"].isin(conflict.index[conflict])
    manifest["dup_cross_folder"] = manifest["dup_group"].isin(cross.index[cross])
    return manifest


def dataset_stats(manifest: pd.DataFrame, skipped: list[Skipped]) -> dict:
    dups = manifest[manifest.dup_group >= 0]
    counts = {folder: {c: int(n) for c, n in part.label.value_counts().sort_index().items()}
              for folder, part in manifest.groupby("folder")}
    return {
        "images": int(len(manifest)),
        "per_folder": {folder: int(n) for folder, n in manifest.folder.value_counts().sort_index().items()},
        "per_class": counts,
        "usage": {u or "unknown": int(n) for u, n in manifest.usage.value_counts().sort_index().items()},
        "skipped": len(skipped),
        "skipped_files": [{"path": s.path, "reason": s.reason} for s in skipped[:100]],
        "near_blank": int(manifest.near_blank.sum()),
        "resized": int(((manifest.width != IMAGE_SIZE) | (manifest.height != IMAGE_SIZE)).sum()),
        "modes": {m: int(n) for m, n in manifest["mode"].value_counts().sort_index().items()},
        "duplicates": {
            "groups": int(dups.dup_group.nunique()),
            "images": int(len(dups)),
            "cross_folder_groups": int(dups[dups.dup_cross_folder].dup_group.nunique()),
            "conflicting_label_groups": int(dups[dups.dup_conflict].dup_group.nunique()),
        },
    }


# --- split ------------------------------------------------------------------------------------

def assign_splits(manifest: pd.DataFrame, val_fraction: float, seed: int,
                  drop_eval_duplicates: bool, drop_near_blank: bool) -> pd.DataFrame:
    """train/val/test/dropped per image. Val is carved from Kaggle train/ by stratified sampling of
    whole duplicate groups, so identical images never straddle train and val."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise EmotionError(f"params.yaml: 'split.val_fraction' must be between 0 and 1, got {val_fraction}")
    frame = manifest.sort_values("id").reset_index(drop=True)
    split = pd.Series("test", index=frame.index, dtype=object)
    reason = pd.Series("", index=frame.index, dtype=object)
    train_part = frame[frame.folder == "train"]
    groups = train_part.groupby("pixel_sha256", sort=True)["label"].first()
    too_small = groups.value_counts()
    too_small = too_small[too_small < 2]
    if len(too_small):
        raise EmotionError(f"split: class '{too_small.index[0]}' has fewer than 2 distinct training images; "
                           "a stratified validation split needs at least 2 per class: add images")
    _, val_hashes = train_test_split(groups.index.to_numpy(), test_size=val_fraction,
                                     stratify=groups.to_numpy(), random_state=seed)
    is_train = frame.folder == "train"
    is_val = is_train & frame.pixel_sha256.isin(set(val_hashes))
    split[is_train] = "train"
    split[is_val] = "val"
    if drop_eval_duplicates:
        eval_hashes = set(frame.loc[split.isin(["val", "test"]), "pixel_sha256"])
        leak = (split == "train") & frame.pixel_sha256.isin(eval_hashes)
        split[leak], reason[leak] = "dropped", "duplicate of a val/test image"
    if drop_near_blank:
        blank = (split == "train") & frame.near_blank
        split[blank], reason[blank] = "dropped", "near-blank"
    return pd.DataFrame({"id": frame.id, "label": frame.label, "split": split, "reason": reason})


def split_stats(splits: pd.DataFrame) -> dict:
    table = splits.groupby(["split", "label"]).size()
    return {
        "per_split": {s: int(n) for s, n in splits.split.value_counts().sort_index().items()},
        "per_class": {s: {c: int(n) for c, n in table[s].items()} for s in sorted(splits.split.unique())},
        "dropped_reasons": {r: int(n) for r, n in splits[splits.split == "dropped"].reason.value_counts().sort_index().items()},
    }


# --- preprocess -------------------------------------------------------------------------------

def pack_split(raw_dir: Path, rows: pd.DataFrame, image_size: int, progress_every: int = 5000) -> dict[str, np.ndarray]:
    """Decode the images of one split into images (N×S×S uint8), labels (N int64) and ids."""
    rows = rows.sort_values("id")
    images = np.empty((len(rows), image_size, image_size), dtype=np.uint8)
    for i, rel in enumerate(rows.id):
        images[i] = read_image(raw_dir / rel, image_size)
        if progress_every and (i + 1) % progress_every == 0:
            print(f"  packed {i + 1}/{len(rows)}", flush=True)
    labels = rows.label.map(CLASSES.index).to_numpy(dtype=np.int64)
    return {"images": images, "labels": labels, "ids": rows.id.to_numpy(dtype=str)}
