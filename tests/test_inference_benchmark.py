"""benchmarks/inference.py times what the apps run: the README's speed numbers come from it."""
import json

import pytest

from conftest import load_script
from inference_fixtures import tiny_export  # noqa: F401


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/inference.py")


def test_its_settings_default_to_those_of_every_app(bench):
    from emotion.cli import build_parser

    ours = bench.build_parser().parse_args([])
    for argv in (["predict", "x.jpg"], ["video", "0"], ["serve"]):
        app = build_parser().parse_args(argv)
        assert (ours.tta, ours.detector, ours.align) == (app.tta, app.detector, app.align)


def test_the_stride_named_is_the_smallest_measured_at_30_frames_per_s(bench):
    assert bench.smallest_stride({1: 12.0, 2: 29.9, 3: 30.0, 4: 41.0}) == 3
    assert bench.smallest_stride({1: 31.0, 2: 50.0}) == 1
    assert bench.smallest_stride({1: 10.0, 2: 15.0, 3: 20.0, 4: 29.0}) is None


def test_every_stride_runs_whole_cycles_of_detection(bench):
    for repeats in (1, 12, 13, 50):
        frames = bench.video_frames(repeats)
        assert frames >= repeats and all(frames % stride == 0 for stride in bench.VIDEO_STRIDES)


def test_a_short_run_reports_the_photo_both_ways_and_video_at_each_stride(bench, tiny_export, tmp_path,  # noqa: F811
                                                                          capsys):
    bench.main(["--model", str(tiny_export), "--repeats", "1", "--faces", "8", "--tta", "flip",
                "--json", str(tmp_path / "r.json")])
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["settings"]["tta"] == "flip" and result["photo_640x480"]["faces_found"] == 1
    assert result["photo_640x480"]["end_to_end_tta_none"]["median_ms"] > 0
    video = result["video_1280x720"]
    rates = {int(s): v["frames_per_s"] for s, v in video["detect_every"].items()}
    assert sorted(rates) == list(bench.VIDEO_STRIDES) and all(rate > 0 for rate in rates.values())
    assert video["stride_for_30_fps"] == bench.smallest_stride(rates)
    report = capsys.readouterr().out
    assert "photo end to end, tta none" in report and "not the apps' defaults" in report
