"""Labelled folders read for `emotion evaluate`: each image's largest face, or the image whole."""
import numpy as np
import pytest

from emotion.errors import EmotionError
from emotion.faces import find_faces
from emotion.images import open_image, read_image, to_model_input
from emotion.labelled import LabelledFaceReader, read_labelled_folder
from inference_fixtures import photos  # noqa: F401


def test_a_labelled_photo_is_scored_on_its_largest_face_a_crop_whole_and_a_faceless_photo_whole(photos):  # noqa: F811
    reader = LabelledFaceReader()
    face = find_faces(open_image(photos["face.jpg"])).faces[0]
    assert np.array_equal(reader(photos["face.jpg"]), face.pixels)
    assert not np.array_equal(face.pixels, read_image(photos["face.jpg"]))  # not the whole 512×600 frame
    assert np.array_equal(reader(photos["crop.png"]), read_image(photos["crop.png"]))
    noface = open_image(photos["noface.jpg"])  # 640×480: its middle 480×480 is scored
    assert np.array_equal(reader(photos["noface.jpg"]), to_model_input(noface.crop((80, 0, 560, 480))))
    assert reader.counts == {"detected": 1, "crop": 1, "no face": 1}
    assert reader.summary() == ("faces: 1 found by blazeface, 1 taken whole (crops up to 128 px), "
                                "1 with no face found (scored on the centre square)")


def test_a_labelled_photo_read_whole_is_the_training_conversion(photos):  # noqa: F811
    reader = LabelledFaceReader("whole")
    assert np.array_equal(reader(photos["face.jpg"]), read_image(photos["face.jpg"]))
    assert reader.counts == {"crop": 1}


@pytest.mark.parametrize("mode, margin, says", [("faces", 0.1, "unknown face mode 'faces'"), ("auto", 2.0, "--margin 2.0")])
def test_a_labelled_face_reader_refuses_bad_settings_in_one_line(mode, margin, says):
    with pytest.raises(EmotionError, match=says):
        LabelledFaceReader(mode, margin)


def test_reading_a_labelled_folder_shows_progress(fake_fer, capsys):
    data = read_labelled_folder(fake_fer / "test", progress_every=10)
    assert len(data["images"]) == 21
    assert capsys.readouterr().out.splitlines() == ["  read 10/21 files", "  read 20/21 files"]
