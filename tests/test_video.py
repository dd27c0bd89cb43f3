"""`emotion video` on a short generated clip, headless."""
import csv
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion.cli import main
from emotion.data import CLASSES
from emotion.errors import EmotionError
from emotion.faces import DEFAULT_MARGIN, Face, find_faces, recut_face
from emotion.analyzer import Analyzer, FaceResult
from emotion.scenes import backgrounds, compose, face_patch, grace_hopper
from emotion.video import Tracker, process_video
from inference_fixtures import face_photo_path, tiny_export  # noqa: F401

FRAMES, FACE_FRAMES = 12, 9  # the last three frames are blank


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """320×240 at 10 fps: the portrait sliding right for 9 frames, then 3 frames without a face."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with Image.open(face_photo_path()) as photo:
        face = np.asarray(photo.resize((200, 234)))[:, :, ::-1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for i in range(FRAMES):
        frame = np.full((240, 320, 3), 235, np.uint8)
        if i < FACE_FRAMES:
            frame[3:237, 10 + 8 * i:210 + 8 * i] = face
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def result(clip, tiny_export, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("video_out")
    summary = process_video(str(clip), out / "annotated.mp4", out / "frames.csv", Analyzer(tiny_export))
    with open(out / "frames.csv", newline="") as handle:
        return summary, list(csv.DictReader(handle)), out


def test_every_frame_is_in_the_csv(result):
    summary, rows, _ = result
    assert summary["frames"] == FRAMES
    assert sorted({int(r["frame"]) for r in rows}) == list(range(FRAMES))
    with_face = [r for r in rows if r["faces"] != "0"]
    assert {int(r["frame"]) for r in with_face} == set(range(FACE_FRAMES))  # one face in each, none after
    assert summary["faces"] == len(with_face) == FACE_FRAMES
    assert {r["track"] for r in with_face} == {"0"}  # one face followed across frames
    assert all(r["emotion"] == "" for r in rows if r["faces"] == "0")


def test_annotated_video_has_every_frame(result):
    _, _, out = result
    capture = cv2.VideoCapture(str(out / "annotated.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == FRAMES and frames[0].shape == (240, 320, 3)
    assert frames[0][:40, :160].min() < 50  # the FPS overlay's dark outline on the light background


def test_tracker_smooths_and_separates_faces():
    def result(box, p):
        probabilities = np.full(7, (1 - p) / 6, np.float32)
        probabilities[3] = p
        return FaceResult(Face(box, box, np.zeros((48, 48), np.uint8), "haar"), probabilities)

    tracker = Tracker(smoothing=0.5)
    tracker.update([result((10, 10, 50, 50), 0.9)])
    ((track, smoothed),) = tracker.update([result((14, 12, 50, 50), 0.1)])
    assert track == 0 and smoothed.probabilities[3] == pytest.approx(0.5)
    tracked = tracker.update([result((12, 10, 50, 50), 0.5), result((200, 10, 50, 50), 0.5)])
    assert [t for t, _ in tracked] == [0, 1]
    with pytest.raises(EmotionError):
        Tracker(smoothing=1.0)


def test_bad_sources_are_one_line_errors(tiny_export, tmp_path):  # noqa: F811
    analyzer = Analyzer(tiny_export)
    with pytest.raises(EmotionError, match="video file not found"):
        process_video(str(tmp_path / "missing.mp4"), tmp_path / "o.mp4", tmp_path / "o.csv", analyzer)
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(EmotionError, match="cannot open as video"):
        process_video(str(tmp_path / "notes.mp4"), tmp_path / "o.mp4", tmp_path / "o.csv", analyzer)
    with pytest.raises(EmotionError, match="unsupported video type"):
        process_video(str(tmp_path / "notes.mp4"), tmp_path / "o.gif", tmp_path / "o.csv", analyzer)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.csv").exists()


def test_an_output_that_would_replace_the_source_or_the_video_is_refused(clip, tiny_export, tmp_path):  # noqa: F811
    source = tmp_path / "source.mp4"
    source.write_bytes(clip.read_bytes())
    analyzer = Analyzer(tiny_export)
    with pytest.raises(EmotionError, match="--out names the source video"):
        process_video(str(source), source, tmp_path / "o.csv", analyzer)
    with pytest.raises(EmotionError, match="--csv names the source video"):
        process_video(str(source), tmp_path / "o.mp4", tmp_path / "." / "source.mp4", analyzer)
    with pytest.raises(EmotionError, match="the CSV would overwrite the annotated video"):
        process_video(str(source), tmp_path / "o.mp4", tmp_path / "o.mp4", analyzer)
    (tmp_path / "results").mkdir()
    with pytest.raises(EmotionError, match="--csv .*results: a folder is there"):
        process_video(str(source), tmp_path / "o.mp4", tmp_path / "results", analyzer)
    assert source.read_bytes() == clip.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "source.mp4"]


def test_cli_limits_frames(clip, tiny_export, tmp_path, capsys):  # noqa: F811
    main(["video", str(clip), "--model", str(tiny_export), "--out", str(tmp_path / "o.avi"), "--max-frames", "4",
          "--smooth", "0", "--no-bars"])
    assert "4 frames" in capsys.readouterr().out
    with open(tmp_path / "o.csv", newline="") as handle:
        assert len({row["frame"] for row in csv.DictReader(handle)}) == 4


# --- detecting on every Nth frame ----------------------------------------------------------------

def _frames(path) -> list[Image.Image]:
    """The clip's frames as RGB images, decoded as `emotion video` decodes them."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1])))
    capture.release()
    return frames


def _run(clip, analyzer, out, monkeypatch, **options) -> tuple[int, list[dict]]:
    """(frames the detector searched, CSV rows) of process_video on the clip."""
    searched = []
    detect = analyzer.detector.detect
    monkeypatch.setattr(analyzer.detector, "detect", lambda image: searched.append(1) or detect(image))
    process_video(str(clip), out / "o.avi", out / "o.csv", analyzer, **options)
    monkeypatch.undo()
    with open(out / "o.csv", newline="") as handle:
        return len(searched), list(csv.DictReader(handle))


def _box(row) -> tuple[int, ...]:
    return tuple(int(row[k]) for k in "xywh")


def _probabilities(row) -> np.ndarray:
    return np.array([float(row[c]) for c in CLASSES])


def test_detecting_every_frame_is_what_video_always_did(clip, tiny_export, tmp_path, monkeypatch):  # noqa: F811
    analyzer = Analyzer(tiny_export)
    searched, rows = _run(clip, analyzer, tmp_path, monkeypatch, detect_every=1)
    assert searched == FRAMES
    tracker, expected = Tracker(0.5), []  # the loop before --detect-every: find, classify, track
    for image in _frames(clip):
        (results,) = analyzer.classify([analyzer.find_faces(image).faces])
        expected.append(tracker.update(results))
    with_face = [r for r in rows if r["faces"] != "0"]
    assert len(with_face) == sum(len(t) for t in expected) == FACE_FRAMES
    for row in with_face:
        ((track, result),) = expected[int(row["frame"])]
        assert (int(row["track"]), _box(row)) == (track, result.face.box)
        np.testing.assert_allclose(_probabilities(row), result.probabilities, atol=1e-5)


def test_detecting_every_third_frame_still_reads_every_frame(clip, tiny_export, tmp_path, monkeypatch):  # noqa: F811
    analyzer = Analyzer(tiny_export)
    searched, rows = _run(clip, analyzer, tmp_path, monkeypatch, detect_every=3, smoothing=0)
    assert searched == math.ceil(FRAMES / 3)
    assert sorted(int(r["frame"]) for r in rows) == list(range(FRAMES))
    faces = {int(r["frame"]): r for r in rows if r["faces"] != "0"}
    assert sorted(faces) == list(range(FACE_FRAMES)) and {r["track"] for r in faces.values()} == {"0"}
    assert _box(faces[1]) == _box(faces[2]) == _box(faces[0]) != _box(faces[3])  # boxes kept, then found anew
    images = _frames(clip)
    (found,) = analyzer.find_faces(images[0]).faces
    (recut,) = analyzer.classify([[recut_face(images[1], found, analyzer.margin)]])[0]
    np.testing.assert_allclose(_probabilities(faces[1]), recut.probabilities, atol=1e-5)  # frame 1's own pixels
    assert not np.allclose(_probabilities(faces[1]), _probabilities(faces[0]), atol=1e-4)


def test_detect_every_below_one_is_a_one_line_error(clip, tiny_export, tmp_path, capsys):  # noqa: F811
    with pytest.raises(EmotionError, match="--detect-every 0"):
        process_video(str(clip), tmp_path / "o.mp4", tmp_path / "o.csv", Analyzer(tiny_export), detect_every=0)
    with pytest.raises(SystemExit):
        main(["video", str(clip), "--model", str(tiny_export), "--out", str(tmp_path / "o.mp4"),
              "--detect-every", "-2"])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --detect-every -2") and "\n" not in err
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.csv").exists()


def _tilted_portrait(tilt: float) -> Image.Image:
    return compose(backgrounds()["plain"], [(*face_patch(grace_hopper(), 150, tilt), "")],
                   np.random.default_rng(0)).image


@pytest.mark.parametrize("align", [False, True])
def test_a_face_cut_again_from_its_own_frame_is_the_face_found(align):
    image = _tilted_portrait(20)
    (face,) = find_faces(image, align=align).faces
    assert (face.turned != 0) == align
    again = recut_face(image, face, DEFAULT_MARGIN)
    np.testing.assert_array_equal(again.pixels, face.pixels)
    assert (again.box, again.crop, again.turned) == (face.box, face.crop, face.turned)
    moved = recut_face(_tilted_portrait(30), face, DEFAULT_MARGIN)  # the next frame: same cut, new pixels
    assert moved.turned == face.turned and np.abs(moved.pixels.astype(int) - face.pixels).mean() > 2
