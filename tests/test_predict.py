"""`emotion predict`: images and folders → annotated copies + CSV/JSON report, with a tiny random model."""
import csv
import io
import json
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion.cli import main
from emotion.data import CLASSES
from emotion.evaluation import predict_proba
from emotion.images import read_image
from emotion.errors import EmotionError
from emotion.inference import load_classifier
from emotion.analyzer import Analyzer
from emotion.predict import Progress, format_summary, open_photo, predict_paths
from inference_fixtures import face_photo_path, photos, tiny_export  # noqa: F401
from small_faces import group_with_a_small_face, small_face_photo


@pytest.fixture(scope="module")
def analyzer(tiny_export):  # noqa: F811
    return Analyzer(tiny_export)


@pytest.fixture(scope="module")
def folder_report(analyzer, photos, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("predict")
    return predict_paths([photos["face.jpg"].parent], out, analyzer), out


def _by_name(report):
    return {r["file"].rsplit("/", 1)[-1]: r for r in report["images"]}


def test_folder_gives_one_record_per_image_file(folder_report):
    report, _ = folder_report
    records = _by_name(report)
    assert sorted(records) == ["corrupt.jpg", "crop.png", "face.jpg", "noface.jpg"]  # notes.txt is not an image
    assert report["summary"] == {"images": 4, "with_faces": 2, "too_small": 0, "no_face": 1, "skipped": 1, "faces": 2,
                                 "skipped_faces": 0, "per_emotion": report["summary"]["per_emotion"]}
    assert sum(report["summary"]["per_emotion"].values()) == 2
    assert report["runtime"] == "onnxruntime"


def test_face_photo_record(folder_report):
    face = _by_name(folder_report[0])["face.jpg"]
    assert face["status"] == "ok" and (face["width"], face["height"]) == (512, 600)
    (found,) = face["faces"]
    box = found["box"]
    assert found["detector"] == "blazeface" and box["x"] + box["w"] <= 512 and box["y"] + box["h"] <= 600
    assert list(found["probabilities"]) == list(CLASSES)
    assert sum(found["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert found["emotion"] == max(found["probabilities"], key=found["probabilities"].get)


def test_crop_is_one_whole_image_face_with_the_models_own_answer(folder_report, photos, tiny_export, analyzer):  # noqa: F811
    (found,) = _by_name(folder_report[0])["crop.png"]["faces"]
    assert found["detector"] == "whole" and found["box"] == {"x": 0, "y": 0, "w": 48, "h": 48}
    assert analyzer.tta == "tencrop"  # the library's default is the apps'
    direct = predict_proba(load_classifier(tiny_export), read_image(photos["crop.png"])[None], tta="tencrop")[0]
    np.testing.assert_allclose(list(found["probabilities"].values()), direct, atol=1e-5)


def test_no_face_and_corrupt_are_reported_not_raised(folder_report):
    records = _by_name(folder_report[0])
    assert records["noface.jpg"]["status"] == "no_face" and records["noface.jpg"]["faces"] == []
    assert records["noface.jpg"]["reason"] == "no face found by blazeface (it looks for faces of 40 px and larger)"
    corrupt = records["corrupt.jpg"]
    assert corrupt["status"] == "skipped" and "corrupt image" in corrupt["reason"]
    assert corrupt["annotated"] is None


def test_report_files(folder_report):
    report, out = folder_report
    assert json.loads((out / "predictions.json").read_text()) == report
    assert json.loads((out / "summary.json").read_text()) == report["summary"]
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows].count("ok") == 2 and len(rows) == 4
    skipped = next(r for r in rows if r["status"] == "skipped")
    assert skipped["file"].endswith("corrupt.jpg") and skipped["reason"] and skipped["emotion"] == ""
    face_row = next(r for r in rows if r["file"].endswith("face.jpg") and r["status"] == "ok")
    assert sum(float(face_row[c]) for c in CLASSES) == pytest.approx(1, abs=1e-3)


def test_annotated_copies(folder_report):
    report, out = folder_report
    records = _by_name(report)
    with Image.open(out / records["face.jpg"]["annotated"]) as image:
        assert image.size == (512, 600)
        original = np.asarray(Image.open(face_photo_path()), dtype=np.int16)
        assert np.abs(np.asarray(image, dtype=np.int16) - original).max() > 100  # something was drawn
    with Image.open(out / records["crop.png"]["annotated"]) as image:
        assert image.size == (240, 240)  # enlarged so the label is legible
    assert (out / records["noface.jpg"]["annotated"]).is_file()


def test_small_batches_give_the_same_report(folder_report, photos, tiny_export, tmp_path):  # noqa: F811
    one_at_a_time = Analyzer(tiny_export, batch_size=1)
    report = predict_paths([photos["face.jpg"].parent], tmp_path, one_at_a_time, annotate_images=False)
    for got, want in zip(report["images"], folder_report[0]["images"], strict=True):
        assert (got["file"], got["status"], len(got["faces"])) == (want["file"], want["status"], len(want["faces"]))
        for a, b in zip(got["faces"], want["faces"]):
            assert a["box"] == b["box"]
            np.testing.assert_allclose(list(a["probabilities"].values()), list(b["probabilities"].values()), atol=1e-4)


def test_exif_rotated_photo_is_turned_upright(analyzer, tmp_path):
    with Image.open(face_photo_path()) as photo:
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: the camera was turned; viewers rotate 90° clockwise
        photo.rotate(90, expand=True).save(tmp_path / "rotated.jpg", exif=exif, quality=92)
    report = predict_paths([tmp_path / "rotated.jpg"], tmp_path / "out", analyzer, annotate_images=False)
    (record,) = report["images"]
    assert (record["width"], record["height"]) == (512, 600) and len(record["faces"]) == 1


def test_phone_formats_and_a_file_name_that_is_not_utf8_are_reported_not_fatal(analyzer, photos, tmp_path):  # noqa: F811
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos["crop.png"], folder / os.fsdecode(b"caf\xe9.png"))  # a Latin-1 name from an old disk
    shutil.copy(photos["face.jpg"], folder / "camera.jfif")
    (folder / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic" + bytes(100))
    report = predict_paths([folder], tmp_path / "out", analyzer, annotate_images=False)
    by_name = _by_name(report)
    assert by_name["camera.jfif"]["status"] == "ok" and by_name["caf\udce9.png"]["status"] == "ok"
    assert by_name["phone.heic"]["status"] == "skipped"
    assert by_name["phone.heic"]["reason"] == ("a HEIC photo, which this tool cannot decode; convert it to JPEG or "
                                               "PNG (most phones can also shoot JPEG)")
    rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv", encoding="utf-8")))
    assert sorted(Path(r["file"]).name for r in rows) == ["caf\\udce9.png", "camera.jfif", "phone.heic"]


def _png_header_claiming(tmp_path, width: int, height: int) -> Path:
    """A PNG whose header claims width × height pixels; its data is a 1×1 image's (so decoding fails)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR: width, height, then its CRC at 29-33
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    return path


def test_a_photo_over_pillows_limit_is_opened_up_to_max_megapixels_and_refused_over_it(tmp_path, recwarn):
    huge = _png_header_claiming(tmp_path, 14_000, 13_000)  # 182 MP: Pillow alone raises at 179
    with pytest.raises(EmotionError) as past_the_size_check:
        open_photo(huge, 200_000_000)
    assert "MP" not in str(past_the_size_check.value)  # refused for its truncated data, not for its size
    with pytest.raises(EmotionError, match=r"huge.png: 14000×13000 pixels \(182.0 MP\) is over the 100 MP limit"):
        open_photo(huge, 100_000_000)
    with pytest.raises(EmotionError, match=r"over the 1 MP limit; resize the photo or raise --max-megapixels$"):
        open_photo(huge, 1_000_000)  # far over twice the limit: still the user's limit, not Pillow's bomb message
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's own limit is back


def test_same_name_twice_keeps_both_copies(analyzer, photos, tmp_path):  # noqa: F811
    report = predict_paths([photos["crop.png"], photos["crop.png"]], tmp_path, analyzer)
    assert [r["annotated"] for r in report["images"]] == ["annotated/crop.png", "annotated/crop_2.png"]


def test_a_report_folder_inside_the_searched_folder_is_not_read_back_and_holds_only_this_runs_copies(
        analyzer, photos, tmp_path):  # noqa: F811
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("face.jpg", "crop.png"):
        shutil.copy(photos[name], folder / name)
    out = folder / "predictions"
    for _ in range(2):
        report = predict_paths([folder], out, analyzer)
        assert sorted(Path(r["file"]).name for r in report["images"]) == ["crop.png", "face.jpg"]
    assert sorted(p.name for p in (out / "annotated" / "photos").iterdir()) == ["crop.png", "face.jpg"]
    report = predict_paths([folder], folder, analyzer)  # the report beside the photos: they are still read
    assert sorted(Path(r["file"]).name for r in report["images"]) == ["crop.png", "face.jpg"]
    report = predict_paths([folder / "crop.png"], out, analyzer)  # a later run of one photo: the old copies go
    assert [p.relative_to(out).as_posix() for p in (out / "annotated").rglob("*")] == ["annotated/crop.png"]
    assert [r["annotated"] for r in report["images"]] == ["annotated/crop.png"]


def test_an_annotated_folder_that_is_not_an_earlier_report_is_never_replaced(analyzer, photos, tmp_path):  # noqa: F811
    own = tmp_path / "annotated"
    own.mkdir()
    (own / "mine.jpg").write_bytes(photos["face.jpg"].read_bytes())
    with pytest.raises(EmotionError, match="not an earlier report's .* choose another --out"):
        predict_paths([photos["crop.png"]], tmp_path, analyzer)
    assert [p.name for p in own.iterdir()] == ["mine.jpg"]
    predict_paths([photos["crop.png"]], tmp_path / "out", analyzer)
    with pytest.raises(EmotionError, match="which this run replaces"):
        predict_paths([tmp_path / "out" / "annotated"], tmp_path / "out", analyzer)
    assert (tmp_path / "out" / "annotated" / "crop.png").is_file()


def test_an_output_path_taken_by_a_file_is_one_line(tiny_export, photos, tmp_path, capsys):  # noqa: F811
    (tmp_path / "taken").write_text("")
    for out in ("taken", "taken/report"):
        with pytest.raises(SystemExit):
            main(["predict", str(photos["crop.png"]), "--model", str(tiny_export), "--out", str(tmp_path / out)])
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "taken" in err and "\n" not in err, err


def test_the_default_model_is_found_from_a_subfolder_of_the_checkout(tiny_export, photos, tmp_path, monkeypatch,
                                                                     capsys):  # noqa: F811
    (tmp_path / ".dvc").mkdir()
    shutil.copytree(tiny_export, tmp_path / "models" / "export")
    (tmp_path / "src").mkdir()
    monkeypatch.chdir(tmp_path / "src")
    main(["predict", str(photos["crop.png"]), "--out", str(tmp_path / "out")])
    assert "1 images: 1 with faces" in capsys.readouterr().out


def test_missing_path_and_empty_folder_are_one_line_errors(analyzer, tmp_path):
    with pytest.raises(EmotionError, match="no such file or folder"):
        predict_paths([tmp_path / "missing.jpg"], tmp_path / "out", analyzer)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmotionError, match="no images found"):
        predict_paths([tmp_path / "empty"], tmp_path / "out", analyzer)


def test_a_model_of_other_classes_is_refused_before_any_photo(tiny_export, tmp_path):  # noqa: F811
    shutil.copytree(tiny_export, tmp_path / "export")
    (tmp_path / "export" / "labels.json").write_text(json.dumps(["neg", "neu", "pos"]))
    with pytest.raises(EmotionError, match=r"labels.json lists \['neg', 'neu', 'pos'\], not this project's"):
        Analyzer(tmp_path / "export")


def test_cli(tiny_export, photos, tmp_path, capsys):  # noqa: F811
    shutil.copy(photos["face.jpg"], tmp_path / "face.jpg")
    main(["predict", str(tmp_path / "face.jpg"), "--model", str(tiny_export), "--out", str(tmp_path / "out"),
          "--bars"])
    captured = capsys.readouterr()
    assert "1 images: 1 with faces (1 faces)" in captured.out
    assert captured.err == ""  # stderr is not a terminal here: no progress line
    assert (tmp_path / "out" / "annotated" / "face.jpg").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(tmp_path / "nope.jpg"), "--model", str(tiny_export)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.jpg: no such file or folder" in err
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "face.jpg"), "--model", str(tmp_path / "no_model")])
    assert "model not found" in capsys.readouterr().err


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_ends_with_the_final_counts(analyzer, photos, folder_report, tmp_path):  # noqa: F811
    terminal = FakeTerminal()
    report = predict_paths([photos["face.jpg"].parent], tmp_path, analyzer, progress_stream=terminal)
    text = terminal.getvalue()
    assert text.startswith("\r") and text.count("\n") == 1 and text.endswith("\n")
    assert re.fullmatch(r"4/4 files, 2 faces, \d+\.\d files/s *\n", text.rsplit("\r", 1)[-1])
    assert report == folder_report[0]  # progress changes nothing in the outputs
    for name in ("predictions.csv", "predictions.json", "summary.json"):
        assert (tmp_path / name).read_bytes() == (folder_report[1] / name).read_bytes()


def test_no_progress_when_the_stream_is_not_a_terminal(analyzer, photos, tmp_path):  # noqa: F811
    piped = io.StringIO()
    predict_paths([photos["face.jpg"].parent], tmp_path, analyzer, annotate_images=False, progress_stream=piped)
    assert piped.getvalue() == ""


def test_progress_is_throttled_rewritten_in_place_and_padded():
    now = [0.0]
    terminal = FakeTerminal()
    progress = Progress(3, terminal, interval=0.1, clock=lambda: now[0])
    for when, faces in ((0.05, 1), (0.2, 0), (0.25, 2)):  # shown only at 0.2: 0.1 s since the start
        now[0] = when
        progress.advance(faces)
    now[0] = 0.5
    progress.finish()
    progress.finish()  # a second finish writes nothing more
    assert terminal.getvalue() == "\r2/3 files, 1 faces, 10.0 files/s\r3/3 files, 3 faces, 6.0 files/s \n"


def test_detector_is_chosen_on_the_command_line(tiny_export, photos, tmp_path):  # noqa: F811
    main(["predict", str(photos["face.jpg"]), "--model", str(tiny_export), "--out", str(tmp_path),
          "--detector", "haar", "--no-annotated"])
    report = json.loads((tmp_path / "predictions.json").read_text())
    assert report["detector"] == "haar" and [f["detector"] for f in report["images"][0]["faces"]] == ["haar"]
    with pytest.raises(SystemExit):
        main(["predict", str(photos["face.jpg"]), "--model", str(tiny_export), "--detector", "yunet"])


def test_predict_searches_a_group_photo_down_to_its_small_faces_unless_told_otherwise(tiny_export, tmp_path, capsys):  # noqa: F811
    from test_detectors import group_photo

    group_photo().image.save(tmp_path / "group.png")
    found = {}
    for extra in ([], ["--smallest-face", "0.05"]):
        out = tmp_path / (extra[-1] if extra else "default")
        main(["predict", str(tmp_path / "group.png"), "--model", str(tiny_export), "--out", str(out), "--no-annotated",
              *extra])
        found[out.name] = len(json.loads((out / "predictions.json").read_text())["images"][0]["faces"])
    assert found["default"] >= 5 and found["0.05"] <= 1  # six 50 px faces; 5% of 1500 px is 75
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "group.png"), "--model", str(tiny_export), "--smallest-face", "0"])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--smallest-face 0.0: use a fraction of the image's shorter side" in err


def test_alignment_is_chosen_on_the_command_line_and_recorded(tiny_export, photos, tmp_path):  # noqa: F811
    for flag, want in (("--align", True), ("--no-align", False)):
        main(["predict", str(photos["face.jpg"]), "--model", str(tiny_export), "--out", str(tmp_path / flag),
              flag, "--no-annotated"])
        report = json.loads((tmp_path / flag / "predictions.json").read_text())
        assert report["align"] is want and len(report["images"][0]["faces"]) == 1


def test_the_cli_scores_faces_with_the_pipelines_ten_crop_by_default(photos, tiny_export, tmp_path):  # noqa: F811
    import json

    from emotion.cli import main
    from emotion.evaluation import predict_proba

    crop = photos["crop.png"]
    main(["predict", str(crop), "--model", str(tiny_export), "--out", str(tmp_path), "--no-annotated"])
    (image,) = json.loads((tmp_path / "predictions.json").read_text())["images"]
    got = list(image["faces"][0]["probabilities"].values())
    pixels = read_image(crop)[None]
    classifier = load_classifier(tiny_export)
    np.testing.assert_allclose(got, predict_proba(classifier, pixels, tta="tencrop")[0], atol=1e-5)
    assert not np.allclose(got, classifier.predict_proba(pixels)[0], atol=1e-5)  # the views do change the answer


@pytest.fixture(scope="module")
def small_face_report(analyzer, tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_faces")
    small_face_photo().save(folder / "small.jpg", quality=95)
    group_with_a_small_face().save(folder / "group.jpg", quality=95)
    return predict_paths([folder], folder / "out", analyzer, annotate_images=False), folder / "out"


def test_a_face_below_the_minimum_is_reported_as_skipped_with_its_size(small_face_report):
    small = _by_name(small_face_report[0])["small.jpg"]
    (skipped,) = small["skipped_faces"]
    box = skipped["box"]
    assert small["status"] == "too_small" and small["faces"] == [] and max(box["w"], box["h"]) < 40
    assert skipped["reason"] == small["reason"] == (f"face of {box['w']}×{box['h']} px is below the 40 px minimum; "
                                                    "use a larger photo or crop closer")
    group = _by_name(small_face_report[0])["group.jpg"]
    assert group["status"] == "ok" and len(group["faces"]) == 1 and group["reason"] is None
    assert [s["box"]["x"] > 690 for s in group["skipped_faces"]] == [True]


def test_skipped_faces_in_the_summary_and_the_csv(small_face_report):
    report, out = small_face_report
    summary = report["summary"]
    assert (summary["with_faces"], summary["too_small"], summary["faces"], summary["skipped_faces"]) == (1, 1, 1, 2)
    assert format_summary(summary).startswith("2 images: 1 with faces (1 faces), 1 with only faces too small, "
                                              "0 without a face, 0 skipped; 2 faces below the minimum size not "
                                              "classified; faces per emotion: ")
    with open(out / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["file"].rsplit("/", 1)[-1], r["status"]) for r in rows) == [
        ("group.jpg", "ok"), ("group.jpg", "too_small"), ("small.jpg", "too_small")]
    small_row = next(r for r in rows if r["file"].endswith("small.jpg"))
    assert small_row["reason"].startswith(f"face of {small_row['w']}×{small_row['h']} px is below the 40 px minimum")
    assert small_row["emotion"] == "" and small_row["detector"] == "blazeface"
