"""Tracking: Ultralytics' ByteTrack and BoT-SORT fed our `Detections`, told the time between frames.

Parity: on TUD-Campus, the bundled model and `Tracker("bytetrack")` give the IDs of
`YOLO(...).track(..., tracker="bytetrack.yaml")` (up to a one-to-one renaming) and its boxes within 0.5 px,
frame by frame; on random synthetic scenes, the same tracks as Ultralytics' `BYTETracker` itself. The rest
runs synthetic objects whose motion is known, at fresh random positions and speeds.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED, needs_shared

from detector import Detections, DetectorError
from detector.track import TRACKER_CONF, Tracker

NAMES = {0: "person", 1: "car"}
TUD_VIDEO = SHARED / "tracking" / "TUD-Campus" / "TUD-Campus.mp4"


def make_dets(boxes, scores=None, classes=None) -> Detections:
    boxes = torch.as_tensor(np.asarray(boxes, np.float32)).reshape(-1, 4)  # [N, 4]
    n = len(boxes)
    scores = torch.full((n,), 0.9) if scores is None else torch.as_tensor(scores, dtype=torch.float32)
    classes = torch.zeros(n, dtype=torch.int64) if classes is None else torch.as_tensor(classes, dtype=torch.int64)
    return Detections(boxes, scores, classes, NAMES)


def box(cx: float, cy: float, w: float = 80.0, h: float = 160.0) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def write_config(path, **changes) -> str:
    """Ultralytics' bytetrack.yaml with ``changes`` (None removes a field)."""
    from ultralytics.utils import ROOT, YAML

    kind = changes.pop("tracker_type", "bytetrack")
    cfg = YAML.load(ROOT / "cfg" / "trackers" / f"{kind}.yaml")
    for key, value in changes.items():
        if value is None:
            cfg.pop(key)
        else:
            cfg[key] = value
    path.write_text("".join(f"{k}: {json.dumps(v)}\n" for k, v in cfg.items()))
    return str(path)


# --- parity ---------------------------------------------------------------------------------------------


def assert_same_tracks(out: Detections, theirs, what: str, ours_of: dict, theirs_of: dict) -> int:
    """Our tracked rows against ``model.track``'s boxes: boxes within 0.5 px paired one to one, the same classes and
    scores, and IDs renamed one to one over the whole video (``ours_of``, ``theirs_of`` carry it between frames)."""
    ours = out[out.track_id >= 0]
    boxes = theirs.boxes
    if boxes.id is None:  # no confirmed track: Ultralytics shows the raw detections, or none
        assert len(ours) == 0, f"{what}: we track {len(ours)} boxes, Ultralytics none"
        return 0
    assert len(ours) == len(boxes), f"{what}: {len(ours)} tracked boxes vs Ultralytics' {len(boxes)}"
    gap = (boxes.xyxy.cpu()[:, None] - ours.xyxy[None]).abs().amax(-1)  # [T, T]
    nearest = gap.argmin(1)  # [T]
    assert gap.min(1).values.max() <= 0.5, f"{what}: boxes differ by {gap.min(1).values.max():.3f} px"
    assert len(set(nearest.tolist())) == len(nearest), f"{what}: boxes do not pair one to one"
    assert torch.equal(ours.class_id[nearest], boxes.cls.long().cpu()), f"{what}: classes differ"
    assert (ours.confidence[nearest] - boxes.conf.cpu()).abs().max() <= 1e-4, f"{what}: scores differ"
    for their_id, our_id in zip(boxes.id.long().tolist(), ours.track_id[nearest].tolist()):
        assert ours_of.setdefault(their_id, our_id) == our_id, f"{what}: their ID {their_id} changed ours"
        assert theirs_of.setdefault(our_id, their_id) == their_id, f"{what}: our ID {our_id} changed theirs"
    return len(boxes)


@needs_shared
@pytest.mark.slow
def test_bytetrack_gives_ultralytics_model_track_ids_and_boxes_on_tud_campus():
    """No gaps here, so time-aware and call-counting agree: the same tracks as ``model.track``, whose results keep
    only tracked boxes (clipped to the frame); ours keep every box, -1 where untracked.

    Time-aware at 30 frames/s: Ultralytics keeps a lost track ``track_buffer`` (30) frames at any frame rate, which
    is our rule at 30 frames/s. At the video's own 25 frames/s ours keeps it 25 frames (one second), and
    TUD-Campus differs from frame 48 on: a person at the left edge, lost for 27 frames, is found again by
    Ultralytics and not by us."""
    from ultralytics import YOLO

    from detector import Detector
    from detector.pipeline import DEFAULT_WEIGHTS

    detector = Detector(conf=TRACKER_CONF)
    trackers = {"time-aware": Tracker("bytetrack", frame_rate=30), "counting": Tracker("bytetrack", time_aware=False)}
    cap = cv2.VideoCapture(str(TUD_VIDEO))
    frames = []
    while (frame := cap.read()[1]) is not None:
        frames.append(frame)
    cap.release()
    assert len(frames) == 71
    imgsz = list(detector.preprocess(frames[:1]).shape[1:3])
    yolo = YOLO(str(DEFAULT_WEIGHTS), task="detect")
    results = yolo.track(str(TUD_VIDEO), tracker="bytetrack.yaml", stream=True, conf=0.1, imgsz=imgsz, verbose=False)

    maps = {name: ({}, {}) for name in trackers}  # their ID -> ours, ours -> theirs: one to one over the video
    compared = dict.fromkeys(trackers, 0)
    for i, (frame, theirs) in enumerate(zip(frames, results, strict=True)):
        dets = detector([frame])[0]
        for name, tracker in trackers.items():
            out = tracker.update(dets, i, frame)
            assert len(out) == len(dets) and torch.equal(out.confidence, dets.confidence)  # every row kept
            compared[name] += assert_same_tracks(out, theirs, f"{name}, frame {i}", *maps[name])
    for name, (ours_of, theirs_of) in maps.items():
        print(f"TUD-Campus, {name}: {compared[name]} tracked boxes, {len(ours_of)} tracks; theirs -> ours {ours_of}")
        assert compared[name] >= 200 and len(ours_of) >= 5, "too few tracked boxes to compare"
        assert sorted(theirs_of) == list(range(1, len(theirs_of) + 1)), "our IDs should run 1, 2, 3, ... without gaps"


def random_scene(rng: np.random.Generator, frames: int, objects: int = 6) -> list[Detections]:
    """Objects moving at random constant speeds with jitter, each missing in some frames and sometimes scored
    low (ByteTrack's second association), plus a few random low-score boxes."""
    start = rng.uniform([100, 150], [1100, 550], size=(objects, 2))  # [O, 2]
    speed = rng.uniform(-8, 8, size=(objects, 2))  # [O, 2]
    size = rng.uniform([40, 90], [90, 200], size=(objects, 2))  # [O, 2]
    scenes = []
    for f in range(frames):
        centre = start + f * speed + rng.normal(0, 1.5, size=(objects, 2))  # [O, 2]
        xyxy = np.concatenate([centre - size / 2, centre + size / 2], 1)  # [O, 4]
        score = np.where(rng.random(objects) < 0.15, rng.uniform(0.11, 0.24, objects), rng.uniform(0.3, 0.95, objects))
        seen = rng.random(objects) > 0.1
        clutter = rng.uniform(0, 1200, size=(2, 2))  # [2, 2] two low-score boxes somewhere
        clutter_xyxy = np.concatenate([clutter, clutter + 50], 1)
        scenes.append(
            make_dets(
                np.concatenate([xyxy[seen], clutter_xyxy]),
                np.concatenate([score[seen], rng.uniform(0.1, 0.2, 2)]),
                np.concatenate([np.zeros(seen.sum(), np.int64), [1, 1]]),
            )
        )
    return scenes


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_without_gaps_the_same_tracks_as_ultralytics_own_tracker(kind):
    """Time-aware at 30 frames/s without gaps, and call-counting with gaps, are Ultralytics' tracker exactly."""
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import ROOT, YAML, IterableSimpleNamespace

    rng = np.random.default_rng()
    scene = random_scene(rng, 60)
    cfg = IterableSimpleNamespace(**YAML.load(ROOT / "cfg" / "trackers" / f"{kind}.yaml"))
    frame_indices = {True: list(range(60)), False: np.cumsum(rng.integers(1, 5, 60)).tolist()}
    for time_aware, indices in frame_indices.items():
        reference = TRACKER_MAP[kind](cfg)
        ours = Tracker(kind, time_aware=time_aware)  # at 30 frames/s: the same buffer as Ultralytics'
        mapping, tracked = {}, 0
        for f, (dets, index) in enumerate(zip(scene, indices)):
            rows = torch.cat([dets.xyxy, dets.confidence[:, None], dets.class_id[:, None].float()], 1).numpy()
            expected = reference.update(Boxes(rows, (720, 1280)))  # [T, 8]
            out = ours.update(dets, index)
            assert int((out.track_id >= 0).sum()) == len(expected), f"frame {f}"
            if len(expected):
                rows_of = torch.from_numpy(expected[:, 7].astype(np.int64))
                assert torch.allclose(out.xyxy[rows_of], torch.from_numpy(expected[:, :4]), atol=1e-3)
                for their_id, our_id in zip(expected[:, 4].astype(int).tolist(), out.track_id[rows_of].tolist()):
                    assert mapping.setdefault(their_id, our_id) == our_id, f"frame {f}: IDs diverged"
            tracked += len(expected)
        assert len(set(mapping.values())) == len(mapping) >= 4 and tracked >= 100, (kind, time_aware)


# --- IDs ------------------------------------------------------------------------------------------------


def test_two_trackers_in_one_process_number_their_own_ids_from_1(monkeypatch):
    from ultralytics.trackers.basetrack import BaseTrack

    monkeypatch.setattr(BaseTrack, "_count", 1000)  # Ultralytics' process-wide counter, already used elsewhere
    rng = np.random.default_rng()
    a, b = Tracker("bytetrack"), Tracker("botsort")
    texture = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # a still camera for BoT-SORT's GMC
    p, q, r = (box(x, rng.uniform(200, 500)) for x in rng.uniform([150, 550, 950], [250, 650, 1050]))
    for f in range(4):
        out_a = a.update(make_dets([p, q]), f)
        out_b = b.update(make_dets([r]), f, texture)
        assert out_a.track_id.tolist() == [1, 2] and out_b.track_id.tolist() == [1], f
    c = Tracker("bytetrack")  # made after the others numbered theirs
    assert c.update(make_dets([p]), 0).track_id.tolist() == [1]
    # a third object in a, a second in b: unconfirmed on their first frame, then each tracker counts on by itself
    for f, expect_a, expect_b in [(4, [1, 2, -1], [1, -1]), (5, [1, 2, 3], [1, 2])]:
        assert a.update(make_dets([p, q, r]), f).track_id.tolist() == expect_a
        assert b.update(make_dets([r, p]), f, texture).track_id.tolist() == expect_b


# --- time, not calls ------------------------------------------------------------------------------------


def test_motion_is_predicted_over_frames_the_tracker_never_saw():
    """Seen on frames 0-5, then on frame 13 only: time-aware, the Kalman filter steps 8 times and finds the object
    where it moved to (same ID); counting calls, it steps once, the IoU match fails, the object gets a new ID."""
    rng = np.random.default_rng()
    speed = rng.uniform(14, 18)  # px/frame: 8 frames move it 112-144 px, more than its 80 px width
    x0, y = rng.uniform(100, 300), rng.uniform(200, 500)
    seen = [*range(6), 13, 14]
    ids = {}
    for time_aware in (True, False):
        tracker = Tracker("bytetrack", time_aware=time_aware)
        ids[time_aware] = [tracker.update(make_dets([box(x0 + speed * f, y)]), f).track_id.item() for f in seen]
    assert ids[True] == [1] * len(seen)
    # counting calls: lost at frame 13 (a new, unconfirmed track: -1), confirmed as 2 on frame 14
    assert ids[False] == [1] * 6 + [-1, 2]


@pytest.mark.parametrize("frame_rate, kept_for", [(30, 11), (60, 21), (15, 6)])
def test_a_lost_track_is_kept_track_buffer_frames_of_source_time(tmp_path, frame_rate, kept_for):
    """track_buffer 10 at 30 frames/s: a track lost after frame 4 is still matched 11 frames after it was last
    seen (Ultralytics matches it on its 11th lost frame, then removes it), not 12; at 60 frames/s twice as long.
    Counting calls, the same frames are two calls apart, and the track is kept."""
    config = write_config(tmp_path / "short.yaml", track_buffer=10)
    centre = np.random.default_rng().uniform(200, 600, size=2)
    for gap, time_aware, same in [(kept_for, True, True), (kept_for + 1, True, False), (kept_for + 1, False, True)]:
        tracker = Tracker(config, frame_rate=frame_rate, time_aware=time_aware)
        assert tracker.max_frames_lost == (int(frame_rate / 3) if time_aware else 10)
        for f in range(5):
            assert tracker.update(make_dets([box(*centre)]), f).track_id.tolist() == [1]
        tracker.update(make_dets([]), 5)  # nothing seen: the track is lost
        again = tracker.update(make_dets([box(*centre)]), 4 + gap).track_id.tolist()
        assert again == ([1] if same else [-1]), (frame_rate, gap, time_aware)


def test_frame_index_must_increase_when_time_aware():
    tracker = Tracker()
    tracker.update(make_dets([box(300, 300)]), 7)
    with pytest.raises(ValueError, match="increase"):
        tracker.update(make_dets([box(300, 300)]), 7)


# --- predicted boxes ------------------------------------------------------------------------------------


def test_predicted_moves_tracked_boxes_by_their_velocity():
    rng = np.random.default_rng()
    velocity = rng.uniform(-12, 12, size=2)  # px/frame
    start, clutter = rng.uniform(300, 600, size=2), rng.uniform(900, 1100, size=2)
    tracker = Tracker()
    for f in range(25):  # long enough for the Kalman velocity to settle within 0.25 px/frame
        # a moving person and a low-score box, which never becomes a track
        out = tracker.update(make_dets([box(*start + f * velocity), box(*clutter)], [0.9, 0.15]), f)
    assert out.track_id.tolist() == [1, -1]
    assert torch.allclose(tracker.predicted(out, 24).xyxy, out.xyxy, atol=1e-3)  # the update's own frame
    later = tracker.predicted(out, 26)
    shift = later.xyxy - out.xyxy  # [2, 4]
    kalman_velocity = torch.from_numpy(tracker._tracker.tracked_stracks[0].mean[4:6]).float()  # [2] x y
    assert torch.allclose(shift[0], (2 * kalman_velocity).repeat(2), atol=1e-3)  # the box moves, same size
    assert torch.allclose(shift[0], torch.tensor(2 * velocity, dtype=torch.float32).repeat(2), atol=1.0)
    assert torch.equal(later.xyxy[1], out.xyxy[1]) and torch.equal(later.track_id, out.track_id)
    half = tracker.predicted(out, 24.5).xyxy - out.xyxy  # fractional: the newest frame's capture time
    assert torch.allclose(half[0], shift[0] / 4, atol=1e-3)


# --- bad input ------------------------------------------------------------------------------------------


def test_bad_tracker_input_is_one_line_naming_it(tmp_path):
    cases = {
        "sort": "unknown tracker",
        str(tmp_path / "nowhere.yaml"): "no such file",
        write_config(tmp_path / "a.yaml", track_buffer=None): "missing track_buffer",
        write_config(tmp_path / "b.yaml", match_thresh="high"): "match_thresh is 'high'",
        write_config(tmp_path / "c.yaml", track_buffer=2.5): "track_buffer is 2.5",
        write_config(tmp_path / "d.yaml", tracker_type="ocsort"): "tracker_type is 'ocsort'",
        write_config(tmp_path / "e.yaml", tracker_type="botsort", gmc_method=None): "missing gmc_method",
        write_config(tmp_path / "g.yaml", track_low_thresh=0.5): "track_low_thresh is above track_high_thresh",
    }
    (tmp_path / "f.yaml").write_text("- not\n- a mapping\n")
    cases[str(tmp_path / "f.yaml")] = "not a readable YAML mapping"
    for name, message in cases.items():
        with pytest.raises(DetectorError, match=message) as e:
            Tracker(name)
        assert "\n" not in str(e.value) and name.split("/")[-1] in str(e.value), str(e.value)


def test_reid_is_off_unless_its_model_is_on_disk(tmp_path, capsys):
    config = write_config(tmp_path / "reid.yaml", tracker_type="botsort", with_reid=True, model="nowhere.pt")
    tracker = Tracker(config)
    assert tracker.config.with_reid is False and tracker._tracker.encoder is None
    assert "ReID off" in capsys.readouterr().err
    assert tracker.update(make_dets([box(300, 300)]), 0).track_id.tolist() == [1]


# --- outputs --------------------------------------------------------------------------------------------


def test_to_dict_has_track_id_only_when_tracking():
    dets = make_dets([box(100, 100), box(400, 300)], [0.9, 0.3], [0, 1])
    assert all("track_id" not in d for d in dets.to_dict()["detections"])
    tracked = Detections(dets.xyxy, dets.confidence, dets.class_id, NAMES, torch.tensor([7, -1]))
    records = json.loads(json.dumps(tracked.to_dict()))["detections"]
    assert [r["track_id"] for r in records] == [7, None]
    assert {k: v for k, v in records[0].items() if k != "track_id"} == dets.to_dict()["detections"][0]
    assert tracked[tracked.confidence < 0.5].track_id.tolist() == [-1] and tracked[0].track_id.tolist() == [7]
    assert dets[0].track_id is None
