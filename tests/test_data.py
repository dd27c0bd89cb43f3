import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from emotion import data
from emotion.data import CLASSES, assign_splits, build_manifest, fetch_raw, pack_split, place_source, source_archive
from emotion.errors import EmotionError


# --- download ---

def test_fetch_from_zip_and_folder_give_same_tree(fake_zip, fake_fer, tmp_path):
    from_zip = fetch_raw(str(fake_zip), tmp_path / "raw_zip")
    from_dir = fetch_raw(str(fake_fer), tmp_path / "raw_dir")
    files = lambda root: sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))  # noqa: E731
    assert files(from_zip) == files(from_dir)
    assert len(files(from_zip)) == 7 * (6 + 3)


def test_zip_with_a_top_folder_is_found(fake_fer, tmp_path):
    archive = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in fake_fer.rglob("*.jpg"):
            zf.write(file, "fer2013/" + file.relative_to(fake_fer).as_posix())
    assert (fetch_raw(str(archive), tmp_path / "raw") / "train" / "happy").is_dir()


def test_missing_archive(tmp_path):
    with pytest.raises(EmotionError, match="does not exist; run `emotion fetch PATH`"):
        fetch_raw(str(tmp_path / "nope.zip"), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_corrupt_archive_leaves_nothing_behind(tmp_path):
    bad = tmp_path / "fer2013.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(EmotionError, match="not a zip archive"):
        fetch_raw(str(bad), tmp_path / "raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fer2013.zip"]


def test_truncated_archive(fake_zip, tmp_path):
    truncated = tmp_path / "cut.zip"
    truncated.write_bytes(fake_zip.read_bytes()[: fake_zip.stat().st_size // 2])
    with pytest.raises(EmotionError, match="cut.zip"):
        fetch_raw(str(truncated), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_offline_kaggle_download_says_how_to_use_a_local_archive(monkeypatch, tmp_path):
    import kagglehub

    def offline(handle):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'\nlong traceback text")

    monkeypatch.setattr(kagglehub, "dataset_download", offline)
    with pytest.raises(EmotionError) as err:
        place_source(None, "msambare/fer2013", tmp_path / "source")
    message = str(err.value)
    assert "msambare/fer2013" in message and "emotion fetch PATH" in message and "\n" not in message
    assert not (tmp_path / "source").exists()


@pytest.mark.parametrize("handle", ["msambare/fer2013", "msambare/fer2013/versions/1"])
def test_kaggle_download_result_is_copied(monkeypatch, fake_fer, tmp_path, handle):
    import kagglehub

    asked = []
    monkeypatch.setattr(kagglehub, "dataset_download", lambda h: asked.append(h) or str(fake_fer))
    placed = place_source(None, handle, tmp_path / "source")
    assert placed == source_archive(tmp_path / "source") == tmp_path / "source" / "fer2013"
    assert (fetch_raw(placed, tmp_path / "raw") / "test" / "sad").is_dir()
    assert asked == [handle]


@pytest.mark.parametrize("source", ["fer2013.zip", "data/fer2013.zip", "./fer", "~/nowhere/fer2013"])
def test_missing_local_paths_are_not_sent_to_kaggle(monkeypatch, tmp_path, source):
    import kagglehub

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(kagglehub, "dataset_download", lambda h: pytest.fail("asked Kaggle"))
    with pytest.raises(EmotionError, match="does not exist"):
        place_source(source, "msambare/fer2013", tmp_path / "source")


def test_placed_archive_is_the_only_entry_and_keeps_its_bytes(fake_zip, fake_fer, tmp_path):
    folder = tmp_path / "source"
    assert place_source(str(fake_fer), "unused/handle", folder) == folder / "fer2013"
    placed = place_source(str(fake_zip), "unused/handle", folder)  # replaces the folder copy
    assert sorted(p.name for p in folder.iterdir()) == ["fer2013.zip"] == [source_archive(folder).name]
    assert placed.read_bytes() == fake_zip.read_bytes()


def test_source_folder_must_hold_exactly_one_archive(fake_zip, tmp_path):
    folder = tmp_path / "source"
    with pytest.raises(EmotionError, match="found nothing; run `emotion fetch PATH`"):
        source_archive(folder)
    place_source(str(fake_zip), "unused/handle", folder)
    shutil.copy(fake_zip, folder / "other.zip")
    with pytest.raises(EmotionError, match="found fer2013.zip, other.zip"):
        source_archive(folder)


def test_a_non_zip_file_is_refused_before_anything_is_copied(tmp_path):
    bad = tmp_path / "fer2013.zip"
    bad.write_text("not a zip")
    with pytest.raises(EmotionError, match="not a zip archive"):
        place_source(str(bad), "unused/handle", tmp_path / "source")
    assert not (tmp_path / "source").exists()


def test_folder_without_layout(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(EmotionError, match="no train/ and test/ folders"):
        fetch_raw(str(tmp_path / "photos"), tmp_path / "raw")


# --- manifest: bad and odd input ---

def test_manifest_columns_usage_and_counts(fake_fer):
    manifest, skipped = build_manifest(fake_fer, blank_std_max=2.0)
    assert len(manifest) == 7 * 9 and not skipped
    assert set(manifest.usage) == {"Training", "PublicTest"}
    assert (manifest.loc[manifest.folder == "test", "usage"] == "PublicTest").all()
    assert {"id", "label", "folder", "file_sha256", "pixel_sha256", "width", "height", "mode",
            "dup_group", "near_blank"} <= set(manifest.columns)
    assert list(manifest.id) == sorted(manifest.id)


def test_corrupt_and_non_image_files_are_skipped_and_reported(fake_fer):
    (fake_fer / "train/angry/Training_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (fake_fer / "train/angry/notes.txt").write_text("not an image")
    manifest, skipped = build_manifest(fake_fer, blank_std_max=2.0)
    assert {s.path for s in skipped} == {"train/angry/Training_broken.jpg", "train/angry/notes.txt"}
    assert len(manifest) == 7 * 9


def test_unknown_class_folder(fake_fer):
    (fake_fer / "train/contempt").mkdir()
    with pytest.raises(EmotionError, match="unknown class folder 'contempt'; rename it"):
        build_manifest(fake_fer, blank_std_max=2.0)


def test_empty_class_folder(fake_fer):
    shutil.rmtree(fake_fer / "test/fear")
    (fake_fer / "test/fear").mkdir()
    with pytest.raises(EmotionError, match="test/fear: class folder has no readable images"):
        build_manifest(fake_fer, blank_std_max=2.0)


def test_missing_training_class(fake_fer):
    shutil.rmtree(fake_fer / "train/disgust")
    with pytest.raises(EmotionError, match="missing class folder.*disgust"):
        build_manifest(fake_fer, blank_std_max=2.0)


def test_png_rgb_rgba_and_wrong_size_are_converted(fake_fer):
    folder = fake_fer / "train/happy"
    Image.new("RGB", (96, 96), (200, 10, 10)).save(folder / "rgb.png")
    Image.new("RGBA", (48, 48), (0, 0, 0, 0)).save(folder / "transparent.png")
    Image.new("L", (64, 40), 90).save(folder / "small.jpg")
    manifest, skipped = build_manifest(fake_fer, blank_std_max=2.0)
    rows = manifest.set_index("id")
    assert rows.loc["train/happy/rgb.png", "mode"] == "RGB" and rows.loc["train/happy/rgb.png", "format"] == "PNG"
    assert rows.loc["train/happy/transparent.png", "mode"] == "RGBA"
    assert (rows.loc["train/happy/small.jpg", ["width", "height"]] == [64, 40]).all()
    assert rows.loc["train/happy/transparent.png", "near_blank"]  # transparent → white → blank
    assert data.read_image(folder / "rgb.png").shape == (48, 48)
    assert data.read_image(folder / "transparent.png").min() == 255
    assert not skipped


def test_duplicates_grouped_across_folders_with_conflicts(fake_fer):
    source = fake_fer / "train/happy" / sorted((fake_fer / "train/happy").iterdir())[0].name
    shutil.copy(source, fake_fer / "test/sad/PublicTest_dup.jpg")
    manifest, _ = build_manifest(fake_fer, blank_std_max=2.0)
    group = manifest[manifest.dup_group >= 0]
    assert len(group) == 2 and group.dup_group.nunique() == 1
    assert group.dup_conflict.all() and group.dup_cross_folder.all()


# --- split ---

def manifest_of(fake_fer):
    return build_manifest(fake_fer, blank_std_max=2.0)[0]


def test_split_is_stratified_seeded_and_uses_test_folder(fake_fer):
    manifest = manifest_of(fake_fer)
    a = assign_splits(manifest, 0.34, seed=1, drop_eval_duplicates=True, drop_near_blank=True)
    b = assign_splits(manifest.sample(frac=1, random_state=3), 0.34, seed=1,
                      drop_eval_duplicates=True, drop_near_blank=True)
    pd.testing.assert_frame_equal(a, b)  # input order does not matter
    c = assign_splits(manifest, 0.34, seed=2, drop_eval_duplicates=True, drop_near_blank=True)
    assert not a.split.equals(c.split)
    val_counts = a[a.split == "val"].label.value_counts()
    assert set(val_counts.index) == set(CLASSES) and val_counts.min() >= 1
    test_ids = set(manifest.loc[manifest.folder == "test", "id"])
    assert set(a.loc[a.split == "test", "id"]) == test_ids


def test_split_drops_training_copies_of_eval_images_only_when_asked(fake_fer):
    source = sorted((fake_fer / "test/sad").iterdir())[0]
    shutil.copy(source, fake_fer / "train/sad/Training_leak.jpg")
    manifest = manifest_of(fake_fer)
    kept = assign_splits(manifest, 0.34, 0, drop_eval_duplicates=False, drop_near_blank=False)
    dropped = assign_splits(manifest, 0.34, 0, drop_eval_duplicates=True, drop_near_blank=False)
    leak = "train/sad/Training_leak.jpg"
    assert kept.set_index("id").loc[leak, "split"] == "train"
    assert dropped.set_index("id").loc[leak, ["split", "reason"]].tolist() == ["dropped", "duplicate of a val/test image"]


def test_duplicates_never_straddle_train_and_val(fake_fer):
    for i, source in enumerate(sorted((fake_fer / "train/fear").iterdir())[:3]):
        shutil.copy(source, fake_fer / f"train/fear/Training_copy{i}.jpg")
    manifest = manifest_of(fake_fer)
    splits = assign_splits(manifest, 0.34, 0, drop_eval_duplicates=False, drop_near_blank=False)
    joined = splits.merge(manifest[["id", "pixel_sha256"]], on="id")
    assert (joined[joined.split.isin(["train", "val"])].groupby("pixel_sha256").split.nunique() == 1).all()


def test_split_refuses_bad_fraction(fake_fer):
    with pytest.raises(EmotionError, match="val_fraction"):
        assign_splits(manifest_of(fake_fer), 1.5, 0, True, True)


# --- preprocess ---

def test_pack_split_shapes_order_and_labels(fake_fer):
    manifest = manifest_of(fake_fer)
    rows = manifest[manifest.folder == "test"].sample(frac=1, random_state=0)
    arrays = pack_split(fake_fer, rows, image_size=48)
    assert arrays["images"].shape == (21, 48, 48) and arrays["images"].dtype == np.uint8
    assert list(arrays["ids"]) == sorted(rows.id)
    assert [CLASSES[i] for i in arrays["labels"]] == [i.split("/")[1] for i in arrays["ids"]]


def test_npz_is_byte_for_byte_deterministic(tmp_path):
    from emotion.fileio import load_npz, save_npz

    arrays = {"images": np.arange(48 * 48 * 3, dtype=np.uint8).reshape(3, 48, 48), "ids": np.array(["a", "b", "c"])}
    save_npz(tmp_path / "a.npz", **arrays)
    save_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    np.testing.assert_array_equal(load_npz(tmp_path / "a.npz")["images"], arrays["images"])
    save_npz(tmp_path / "step.npz", step=np.array(7))  # 0-d arrays (an optimizer's step count) stay 0-d
    assert load_npz(tmp_path / "step.npz")["step"].shape == ()


def test_zip_times_are_fixed_so_equal_contents_give_equal_bytes(tmp_path):
    import zipfile

    from emotion.fileio import fix_zip_times

    for name in ("a.zip", "b.zip"):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.writestr(zipfile.ZipInfo("x.json", (2026, 1, 1, 0, 0, 0) if name == "a.zip" else
                                             (2026, 5, 5, 5, 5, 4)), b'{"date": 1}')
        fix_zip_times(tmp_path / name, lambda member, data: data.replace(b"1", b"2"))
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert zipfile.ZipFile(tmp_path / "a.zip").read("x.json") == b'{"date": 2}'


def test_atomic_write_leaves_previous_output_on_failure(tmp_path):
    from emotion.fileio import atomic_path

    dest = tmp_path / "out.txt"
    dest.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert dest.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_file_output_never_replaces_a_folder(tmp_path):
    from emotion.fileio import atomic_path

    folder = tmp_path / "results"
    (folder / "mine.txt").parent.mkdir()
    (folder / "mine.txt").write_text("the user's")
    with pytest.raises(EmotionError, match=r"results: is a folder, and a file is written here; give a file path"):
        with atomic_path(folder) as tmp:
            Path(tmp).write_text("output")
    assert (folder / "mine.txt").read_text() == "the user's"
    assert [p.name for p in tmp_path.iterdir()] == ["results"]  # no temporary file left beside it
    with atomic_path(folder, is_dir=True) as tmp:  # a folder output still replaces its previous self
        (Path(tmp) / "new.txt").write_text("output")
    assert [p.name for p in folder.iterdir()] == ["new.txt"]


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os

    from emotion.fileio import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "file.txt") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "folder", is_dir=True) as tmp:
            (tmp / "a").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "file.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
