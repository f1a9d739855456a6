"""Line and zone counting (detector/track/counting.py) and the MOTChallenge results writer
(detector/track/mot.py), on hand-made tracks whose counts are known."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch

from detector import Detections, DetectorError
from detector.track.counting import (
    LINE_COLOR,
    ZONE_COLOR,
    Line,
    LineCounter,
    ZoneCounter,
    _distance_to_edges,
    _inside_polygon,
    _panel,
    _per_class,
    draw_counters,
    parse_line,
    parse_zone,
)
from detector.track.mot import MotWriter, read_mot

NAMES = {0: "person", 2: "car"}
FRAME = (640, 480)


def box(x: float, y: float, h: float = 100, w: float = 40) -> list[float]:
    """A box whose bottom-centre is (x, y)."""
    return [x - w / 2, y - h, x + w / 2, y]


def tracked(boxes: list[list[float]], ids: list[int], classes: list[int] | None = None) -> Detections:
    n = len(boxes)
    return Detections(
        torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        torch.linspace(0.9, 0.5, n) if n else torch.zeros(0),
        torch.tensor(classes if classes is not None else [0] * n, dtype=torch.int64),
        NAMES,
        torch.tensor(ids, dtype=torch.int64),
    )


def walk(counter, path: list[tuple[float, float]], track: int = 1, cls: int = 0) -> None:
    """One track along ``path`` (bottom-centres), one frame per point."""
    for x, y in path:
        counter.update(tracked([box(x, y)], [track], [cls]))


# --- specs ---------------------------------------------------------------------------------------------------


def test_lines_in_pixels_and_fractions():
    assert parse_line("0,240,640,240", FRAME) == Line(0, 240, 640, 240, "0,240,640,240")
    line = parse_line("0, 0.5, 1, 0.5", FRAME)
    assert (line.x1, line.y1, line.x2, line.y2) == (0, 240, 640, 240)
    line = parse_line("0.25,0,0.75,1", (1280, 720))
    assert (line.x1, line.y1, line.x2, line.y2) == (320, 0, 960, 720)
    line = parse_line("0,0,1,1", FRAME)  # every number in 0..1: fractions, the diagonal
    assert (line.x2, line.y2) == (640, 480)
    assert parse_line("640,0,0,480", FRAME).x1 == 640  # the frame's edge is on the frame


def test_zones_in_pixels_and_fractions():
    zone = parse_zone("100,100,300,100,300,300", FRAME)
    assert zone.points == ((100, 100), (300, 100), (300, 300))
    zone = parse_zone("0.25,0.25,0.75,0.25,0.75,0.75,0.25,0.75", FRAME)
    assert zone.points == ((160, 120), (480, 120), (480, 360), (160, 360))


@pytest.mark.parametrize(
    "spec, words",
    [
        ("1,2,3", "4 numbers"),
        ("1,2,3,4,5", "4 numbers"),
        ("a,b,c,d", "not comma-separated numbers"),
        ("", "not comma-separated numbers"),
        ("0,nan,1,1", "not comma-separated numbers"),
        ("0.5,0.5,0.5,0.5", "same point"),
        ("10,10,10,10", "same point"),
        ("0,0,700,10", "x 700 is off the 640x480 frame"),
        ("0,-5,100,100", "y -5 is off the 640x480 frame"),
        ("0,0,100,481", "y 481 is off"),
    ],
)
def test_bad_lines_say_what_to_do(spec, words):
    with pytest.raises(DetectorError) as e:
        parse_line(spec, FRAME)
    message = str(e.value)
    assert words in message and f"'{spec}'" in message and "--line" in message and "\n" not in message


@pytest.mark.parametrize(
    "spec, words",
    [
        ("1,2,3,4", "3 corners or more"),
        ("0,0,100,0,100", "3 corners or more"),
        ("0,0,x,0,100,100", "not comma-separated numbers"),
        ("0,0,100,100,200,200", "no area"),
        ("10,10,10,10,10,10", "no area"),
        ("0,0,700,0,0,400", "x 700 is off"),
        ("0,0,100,0,0,-1", "y -1 is off"),
    ],
)
def test_bad_zones_say_what_to_do(spec, words):
    with pytest.raises(DetectorError) as e:
        parse_zone(spec, FRAME)
    message = str(e.value)
    assert words in message and f"'{spec}'" in message and "--zone" in message and "\n" not in message


# --- lines -----------------------------------------------------------------------------------------------------


def test_crossing_in_and_out():
    """A line drawn left to right: in is downwards."""
    counter = LineCounter(parse_line("0,240,640,240", FRAME))
    walk(counter, [(300, y) for y in range(150, 351, 20)], track=1)  # downwards: in
    walk(counter, [(400, y) for y in range(350, 149, -20)], track=2)  # upwards: out
    walk(counter, [(500, y) for y in range(150, 231, 20)], track=3)  # comes near, turns back: nothing
    walk(counter, [(500, y) for y in range(230, 149, -20)], track=3)
    assert counter.counts == {"in": {"person": 1}, "out": {"person": 1}}


def test_in_is_the_right_of_the_line_seen_from_its_first_end():
    """A line drawn top to bottom: in is leftwards; drawn bottom to top, rightwards."""
    down, up = LineCounter(parse_line("0.5,0,0.5,1", FRAME)), LineCounter(parse_line("0.5,1,0.5,0", FRAME))
    for counter in (down, up):
        walk(counter, [(x, 300) for x in range(200, 441, 40)], track=1)  # rightwards
    assert down.counts == {"in": {}, "out": {"person": 1}}
    assert up.counts == {"in": {"person": 1}, "out": {}}


def test_fractions_count_as_pixels():
    a, b = LineCounter(parse_line("0,0.5,1,0.5", FRAME)), LineCounter(parse_line("0,240,640,240", FRAME))
    for counter in (a, b):
        walk(counter, [(320, y) for y in (100, 200, 300, 400)])
    assert a.counts == b.counts == {"in": {"person": 1}, "out": {}}


def test_jitter_on_the_line_counts_once():
    counter = LineCounter(parse_line("0,240,640,240", FRAME))  # margin: 0.1 x 100 px box height = 10 px
    path = [(300, 150)] + [(300, 240 + (8 if i % 2 else -8)) for i in range(40)] + [(300, 330)]
    walk(counter, path)
    assert counter.counts == {"in": {"person": 1}, "out": {}}
    # swaying by more than the margin, back and forth: once in, once out, never more
    walk(counter, [(320, 240 + (30 if i % 2 else -30)) for i in range(40)], track=2)
    assert counter.counts == {"in": {"person": 2}, "out": {"person": 1}}


def test_jitter_within_the_margin_never_counts():
    counter = LineCounter(parse_line("0,240,640,240", FRAME))
    walk(counter, [(300, 240 + (9 if i % 2 else -9)) for i in range(40)])
    assert counter.counts == {"in": {}, "out": {}}


def test_per_class():
    counter = LineCounter(parse_line("0,240,640,240", FRAME))
    for y in range(150, 351, 20):  # two people and a car in one frame each step
        counter.update(tracked([box(100, y), box(300, y), box(500, 500 - y)], [1, 2, 3], [0, 0, 2]))
    assert counter.counts == {"in": {"person": 2}, "out": {"car": 1}}


def test_segment_ends_are_respected():
    counter = LineCounter(parse_line("200,240,440,240", FRAME))
    walk(counter, [(100, y) for y in range(150, 351, 20)], track=1)  # left of the segment
    walk(counter, [(500, y) for y in range(150, 351, 20)], track=2)  # right of it
    # ends within the segment's span, but its path met the line's extension at x = 190
    walk(counter, [(180, 200), (200, 280)], track=3)
    assert counter.counts == {"in": {}, "out": {}}
    walk(counter, [(210, 200), (230, 280)], track=4)  # met at x = 220: within
    walk(counter, [(300, y) for y in range(150, 351, 20)], track=5)
    assert counter.counts == {"in": {"person": 2}, "out": {}}


def test_a_diagonal_crossing_is_placed_where_the_path_meets_the_line():
    counter = LineCounter(parse_line("100,100,300,300", FRAME))  # diagonal; in: below-left of it
    walk(counter, [(250, 150), (150, 250)], track=1)  # meets at (200, 200): in the middle
    walk(counter, [(340, 240), (240, 340)], track=2)  # meets at (290, 290): near the end, within
    walk(counter, [(420, 380), (380, 420)], track=3)  # meets at (400, 400): beyond the end
    assert counter.counts["in"] == {"person": 2}


def test_unconfirmed_tracks_are_not_counted_and_untracked_input_is_refused():
    counter = LineCounter(parse_line("0,240,640,240", FRAME))
    for y in range(150, 351, 20):
        counter.update(tracked([box(300, y)], [-1]))
    counter.update(tracked([], []))
    assert counter.counts == {"in": {}, "out": {}}
    untracked = dataclasses.replace(tracked([box(300, 200)], [1]), track_id=None)  # tracking off
    with pytest.raises(DetectorError, match="--track"):
        counter.update(untracked)


def test_many_tracks_at_once():
    """100 tracks crossing in random directions at random places: every one counted once, where it crossed."""
    rng = np.random.default_rng()
    counter = LineCounter(parse_line("0,240,640,240", FRAME))
    xs, down = rng.uniform(10, 630, 100), rng.random(100) < 0.5
    for y in range(100, 381, 10):
        ys = np.where(down, y, 480 - y)
        counter.update(tracked([box(x, yy) for x, yy in zip(xs, ys)], list(range(1, 101))))
    assert counter.counts == {"in": {"person": int(down.sum())}, "out": {"person": int((~down).sum())}}


# --- zones -----------------------------------------------------------------------------------------------------

SQUARE = "100,100,300,100,300,300,100,300"


def test_zone_occupancy_and_entries():
    counter = ZoneCounter(parse_zone(SQUARE, FRAME))
    counter.update(tracked([box(50, 200)], [1]))
    assert counter.counts == {"occupancy": {}, "entries": {}}
    counter.update(tracked([box(200, 200)], [1]))
    assert counter.counts == {"occupancy": {"person": 1}, "entries": {"person": 1}}
    counter.update(tracked([box(200, 210), box(250, 250, h=60), box(150, 150)], [1, 2, 3], [0, 2, 0]))
    assert counter.counts == {"occupancy": {"car": 1, "person": 2}, "entries": {"car": 1, "person": 2}}
    counter.update(tracked([box(350, 200)], [1]))  # 1 leaves; 2 and 3 are not seen this frame
    assert counter.counts == {"occupancy": {}, "entries": {"car": 1, "person": 2}}
    counter.update(tracked([box(200, 200)], [1]))  # and comes back: a second entry
    assert counter.counts == {"occupancy": {"person": 1}, "entries": {"car": 1, "person": 3}}


def test_zone_edge_jitter_neither_flickers_nor_adds_entries():
    counter = ZoneCounter(parse_zone(SQUARE, FRAME))  # margin 10 px for 100 px boxes
    counter.update(tracked([box(50, 200)], [1]))
    for i in range(20):
        counter.update(tracked([box(100 + (6 if i % 2 else -6), 200)], [1]))
        assert counter.counts == {"occupancy": {}, "entries": {}}
    counter.update(tracked([box(150, 200)], [1]))  # clearly in
    for i in range(20):
        counter.update(tracked([box(100 + (6 if i % 2 else -6), 200)], [1]))
        assert counter.counts == {"occupancy": {"person": 1}, "entries": {"person": 1}}
    counter.update(tracked([box(40, 200)], [1]))
    counter.update(tracked([box(150, 200)], [1]))
    assert counter.counts == {"occupancy": {"person": 1}, "entries": {"person": 2}}


def test_a_concave_zone_in_fractions():
    counter = ZoneCounter(parse_zone("0.1,0.1,0.9,0.1,0.9,0.9,0.5,0.9,0.5,0.5,0.1,0.5", FRAME))  # an L
    counter.update(tracked([box(200, 400, h=40), box(500, 400, h=40), box(200, 150, h=40)], [1, 2, 3]))
    assert counter.counts == {"occupancy": {"person": 2}, "entries": {"person": 2}}


def test_point_in_polygon_matches_opencv():
    rng = np.random.default_rng()
    polygon = np.array([[50, 50], [400, 80], [250, 200], [420, 400], [60, 300], [150, 180]], dtype=np.float64)
    points = rng.uniform(0, 480, (5000, 2))
    inside, distance = _inside_polygon(points, polygon), _distance_to_edges(points, polygon)
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    signed = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])
    clear = np.abs(signed) > 1e-3
    assert clear.sum() > 4900
    np.testing.assert_array_equal(inside[clear], signed[clear] > 0)
    np.testing.assert_allclose(distance, np.abs(signed), atol=1e-3)


# --- drawing ---------------------------------------------------------------------------------------------------


def near(image: np.ndarray, x: int, ys: range, color: tuple[int, int, int]) -> bool:
    """Some pixel of column ``x`` within ``ys`` is close to ``color``."""
    return bool((np.abs(image[ys.start : ys.stop, x].astype(int) - color).max(axis=1) < 40).any())


@pytest.mark.parametrize("background", [0, 128, 255])
def test_draw_counters_on_any_background(background):
    line = LineCounter(parse_line("0,240,640,240", FRAME))
    zone = ZoneCounter(parse_zone(SQUARE, FRAME))
    for counter in (line, zone):
        walk(counter, [(200, y) for y in range(150, 351, 20)])
    image = np.full((480, 640, 3), background, np.uint8)
    assert draw_counters(image, [line, zone]) is image
    assert near(image, 600, range(230, 251), LINE_COLOR) and near(image, 20, range(230, 251), LINE_COLOR)
    assert near(image, 250, range(90, 111), ZONE_COLOR) and near(image, 300, range(250, 280), ZONE_COLOR)
    assert near(image, 320, range(250, 275), LINE_COLOR)  # the arrow to the in side: below a left-to-right line


@pytest.mark.parametrize("background", [0, 128, 255])
def test_count_labels_are_white_on_a_dark_panel(background):
    image = np.full((480, 640, 3), background, np.uint8)
    x, y, w, h = _panel(image, ["in 3  out 1", "person: in 3  out 1"], LINE_COLOR, lambda pw, ph: (600, 470))
    assert x + w <= 640 and y + h <= 480  # kept inside the image
    inner = image[y + 1 : y + h - 1, x + 1 : x + w - 1].astype(int)
    text = (inner > 200).all(axis=2)
    assert text.sum() > 40  # white letters
    assert np.median(inner[~text]) <= 0.3 * background + 1  # on a panel darkened to 30%, whatever was there
    line = LineCounter(parse_line("0,240,640,240", FRAME))
    walk(line, [(200, y) for y in range(150, 351, 20)])
    assert _per_class(line.counts, ("in", "out"), ("in", "out")) == ["in 1  out 0", "person: in 1  out 0"]


# --- MOT results -----------------------------------------------------------------------------------------------


def test_mot_writer_rows_and_completeness_after_each_write(tmp_path):
    path = tmp_path / "out" / "tracks.txt"
    writer = MotWriter(path)
    writer.write(0, tracked([[10, 20, 50, 120], [0, 0, 5, 5], [100.5, 50, 140.25, 90]], [3, -1, 7]))
    first = path.read_text()  # before close: what Ctrl-C would leave
    assert first.splitlines() == [
        "1,3,10.00,20.00,40.00,100.00,0.90000,-1,-1,-1",
        "1,7,100.50,50.00,39.75,40.00,0.50000,-1,-1,-1",
    ]
    writer.write(1, tracked([], []))
    writer.write(4, tracked([[1, 2, 3, 4]], [3]))
    rows = read_mot(path)
    assert rows.shape == (3, 10)
    np.testing.assert_array_equal(rows[:, :2], [[1, 3], [1, 7], [5, 3]])
    np.testing.assert_allclose(rows[2, 2:7], [1, 2, 2, 2, 0.9])
    assert (rows[:, 7:] == -1).all()
    writer.close()
    assert path.read_text().startswith(first) and writer.rows == 3


def test_mot_writer_needs_tracks_and_a_writable_place(tmp_path):
    writer = MotWriter(tmp_path / "t.txt")
    with pytest.raises(ValueError):
        writer.write(0, Detections.empty(NAMES))
    writer.close()
    (tmp_path / "file").write_text("")
    with pytest.raises(DetectorError, match="cannot be"):
        MotWriter(tmp_path / "file" / "t.txt")


def test_read_mot_checks_each_line(tmp_path):
    path = tmp_path / "gt.txt"
    path.write_text("1,1,10,10,5,5,1,1,0.5\n\n2,1,11,10,5,5\n")
    rows = read_mot(path)
    assert rows.shape == (2, 10)
    assert rows[0, 8] == 0.5 and np.isnan(rows[0, 9]) and np.isnan(rows[1, 6:]).all()
    for bad in ("1,1,10,10,5", "0,1,10,10,5,5", "1.5,1,10,10,5,5", "1,1,10,10,0,5", "1,1,a,10,5,5"):
        path.write_text(f"1,1,10,10,5,5\n{bad}\n")
        with pytest.raises(DetectorError, match="line 2"):
            read_mot(path)
    with pytest.raises(DetectorError, match="not found"):
        read_mot(tmp_path / "missing.txt")
