"""`--track` on every path: `detector video`, `eval-video`, `live` (headless and the real window under Xvfb),
its outputs (JSONL track_id and counts, MOTChallenge results), people counted on a real video, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared
from test_cli import assert_bad_input, cli_env, detector
from test_live import paused_screenshot, x, xvfb  # noqa: F401  (the Xvfb fixture)
from test_track_scores import assert_scores_equal, reference_scores

from detector import Detector
from detector.live import LiveOutputs, LiveRun
from detector.render import class_color
from detector.sources import SAMPLE_VIDEO, LiveSource
from detector.track.counting import LINE_COLOR
from detector.track.mot import read_mot
from detector.track.run import Tracking, TrackingOptions

TUD = SHARED / "tracking" / "TUD-Campus"
PEOPLE = SHARED / "videos" / "one-by-one-person-detection.mp4"


def jsonl_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@needs_shared
def test_video_track_writes_ids_counts_and_mot(tmp_path):
    out, mot = tmp_path / "o.mp4", tmp_path / "tracks.txt"
    args = ["--track", "--trails", "10", "--line", "0.5,0,0.5,1", "--mot", str(mot), "--quiet"]
    result = detector("video", str(TUD / "TUD-Campus.mp4"), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr[-800:]
    assert "line 1: in" in result.stdout
    lines = jsonl_lines(out.with_suffix(".jsonl"))
    assert len(lines) == 71 and all("counts" in line for line in lines)
    ids = [d["track_id"] for line in lines for d in line["detections"]]
    assert all(i is None or (isinstance(i, int) and i >= 1) for i in ids)
    assert sum(i is not None for i in ids) > 200, "few tracked boxes on a clip full of people"
    rows = read_mot(mot)  # [K, 10]
    assert rows[:, 0].min() == 1 and rows[:, 0].max() <= 71, "MOT frames are 1-based"
    # every shown tracked box is a row of the MOT file, at the same place (the file also holds tracked boxes
    # under --conf, which ByteTrack keeps)
    for line in lines[::10]:
        frame_rows = rows[rows[:, 0] == line["frame"] + 1]
        for d in line["detections"]:
            if d["track_id"] is not None:
                row = frame_rows[frame_rows[:, 1] == d["track_id"]]
                x1, y1, x2, y2 = d["xyxy"]
                assert len(row) == 1 and np.allclose(row[0, 2:6], [x1, y1, x2 - x1, y2 - y1], atol=0.02)
    final = lines[-1]["counts"]["line 1"]
    assert sum(final["in"].values()) + sum(final["out"].values()) >= 1, "nobody crossed the middle of TUD-Campus"


@needs_shared
def test_people_counted_through_the_exit_on_a_real_video(tmp_path):
    """one-by-one-person-detection.mp4, watched frame by frame (1 s apart): six people, one at a time, come in
    from the bottom edge, stand at the table and leave by the right: at 19, 44, 69, 86, 119 and 135 s. Nobody
    comes back. The line x = 0.72 of the width, from 0.3 of the height down to the bottom edge, drawn top to
    bottom, is crossed left to right by each of the six on the way out ("out": see LineCounter) and by nobody
    on the way in."""
    jsonl = tmp_path / "p.jsonl"
    args = ["--track", "--line", "0.72,0.3,0.72,1", "--classes", "person", "--no-video", "--jsonl", str(jsonl)]
    result = detector("video", str(PEOPLE), *args, "--quiet", timeout=600)
    assert result.returncode == 0, result.stderr[-800:]
    assert "line 1: in 0, out 6 (person 6)" in result.stdout
    assert jsonl_lines(jsonl)[-1]["counts"] == {"line 1": {"in": {}, "out": {"person": 6}}}


@needs_shared
def test_eval_video_scores_tracks_as_an_independent_computation(tmp_path):
    """MOTA, IDF1, HOTA (and the rest) of report.json equal a computation written from the definitions
    (tests/test_track_scores.py) on the tracks.txt the run wrote, within 1e-3."""
    gt = TUD / "gt" / "gt.txt"
    result = detector("eval-video", str(TUD / "TUD-Campus.mp4"), "--gt", str(gt), "--out", str(tmp_path), "--track")
    assert result.returncode == 0, result.stderr[-800:]
    report = json.loads((tmp_path / "report.json").read_text())
    scores = report["tracking"]
    assert set(scores) == {"MOTA", "IDF1", "HOTA", "IDP", "IDR", "ID_switches", "MT", "ML", "fragmentations"}
    assert 0.3 < scores["MOTA"] < 1 and 0.3 < scores["IDF1"] < 1 and 0.2 < scores["HOTA"] < 1, scores
    assert_scores_equal(scores, reference_scores(tmp_path / "tracks.txt", gt, (640, 480)), "TUD-Campus")
    assert "tracking: MOTA" in result.stdout and "tracks.txt" in result.stdout


def test_bad_tracking_input_is_one_line():
    clip = str(SAMPLE_VIDEO)
    assert_bad_input(detector("video", clip, "--line", "0,0.5,1,0.5"), "--track")
    assert_bad_input(detector("video", clip, "--track", "--line", "0,0.5,1"), "--line")
    assert_bad_input(detector("video", clip, "--track", "--zone", "0,0,1,1"), "--zone")
    assert_bad_input(detector("video", clip, "--track", "--tracker", "deepsort"), "deepsort")
    assert_bad_input(detector("live", "--simulate-live", clip, "--no-show", "--track", "--line", "a,b,c,d"), "--line")


def test_live_tracking_headless(tmp_path):
    """The bundled clip (one person standing) replayed as a camera: one ID, held all along; the JSONL lines
    carry it, the MOT file too, and the counts of a line nobody crosses stay at zero."""
    source = LiveSource(str(SAMPLE_VIDEO))
    options = TrackingOptions(lines=["0.1,0,0.1,1"], mot=tmp_path / "t.txt")
    tracking = Tracking(options, source.fps, source.frame_hw[::-1], conf=0.25)
    detector_ = Detector(conf=Tracking.detector_conf(0.25))
    run = LiveRun(
        detector_, source, LiveOutputs(jsonl=tmp_path / "d.jsonl"), show=False, duration_s=3.0, tracking=tracking
    )
    assert run.run() == 0
    lines = jsonl_lines(tmp_path / "d.jsonl")
    people = [d for line in lines for d in line["detections"] if d["class_name"] == "person"]
    assert len(lines) >= 5 and len(people) >= 5
    assert {d["track_id"] for d in people[2:]} == {1}, "the one person should keep ID 1"
    assert lines[-1]["counts"] == {"line 1": {"in": {}, "out": {}}}
    assert (read_mot(tmp_path / "t.txt")[:, 1] == 1).any()
    # no picture: results are final as the model gives them, no predicted boxes worked out for later frames
    assert not run.inference.latest.tracked.velocity.any()


def test_window_shows_ids_the_line_and_its_counts(xvfb, tmp_path):  # noqa: F811
    jsonl = tmp_path / "d.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "--simulate-live", str(SAMPLE_VIDEO), "--jsonl", str(jsonl),
         "--no-hud", "--track", "--line", "0.25,0.1,0.25,0.9"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(DISPLAY=xvfb),
    )  # fmt: skip
    try:
        window, screen, geometry = paused_screenshot(xvfb, jsonl, tmp_path)
        left, top = (int(v) for v in geometry.split("Position: ")[1].split(" ")[0].split(","))
        w, h = (int(v) for v in geometry.split("Geometry: ")[1].split()[0].split("x"))
        screen = screen[top : top + h, left : left + w]
        person = next(d for d in jsonl_lines(jsonl)[-1]["detections"] if d["class_name"] == "person")
        assert person["track_id"] == 1
        # the box in the track's colour (not the class's): IDs are drawn
        x1, y1, x2, y2 = (round(v) for v in person["xyxy"])
        track_color = np.array(class_color(person["track_id"]))
        assert not np.array_equal(track_color, class_color(0))
        edge = screen[y1 + 40 : y2 - 40, max(x1 - 4, 0) : x1 + 4]
        assert (edge == track_color).all(-1).any(1).mean() > 0.8, "the tracked box is not on screen"
        # the line, in its colour, down its column; and its counts panel (darkened, with text) beside it
        column = screen[int(0.15 * h) : int(0.85 * h), round(0.25 * w) - 3 : round(0.25 * w) + 4]
        assert (np.abs(column.astype(int) - LINE_COLOR).sum(-1) < 60).any(1).mean() > 0.8, "no line on screen"
        panel_rim = (screen == np.array(LINE_COLOR)).all(-1)
        assert panel_rim[:, : round(0.25 * w) - 10].sum() > 40, "no counts panel beside the line"
        x(xvfb, "xdotool", "key", "--window", window, "q")
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "line 1: in 0, out 0" in stdout
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("realtime", [False, True], ids=["all-frames", "realtime"])
def test_track_on_eval_video_and_realtime_paths_runs(realtime, tmp_path):
    """--track goes through the realtime replay too: the boxes each frame showed carry track IDs."""
    args = ["--track", "--quiet", "--no-video", "--jsonl", str(tmp_path / "d.jsonl")] + ["--realtime"] * realtime
    result = detector("video", str(SAMPLE_VIDEO), *args)
    assert result.returncode == 0, result.stderr[-800:]
    lines = jsonl_lines(tmp_path / "d.jsonl")
    ids = {d["track_id"] for line in lines for d in line["detections"] if d["class_name"] == "person"}
    assert 1 in ids


@needs_shared
def test_idf1_at_least_that_of_ultralytics_model_track(tmp_path):
    """Same weights (the bundled default), same input shape, same ByteTrack settings, every class tracked and
    the people scored: our IDF1 on TUD-Campus is at least that of `YOLO(w).track`."""
    from ultralytics import YOLO

    from detector.evaluate.tracking import score_tracks
    from detector.pipeline import DEFAULT_WEIGHTS

    video, gt = TUD / "TUD-Campus.mp4", TUD / "gt" / "gt.txt"
    result = detector("eval-video", str(video), "--gt", str(gt), "--out", str(tmp_path / "ours"), "--track", "--quiet")
    assert result.returncode == 0, result.stderr[-800:]
    ours = json.loads((tmp_path / "ours" / "report.json").read_text())["tracking"]

    imgsz = list(Detector().preprocess([cv2.VideoCapture(str(video)).read()[1]]).shape[1:3])
    rows = []
    track = YOLO(str(DEFAULT_WEIGHTS), task="detect").track
    for frame, r in enumerate(track(str(video), stream=True, tracker="bytetrack.yaml", imgsz=imgsz, verbose=False)):
        if r.boxes.id is None:
            continue
        people = r.boxes[r.boxes.cls == 0]
        for (x1, y1, x2, y2), i, c in zip(people.xyxy.tolist(), people.id.tolist(), people.conf.tolist()):
            rows.append(f"{frame + 1},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.5f},-1,-1,-1")
    (tmp_path / "theirs.txt").write_text("\n".join(rows) + "\n")
    theirs = score_tracks(tmp_path / "theirs.txt", gt, (640, 480))
    print(f"IDF1 ours {ours['IDF1']:.4f}, Ultralytics' {theirs['IDF1']:.4f}")
    assert len(rows) > 200, "Ultralytics tracked almost nothing: the comparison proves nothing"
    assert ours["IDF1"] >= theirs["IDF1"] - 1e-9
