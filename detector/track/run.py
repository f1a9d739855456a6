"""One source's tracking in a run: the tracker, its line and zone counters, trails and the MOT output.

Every path (`detector live`, `demo`, `video`, `eval-video`, `--realtime`) goes through ``Tracking.update``
in frame order, right after the detector; what is drawn, written and counted comes from its result.

The detector runs at `TRACKER_CONF` while tracking (ByteTrack's second association needs the low-confidence
boxes), and ``conf`` (the user's ``--conf``) decides what is shown and written. Counting uses every confirmed
track, shown or not: a person does not stop crossing a line when their score dips.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from detector.detections import Detections
from detector.render import class_color
from detector.track.counting import LineCounter, ZoneCounter, draw_counters, parse_line, parse_zone
from detector.track.mot import MotWriter
from detector.track.tracker import TRACKER_CONF, Tracker


@dataclass
class TrackingOptions:
    """What the command line asked for (`add_tracking_options`)."""

    tracker: str = "bytetrack"
    lines: list[str] = field(default_factory=list)
    zones: list[str] = field(default_factory=list)
    trails: int = 0  # last centres drawn per track
    mot: Path | None = None
    predict_boxes: bool = True  # draw tracks where their motion puts them at the newest frame
    time_aware: bool = True  # False: count calls, as Ultralytics does (for comparison)


@dataclass(frozen=True)
class Tracked:
    """One frame's tracking result: what to show, and how each shown box moves per source frame."""

    dets: Detections  # at the user's conf, with track_id
    velocity: torch.Tensor  # [N, 4] xyxy change per source frame (0 for untracked boxes)
    frame_index: int

    def at(self, frame_index: float) -> Detections:
        """The boxes moved to ``frame_index`` (the newest frame), by their tracks' constant velocity."""
        return replace(self.dets, xyxy=self.dets.xyxy + (frame_index - self.frame_index) * self.velocity)


class Tracking:
    def __init__(self, options: TrackingOptions, frame_rate: float, frame_wh: tuple[int, int], conf: float) -> None:
        self.options, self.conf = options, conf
        self.tracker = Tracker(options.tracker, frame_rate=frame_rate, time_aware=options.time_aware)
        self.counters: list[LineCounter | ZoneCounter] = [LineCounter(parse_line(s, frame_wh)) for s in options.lines]
        self.counters += [ZoneCounter(parse_zone(s, frame_wh)) for s in options.zones]
        self.trails: dict[int, deque[tuple[int, int]]] = {}
        self.mot = MotWriter(options.mot) if options.mot else None
        self._lock = threading.Lock()  # the live window draws trails and counts while the model thread updates
        self.mot_classes: torch.Tensor | None = None  # [K] only these classes' tracks in the MOT file

    @staticmethod
    def detector_conf(conf: float) -> float:
        """The detector's threshold while tracking: low enough for ByteTrack's second association."""
        return min(conf, TRACKER_CONF)

    def update(
        self, dets: Detections, frame_index: int, image: np.ndarray | None = None, predict: bool = True
    ) -> Tracked:
        """``predict``: work out how the shown boxes move (live and --realtime draw them on later frames)."""
        tracked = self.tracker.update(dets, frame_index, image)  # every box, track_id -1 where unconfirmed
        with self._lock:
            for counter in self.counters:
                counter.update(tracked)
            if self.options.trails:
                self._extend_trails(tracked)
        if self.mot is not None:
            scored = tracked if self.mot_classes is None else tracked[torch.isin(tracked.class_id, self.mot_classes)]
            self.mot.write(frame_index, scored)
        keep = tracked.confidence >= self.conf  # [N]
        shown = tracked[keep]
        velocity = torch.zeros_like(shown.xyxy)  # [N, 4]
        if predict and self.options.predict_boxes:
            velocity = self.tracker.predicted(shown, frame_index + 1).xyxy - shown.xyxy
        return Tracked(shown, velocity, frame_index)

    def _extend_trails(self, dets: Detections) -> None:
        ids = dets.track_id.tolist()
        centres = ((dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2).round().int().tolist()  # [N, 2]
        for track, centre in zip(ids, centres):
            if track >= 0:
                self.trails.setdefault(track, deque(maxlen=self.options.trails)).append(tuple(centre))
        alive = set(ids)
        if len(self.trails) > 4 * len(alive) + 64:  # long runs: forget tracks long gone
            self.trails = {t: points for t, points in self.trails.items() if t in alive}

    def draw(self, image: np.ndarray) -> np.ndarray:
        """Trails and counters on ``image`` (in place), under the boxes drawn afterwards."""
        with self._lock:
            for track, points in self.trails.items():
                if len(points) > 1:
                    cv2.polylines(image, [np.array(points, np.int32)], False, class_color(track), 2, cv2.LINE_AA)
            return draw_counters(image, self.counters) if self.counters else image

    def counts(self) -> dict[str, dict]:
        """``{"line 1": {"in": {...}, "out": {...}}, "zone 1": {"occupancy": ..., "entries": ...}}``."""
        out: dict[str, dict] = {}
        lines = zones = 0
        with self._lock:
            for counter in self.counters:
                if isinstance(counter, LineCounter):
                    lines += 1
                    out[f"line {lines}"] = counter.counts
                else:
                    zones += 1
                    out[f"zone {zones}"] = counter.counts
        return out

    def count_lines(self) -> list[str]:
        """The counts in words, one line per line or zone: ``line 1: in 3 (person 3), out 1 (person 1)``."""

        def part(word: str, per_class: dict[str, int]) -> str:
            detail = ", ".join(f"{name} {n}" for name, n in per_class.items())
            return f"{word} {sum(per_class.values())}" + (f" ({detail})" if detail else "")

        return [f"{name}: " + ", ".join(part(k, v) for k, v in c.items()) for name, c in self.counts().items()]

    def close(self) -> None:
        if self.mot is not None:
            self.mot.close()
