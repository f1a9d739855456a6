"""Counting tracks: lines they cross (in and out) and zones they are in or enter, per class.

A track's position is the bottom-centre of its box, where a person or a car touches the ground. Every
geometric test runs over all boxes of a frame at once in numpy (signed distances to a line, point in
polygon by the even-odd rule, distance to a polygon's edges); only the per-track memory (which side, which
directions already counted) lives in dicts keyed by track id.

Jitter: boxes shake by a few pixels from frame to frame, so a bottom-centre near a line or a zone's edge
would hop from side to side. A position counts only when it is clearly on one side: farther from the line
(or edge) than ``margin`` times the box's height (0.1 by default: 18 px for a person 180 px tall). Nearer
than that, the track keeps the side it had. A line counts each track at most once per direction, so even a
person standing on the line and swaying by more than the margin counts once in and once out, never more.

Specs, as ``--line`` and ``--zone`` take them: ``x1,y1,x2,y2`` and ``x1,y1,x2,y2,x3,y3,...``, in frame
pixels or, when every number lies in 0..1, as fractions of the frame's width and height (a pixel line or
zone inside the frame's first pixel would mean nothing, so ``0,0,1,1`` is the frame's diagonal).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from detector.detections import Detections
from detector.errors import DetectorError

LINE_EXAMPLE = "e.g. --line 0,0.6,1,0.6 (fractions of the frame) or --line 0,300,640,300 (pixels)"
ZONE_EXAMPLE = "e.g. --zone 0.1,0.5,0.9,0.5,0.9,1,0.1,1 (fractions of the frame) or pixels"


@dataclass(frozen=True)
class Line:
    """A counting line in frame pixels, from (x1, y1) to (x2, y2)."""

    x1: float
    y1: float
    x2: float
    y2: float
    spec: str  # as given, for labels and messages


@dataclass(frozen=True)
class Zone:
    """A counting zone: a polygon in frame pixels (at least 3 corners, in drawing order)."""

    points: tuple[tuple[float, float], ...]
    spec: str


def _numbers(spec: str, option: str, example: str) -> list[float]:
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if not values or not all(map(math.isfinite, values)):
        raise DetectorError(f"{option} '{spec}': not comma-separated numbers; {example}")
    return values


def _to_pixels(values: list[float], spec: str, option: str, frame_wh: tuple[int, int], example: str) -> list[float]:
    """Fractions (every value in 0..1) scaled to the frame; pixels checked to lie on it."""
    w, h = frame_wh
    if all(0 <= v <= 1 for v in values):
        return [v * (w if i % 2 == 0 else h) for i, v in enumerate(values)]
    for i, v in enumerate(values):
        limit = w if i % 2 == 0 else h
        if not 0 <= v <= limit:
            axis = "x" if i % 2 == 0 else "y"
            raise DetectorError(
                f"{option} '{spec}': {axis} {v:g} is off the {w}x{h} frame; give pixels within 0..{w} (x) and "
                f"0..{h} (y), or fractions 0-1 of the frame; {example}"
            )
    return values


def parse_line(spec: str, frame_wh: tuple[int, int]) -> Line:
    """``x1,y1,x2,y2`` in pixels, or fractions 0-1 of the frame (``frame_wh``: width, height) when all four
    lie in 0..1. A malformed, zero-length or off-frame line raises `DetectorError` with one line."""
    values = _numbers(spec, "--line", LINE_EXAMPLE)
    if len(values) != 4:
        raise DetectorError(f"--line '{spec}': give 4 numbers x1,y1,x2,y2, not {len(values)}; {LINE_EXAMPLE}")
    x1, y1, x2, y2 = _to_pixels(values, spec, "--line", frame_wh, LINE_EXAMPLE)
    if math.hypot(x2 - x1, y2 - y1) < 1:
        raise DetectorError(
            f"--line '{spec}': its two ends are the same point; give two different ends, {LINE_EXAMPLE}"
        )
    return Line(x1, y1, x2, y2, spec)


def parse_zone(spec: str, frame_wh: tuple[int, int]) -> Zone:
    """``x1,y1,x2,y2,x3,y3,...`` (3 corners or more) in pixels, or fractions 0-1 of the frame when all lie in
    0..1. A malformed, degenerate (no area) or off-frame polygon raises `DetectorError` with one line."""
    values = _numbers(spec, "--zone", ZONE_EXAMPLE)
    if len(values) < 6 or len(values) % 2:
        raise DetectorError(
            f"--zone '{spec}': give x,y pairs of 3 corners or more (an even count of 6 numbers or more), "
            f"not {len(values)} numbers; {ZONE_EXAMPLE}"
        )
    values = _to_pixels(values, spec, "--zone", frame_wh, ZONE_EXAMPLE)
    xs, ys = np.array(values[0::2]), np.array(values[1::2])
    area = 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))  # shoelace
    if area < 1:
        raise DetectorError(
            f"--zone '{spec}': its corners enclose no area (in one line, or repeated); give the corners of a "
            f"polygon in drawing order, {ZONE_EXAMPLE}"
        )
    return Zone(tuple(zip(xs.tolist(), ys.tolist())), spec)


@dataclass(frozen=True)
class _Tracks:
    """The confirmed tracks of one frame: ids, bottom-centres, box heights, class names."""

    ids: list[int]
    points: np.ndarray  # [n, 2] float64
    heights: np.ndarray  # [n] float64
    classes: list[str]


def _confirmed(dets: Detections) -> _Tracks:
    track_id = getattr(dets, "track_id", None)
    if track_id is None:
        raise DetectorError("--line and --zone count tracks: turn tracking on with --track")
    keep = (track_id >= 0).cpu().numpy()
    xyxy = dets.xyxy.cpu().numpy()[keep].astype(np.float64)  # small arrays: numpy's per-call cost is torch's tenth
    points = np.stack(((xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]), axis=1)
    classes = [dets.names.get(k, str(k)) for k in dets.class_id.cpu().numpy()[keep].tolist()]
    return _Tracks(track_id.cpu().numpy()[keep].tolist(), points, xyxy[:, 3] - xyxy[:, 1], classes)


class _TrackMemory:
    """Per-track state for a counter; tracks unseen for ``forget_after`` updates are dropped (track ids are
    never reused, so a long live run does not grow without end)."""

    def __init__(self, forget_after: int) -> None:
        self.forget_after = forget_after
        self.updates = 0
        self.seen: dict[int, int] = {}

    def tick(self, ids: list[int], *states: dict) -> None:
        self.updates += 1
        self.seen.update((i, self.updates) for i in ids)
        if self.updates % 256 == 0:
            stale = [i for i, last in self.seen.items() if self.updates - last > self.forget_after]
            for i in stale:
                del self.seen[i]
                for state in states:
                    state.pop(i, None)


class LineCounter:
    """Counts the tracks whose bottom-centre crosses ``line``, in and out, per class.

    **In** is crossing from the line's left to its right as seen walking from (x1, y1) to (x2, y2) on the
    screen: for a line drawn left to right (``0,0.5,1,0.5``) in is downwards, for a line drawn top to bottom
    (``0.5,0,0.5,1``) in is leftwards; draw_counters marks the in side with an arrow. A crossing counts where
    the track's path from its last clear position on one side to its first clear position on the other meets
    the line within its two ends. Each track counts at most once per direction. Tracks with id -1 (not
    confirmed) are not counted.
    """

    def __init__(self, line: Line, margin: float = 0.1, forget_after: int = 3000) -> None:
        self.line = line
        self.margin = margin
        self._p1 = np.array([line.x1, line.y1])
        self._d = np.array([line.x2 - line.x1, line.y2 - line.y1])
        self._length = math.hypot(*self._d)
        self._side: dict[int, int] = {}  # track id -> -1 (left) or 1 (right): the last clear side
        self._last: dict[int, tuple[float, float]] = {}  # track id -> its last clear position
        self._done: dict[int, set[str]] = {}  # track id -> directions already counted
        self._memory = _TrackMemory(forget_after)
        self._counts = {"in": Counter(), "out": Counter()}

    def _signed_distance(self, points: np.ndarray) -> np.ndarray:
        """[n, 2] -> [n]: distance from the line, positive on its right (the in side)."""
        rel = points - self._p1
        return (self._d[0] * rel[:, 1] - self._d[1] * rel[:, 0]) / self._length

    def update(self, dets: Detections) -> None:
        """Take one frame's tracked detections (``dets.track_id`` set; -1 rows are skipped)."""
        tracks = _confirmed(dets)
        if tracks.ids:
            self._update(tracks)
        self._memory.tick(tracks.ids, self._side, self._last, self._done)

    def _update(self, tracks: _Tracks) -> None:
        distance = self._signed_distance(tracks.points)  # [n]
        band = self.margin * tracks.heights
        side = np.where(distance > band, 1, np.where(distance < -band, -1, 0))  # [n], 0: on the line
        prev_side = np.array([self._side.get(i, 0) for i in tracks.ids])
        prev = np.array([self._last.get(i, (math.nan, math.nan)) for i in tracks.ids])
        crossed = np.flatnonzero((side != 0) & (prev_side != 0) & (side != prev_side))
        # where the path prev -> now meets the line (signed distances of opposite signs), and whether that
        # point lies between the line's ends: its position along the line in 0..1
        before, now = self._signed_distance(prev[crossed]), distance[crossed]
        meet = prev[crossed] + (before / (before - now))[:, None] * (tracks.points[crossed] - prev[crossed])
        along = ((meet - self._p1) @ self._d) / self._length**2
        for k in crossed[(along >= 0) & (along <= 1)].tolist():
            track, direction = tracks.ids[k], "in" if side[k] > 0 else "out"
            done = self._done.setdefault(track, set())
            if direction not in done:
                done.add(direction)
                self._counts[direction][tracks.classes[k]] += 1
        points = tracks.points.tolist()
        for k in np.flatnonzero(side).tolist():
            self._side[tracks.ids[k]] = int(side[k])
            self._last[tracks.ids[k]] = tuple(points[k])

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """``{"in": {class_name: n}, "out": {class_name: n}}``, classes sorted by name."""
        return {direction: dict(sorted(c.items())) for direction, c in self._counts.items()}


def _inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """[n, 2] points, [P, 2] polygon -> [n] bool, by the even-odd rule over every (point, edge) pair."""
    px, py = points[:, None, 0], points[:, None, 1]  # [n, 1]
    a, b = polygon, np.roll(polygon, -1, axis=0)  # [P, 2] each edge a -> b
    straddles = (a[:, 1] > py) != (b[:, 1] > py)  # [n, P] the horizontal ray through the point meets the edge
    dy = np.where(b[:, 1] == a[:, 1], 1.0, b[:, 1] - a[:, 1])  # a flat edge never straddles: any divisor
    x_meet = a[:, 0] + (py - a[:, 1]) * (b[:, 0] - a[:, 0]) / dy
    return (straddles & (px < x_meet)).sum(axis=1) % 2 == 1


def _distance_to_edges(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """[n, 2] points, [P, 2] polygon -> [n]: distance from each point to the nearest edge."""
    a, ab = polygon, np.roll(polygon, -1, axis=0) - polygon  # [P, 2]
    rel = points[:, None, :] - a  # [n, P, 2]
    t = np.clip((rel * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)  # [n, P] nearest point of each edge
    return np.linalg.norm(rel - t[..., None] * ab, axis=-1).min(axis=1)


class ZoneCounter:
    """Occupancy and entries of a polygon zone, per class.

    **Occupancy**: the confirmed tracks of the latest frame whose bottom-centre is inside. **Entries**: each
    time a track comes inside, counted again when it leaves and comes back (one person walking in twice
    enters twice); a track first seen inside has entered too (it came from somewhere: a door, the frame's
    edge). Near the edge (within ``margin`` times the box's height) a track keeps its last state, so jitter
    at the edge neither flickers the occupancy nor adds entries: a new entry needs the track seen clearly
    outside, then clearly inside.
    """

    def __init__(self, zone: Zone, margin: float = 0.1, forget_after: int = 3000) -> None:
        self.zone = zone
        self.margin = margin
        self._polygon = np.array(zone.points, dtype=np.float64)
        self._inside: dict[int, bool] = {}
        self._memory = _TrackMemory(forget_after)
        self._entries: Counter = Counter()
        self._occupancy: Counter = Counter()

    def update(self, dets: Detections) -> None:
        """Take one frame's tracked detections (``dets.track_id`` set; -1 rows are skipped)."""
        tracks = _confirmed(dets)
        self._occupancy = Counter()
        if tracks.ids:
            inside = _inside_polygon(tracks.points, self._polygon).tolist()
            clear = (_distance_to_edges(tracks.points, self._polygon) > self.margin * tracks.heights).tolist()
            for track, now, certain, name in zip(tracks.ids, inside, clear, tracks.classes):
                before = self._inside.get(track)
                if not certain and before is not None:
                    now = before  # on the edge: as it was
                if now and not before:
                    self._entries[name] += 1
                if now:
                    self._occupancy[name] += 1
                self._inside[track] = now
        self._memory.tick(tracks.ids, self._inside)

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """``{"occupancy": {class_name: n}, "entries": {class_name: n}}``, classes sorted by name."""
        return {"occupancy": dict(sorted(self._occupancy.items())), "entries": dict(sorted(self._entries.items()))}


# drawing: a dark rim under every stroke and a darkened panel under text, readable on any picture
LINE_COLOR = (0, 230, 255)  # BGR: yellow
ZONE_COLOR = (255, 200, 0)  # BGR: light blue
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_CLASS_ROWS = 4


def _per_class(counts: dict[str, dict[str, int]], keys: tuple[str, str], words: tuple[str, str]) -> list[str]:
    """A totals row, then one row per class (at most MAX_CLASS_ROWS): 'in 3  out 1' / 'person: in 2  out 1'."""
    first, second = (counts[k] for k in keys)
    rows = [f"{words[0]} {sum(first.values())}  {words[1]} {sum(second.values())}"]
    names = sorted(set(first) | set(second))
    rows += [f"{n}: {words[0]} {first.get(n, 0)}  {words[1]} {second.get(n, 0)}" for n in names[:MAX_CLASS_ROWS]]
    if len(names) > MAX_CLASS_ROWS:
        rows.append(f"... {len(names) - MAX_CLASS_ROWS} more classes")
    return rows


def _panel(
    image: np.ndarray,
    rows: list[str],
    color: tuple[int, int, int],
    place: Callable[[int, int], tuple[float, float]],
) -> tuple[int, int, int, int]:
    """Text rows in white on a darkened panel with a ``color`` rim, readable on any picture. ``place(w, h)``
    gives the panel's top-left for its size; it is kept inside the image. Returns x, y, w, h."""
    h, w = image.shape[:2]
    scale = max(0.45, (h + w) / 2400)
    thickness, pad = max(1, round(scale * 2)), 4
    sizes = [cv2.getTextSize(row, FONT, scale, thickness) for row in rows]
    row_h = max(th + base for (_, th), base in sizes) + pad
    pw = min(max(tw for (tw, _), _ in sizes) + 2 * pad, w)
    ph = min(row_h * len(rows) + pad, h)
    left, top = place(pw, ph)
    x, y = min(max(round(left), 0), w - pw), min(max(round(top), 0), h - ph)
    panel = image[y : y + ph, x : x + pw]
    panel[:] = (panel * 0.3).astype(np.uint8)
    cv2.rectangle(image, (x, y), (x + pw - 1, y + ph - 1), color, 1)
    for i, row in enumerate(rows):
        baseline = y + (i + 1) * row_h - sizes[i][1]
        cv2.putText(image, row, (x + pad, baseline), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return x, y, pw, ph


def _stroke(image: np.ndarray) -> int:
    h, w = image.shape[:2]
    return max(2, round((h + w) / 600))


def _draw_line(image: np.ndarray, counter: LineCounter) -> None:
    line, thickness = counter.line, _stroke(image)
    p1, p2 = (round(line.x1), round(line.y1)), (round(line.x2), round(line.y2))
    cv2.line(image, p1, p2, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.line(image, p1, p2, LINE_COLOR, thickness, cv2.LINE_AA)
    for p in (p1, p2):
        cv2.circle(image, p, thickness + 2, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(image, p, thickness + 1, LINE_COLOR, -1, cv2.LINE_AA)
    # an arrow from the middle towards the in side (the right as seen from the first end): the unit normal n
    length = math.hypot(line.x2 - line.x1, line.y2 - line.y1)
    nx, ny = -(line.y2 - line.y1) / length, (line.x2 - line.x1) / length
    mx, my, reach = (line.x1 + line.x2) / 2, (line.y1 + line.y2) / 2, 6 * thickness + 10
    mid, tip = (round(mx), round(my)), (round(mx + nx * reach), round(my + ny * reach))
    cv2.arrowedLine(image, mid, tip, (0, 0, 0), thickness + 2, cv2.LINE_AA, tipLength=0.35)
    cv2.arrowedLine(image, mid, tip, LINE_COLOR, thickness, cv2.LINE_AA, tipLength=0.35)

    def out_side(pw: int, ph: int) -> tuple[float, float]:
        """Centred on the normal through the middle, on the out side, clear of the line and the arrow."""
        away = abs(nx) * pw / 2 + abs(ny) * ph / 2 + 2 * thickness
        return mx - nx * away - pw / 2, my - ny * away - ph / 2

    _panel(image, _per_class(counter.counts, ("in", "out"), ("in", "out")), LINE_COLOR, out_side)


def _draw_zone(image: np.ndarray, counter: ZoneCounter) -> None:
    thickness = _stroke(image)
    corners = np.round(np.array(counter.zone.points)).astype(np.int32).reshape(-1, 1, 2)
    cv2.polylines(image, [corners], True, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.polylines(image, [corners], True, ZONE_COLOR, thickness, cv2.LINE_AA)
    rows = _per_class(counter.counts, ("occupancy", "entries"), ("inside", "entered"))
    top = corners[np.argmin(corners[:, 0, 1]), 0]  # the highest corner: the panel hangs below it
    _panel(image, rows, ZONE_COLOR, lambda pw, ph: (top[0] - pw / 2, top[1] + thickness + 2))


def draw_counters(image: np.ndarray, counters: list[LineCounter | ZoneCounter]) -> np.ndarray:
    """Each line (with an arrow to its in side) and zone, with its counts per class; drawn in place."""
    for counter in counters:
        if isinstance(counter, LineCounter):
            _draw_line(image, counter)
        else:
            _draw_zone(image, counter)
    return image
