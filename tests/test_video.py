"""`emotion video` on a short generated clip, headless."""
import csv

import cv2
import numpy as np
import pytest
from PIL import Image

from emotion.cli import main
from emotion.errors import EmotionError
from emotion.faces import Face
from emotion.analyzer import Analyzer, FaceResult
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


def test_cli_limits_frames(clip, tiny_export, tmp_path, capsys):  # noqa: F811
    main(["video", str(clip), "--model", str(tiny_export), "--out", str(tmp_path / "o.avi"), "--max-frames", "4",
          "--smooth", "0", "--no-bars"])
    assert "4 frames" in capsys.readouterr().out
    with open(tmp_path / "o.csv", newline="") as handle:
        assert len({row["frame"] for row in csv.DictReader(handle)}) == 4
