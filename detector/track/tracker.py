"""`Tracker`: Ultralytics' ByteTrack or BoT-SORT on our `Detections`, told the real time between frames.

The Kalman filter, the association and the track bookkeeping are Ultralytics' own (`ultralytics.trackers`);
this module feeds them and fixes what goes wrong around them:

- Time, not calls. Ultralytics' trackers count calls: when the model sees only some of a camera's frames, a
  lost track expires after ``track_buffer`` calls, however long that was, and the motion model steps once
  over any gap, so a moving object is looked for where it was and gets a new ID (ultralytics#4284, #8951).
  Here the tracker's frame counter follows the source's frame index, a lost track is kept ``track_buffer``
  frames at 30 frames/s of source time (ByteTrack's ``frame_rate / 30 * track_buffer``), and the Kalman
  filter predicts once per source frame elapsed.
- IDs of our own, from 1 per `Tracker`, numbered in the order tracks are confirmed: two trackers in one
  process never share a counter (`BaseTrack._count` was global in Ultralytics) and tentative tracks that
  never got confirmed leave no gaps.
- ``lap`` is a declared dependency, checked here: Ultralytics would pip-install it at run time, offline too.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.detections import Detections
from detector.errors import DetectorError

TRACKER_CONF = 0.1  # what the detector's threshold becomes while tracking (Ultralytics tracks with conf 0.1)

TRACKERS = ("bytetrack", "botsort")  # the tracker_type values we run, by Ultralytics' names


def _unit(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _gmc(v: Any) -> bool:
    return v in {"sparseOptFlow", "orb", "sift", "ecc", "none", None}


# Each field the tracker reads -> (what it must be, the check). Ultralytics reads them as attributes deep inside
# update(), where a missing one is an AttributeError about 'default.yaml' on the first frame.
_UNIT = ("a number from 0 to 1", _unit)
_BYTETRACK_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "track_high_thresh": _UNIT,
    "track_low_thresh": _UNIT,
    "new_track_thresh": _UNIT,
    "track_buffer": ("a whole number of frames, 0 or more", _count),
    "match_thresh": _UNIT,
    "fuse_score": ("true or false", _flag),
}
FIELDS = {
    "bytetrack": _BYTETRACK_FIELDS,
    "botsort": {
        **_BYTETRACK_FIELDS,
        "gmc_method": ("one of sparseOptFlow, orb, sift, ecc, none", _gmc),
        "proximity_thresh": _UNIT,
        "appearance_thresh": _UNIT,
        "with_reid": ("true or false", _flag),
    },
}


def _builtin_configs() -> Path:
    from ultralytics.utils import ROOT

    return ROOT / "cfg" / "trackers"


def load_config(tracker: str | Path) -> Any:
    """``bytetrack``, ``botsort`` or a tracker .yaml in Ultralytics' format -> its checked config
    (an ``IterableSimpleNamespace``, as Ultralytics' trackers take it)."""
    from ultralytics.utils import YAML, IterableSimpleNamespace

    name = str(tracker)
    if name in TRACKERS:
        path = _builtin_configs() / f"{name}.yaml"
    elif name.lower().endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        if not path.is_file() and path.name == name and name.lower() in {f"{t}.yaml" for t in TRACKERS}:
            path = _builtin_configs() / name.lower()  # Ultralytics' own names, as model.track takes them
        if not path.is_file():
            raise DetectorError(f"--tracker {name}: no such file; give bytetrack, botsort or an existing tracker .yaml")
    else:
        raise DetectorError(
            f"--tracker {name}: unknown tracker; use bytetrack, botsort or the path of a tracker .yaml "
            f"(Ultralytics' format, e.g. {_builtin_configs() / 'bytetrack.yaml'})"
        )
    try:
        cfg = YAML.load(path)
    except (ValueError, OSError) as e:
        reason = str(e).splitlines()[0]
        raise DetectorError(f"--tracker {path}: not a readable YAML mapping ({reason}); fix the file") from None
    kind = cfg.get("tracker_type")
    if kind not in TRACKERS:
        raise DetectorError(f"--tracker {path}: tracker_type is {kind!r}; set it to bytetrack or botsort")
    fields = FIELDS[kind]
    missing = [key for key in fields if key not in cfg]
    if missing:
        raise DetectorError(
            f"--tracker {path}: missing {', '.join(missing)}; add them (Ultralytics' {kind}.yaml has each, "
            f"with its default, in {_builtin_configs()})"
        )
    for key, (what, ok) in fields.items():
        if not ok(cfg[key]):
            raise DetectorError(f"--tracker {path}: {key} is {cfg[key]!r}; it must be {what}")
    if cfg["track_low_thresh"] > cfg["track_high_thresh"]:
        raise DetectorError(f"--tracker {path}: track_low_thresh is above track_high_thresh; swap or lower it")
    if kind == "botsort" and cfg["with_reid"]:
        model = cfg.get("model", "auto")
        if not (isinstance(model, str) and model != "auto" and Path(model).expanduser().is_file()):
            # "auto" takes features from a PyTorch model's head, which Detections do not carry; anything else is a
            # model file, downloaded by Ultralytics when missing
            print(f"note: --tracker {path}: ReID off, its model {model!r} is not a file on disk", file=sys.stderr)
            cfg["with_reid"] = False
    return IterableSimpleNamespace(**cfg)


@functools.cache
def _tracker_classes() -> dict[str, type]:
    """Ultralytics' trackers, each made to predict once per source frame elapsed (imported on first use: the
    import needs ``lap``, which Ultralytics would otherwise try to pip-install)."""
    if importlib.util.find_spec("lap") is None:
        raise DetectorError("tracking needs the lap package, which is missing: pip install 'lap>=0.5'")
    from ultralytics.trackers.bot_sort import BOTSORT
    from ultralytics.trackers.byte_tracker import BYTETracker

    class Stepping:
        """Predicts ``steps`` times per update: once per source frame since the last one it saw."""

        steps = 1

        def multi_predict(self, tracks: list) -> None:
            for _ in range(self.steps):  # each step is Ultralytics' vectorised predict over all tracks
                super().multi_predict(tracks)

    class SteppingBYTETracker(Stepping, BYTETracker):
        pass

    class SteppingBOTSORT(Stepping, BOTSORT):
        pass

    return {"bytetrack": SteppingBYTETracker, "botsort": SteppingBOTSORT}


class Tracker:
    """One source's tracks: ``tracker.update(dets, frame_index) -> dets`` with ``track_id`` set.

    ``tracker``: ``bytetrack``, ``botsort`` or a tracker .yaml in Ultralytics' format. ``frame_rate``: the
    source's frames per second (lost tracks are kept ``track_buffer / 30`` seconds). ``time_aware=False``
    behaves exactly as Ultralytics' tracker does, counting calls.
    """

    def __init__(self, tracker: str = "bytetrack", frame_rate: float = 30.0, time_aware: bool = True) -> None:
        if not frame_rate > 0:
            raise DetectorError(f"frame rate {frame_rate}: must be above 0 frames/s")
        self.config = load_config(tracker)
        self._tracker = _tracker_classes()[self.config.tracker_type](self.config)
        self.frame_rate, self.time_aware = float(frame_rate), time_aware
        if time_aware:  # ByteTrack's rule, which Ultralytics kept with frame_rate fixed at 30
            self._tracker.max_frames_lost = int(frame_rate / 30.0 * self.config.track_buffer)
        from ultralytics.trackers.utils.kalman_filter import KalmanFilterXYWH

        self._aspect = not isinstance(self._tracker.kalman_filter, KalmanFilterXYWH)  # XYAH: width = a * h
        self._first: int | None = None  # the source frame index of the first update: frame 1 to Ultralytics
        self._last: int | None = None  # the source frame index of the last update
        self._frame_wh: torch.Tensor | None = None  # [4] w h w h of the last update's image, for clipping
        # Ultralytics' IDs of the live confirmed tracks, sorted, and ours for them
        self._theirs = np.zeros(0, np.int64)  # [K]
        self._ours = np.zeros(0, np.int64)  # [K]
        self._next_id = 1
        # the last update's output tracks, for predicted(): our IDs, sorted, and their Kalman means
        self._state_ids = torch.zeros(0, dtype=torch.int64)  # [T]
        self._state_means = torch.zeros(0, 8, dtype=torch.float64)  # [T, 8]: box (x y a h or x y w h), velocity

    @property
    def max_frames_lost(self) -> int:
        """How many frames (source frames when time-aware, else calls) a lost track is kept."""
        return self._tracker.max_frames_lost

    def update(self, dets: Detections, frame_index: int, image: np.ndarray | None = None) -> Detections:
        """One frame's detections (conf >= `TRACKER_CONF`, frame pixels) -> the same rows with ``track_id``
        (-1 where not a confirmed track) and, on tracked rows, the tracker's box, as ``model.track`` shows them.

        ``frame_index``: the source's frame index; gaps (frames the model never saw) are fine. ``image``: the
        frame (BGR), for BoT-SORT's camera-motion compensation and ReID, and to clip tracker boxes to.
        """
        from ultralytics.engine.results import Boxes

        tracker = self._tracker
        frame_index = int(frame_index)
        if self.time_aware:
            if self._last is not None and frame_index <= self._last:
                raise ValueError(f"frame_index {frame_index} after {self._last}: it must increase")
            if self._first is None:
                self._first = frame_index
            frame_id = frame_index - self._first + 1
            tracker.steps = 1 if self._last is None else frame_index - self._last
            self._drop_expired(frame_id)
            tracker.frame_id = frame_id - 1  # update() counts it up by one
        self._last = frame_index

        rows = torch.cat([dets.xyxy, dets.confidence[:, None], dets.class_id[:, None].float()], 1)  # [N, 6]
        shape = image.shape[:2] if image is not None else (0, 0)
        if image is not None:
            self._frame_wh = torch.tensor([shape[1], shape[0]] * 2, dtype=torch.float32)
        # [T, 8]: x1 y1 x2 y2, Ultralytics' track ID, score, class, row in dets; float32
        tracks = tracker.update(Boxes(rows.detach().float().cpu().numpy(), shape), image)
        shown = [s for s in tracker.tracked_stracks if s.is_activated]  # the tracks of `tracks`, in its order
        self._forget_dead()

        track_id = torch.full((len(dets),), -1, dtype=torch.int64)  # [N]
        xyxy = dets.xyxy.detach().cpu().clone()  # [N, 4]
        if len(tracks):
            index = torch.from_numpy(tracks[:, 7].astype(np.int64))  # [T]
            ids = torch.from_numpy(self._our_ids(tracks[:, 4].astype(np.int64)))  # [T]
            track_id[index] = ids
            xyxy[index] = self._clip(torch.from_numpy(tracks[:, :4]).float())
            order = torch.argsort(ids)  # [T]
            self._state_ids = ids[order]
            self._state_means = torch.from_numpy(np.stack([s.mean for s in shown]))[order]  # [T, 8]
        else:
            self._state_ids = torch.zeros(0, dtype=torch.int64)
            self._state_means = torch.zeros(0, 8, dtype=torch.float64)
        return replace(dets, xyxy=xyxy, track_id=track_id)

    def predicted(self, dets: Detections, frame_index: float) -> Detections:
        """``dets`` (the last update's result) with each tracked box where its track's constant-velocity Kalman
        state puts it at ``frame_index`` (fractional: e.g. the newest frame's capture time in source frames);
        boxes of track -1, or of tracks the last update did not show, unchanged; clipped to the last image.

        Boxes are drawn on the newest frame, one inference after the frame they were found on: this moves them
        to where the object is now. Counting calls (``time_aware=False``), velocities are per call, so this is
        right only where every frame was seen.
        """
        if dets.track_id is None or self._last is None or not len(self._state_ids) or not len(dets):
            return dets
        ids = dets.track_id  # [N]
        pos = torch.searchsorted(self._state_ids, ids).clamp(max=len(self._state_ids) - 1)  # [N]
        found = (self._state_ids[pos] == ids) & (ids >= 0)  # [N]
        mean = self._state_means[pos[found]]  # [F, 8]
        box = mean[:, :4] + (float(frame_index) - self._last) * mean[:, 4:]  # [F, 4]: x y a h (or x y w h)
        width = box[:, 2] * box[:, 3] if self._aspect else box[:, 2]  # [F]
        half = torch.stack([width, box[:, 3]], 1) / 2  # [F, 2]
        xyxy = dets.xyxy.clone()  # [N, 4]
        xyxy[found] = self._clip(torch.cat([box[:, :2] - half, box[:, :2] + half], 1).float())
        return replace(dets, xyxy=xyxy)

    def _clip(self, xyxy: torch.Tensor) -> torch.Tensor:
        """Tracker boxes ``[T, 4]`` clipped to the frame, as ``model.track`` shows them (a Kalman box runs past the
        edge as its object leaves); unclipped where no image was given."""
        return xyxy if self._frame_wh is None else xyxy.clamp(min=torch.zeros(4), max=self._frame_wh)

    def _drop_expired(self, frame_id: int) -> None:
        """Remove the tracks that Ultralytics, seeing every frame, would have removed by ``frame_id``: unseen for
        more than ``max_frames_lost + 1`` frames (it still matches a track at ``max_frames_lost + 1``, then
        removes it). Never fires without gaps; it also bounds the Kalman steps over a gap by the buffer."""
        tracker = self._tracker
        limit = tracker.max_frames_lost + 1
        expired = [s for s in tracker.tracked_stracks + tracker.lost_stracks if frame_id - s.end_frame > limit]
        if not expired:
            return
        gone = set(map(id, expired))
        for track in expired:
            track.mark_removed()
        tracker.tracked_stracks = [s for s in tracker.tracked_stracks if id(s) not in gone]
        tracker.lost_stracks = [s for s in tracker.lost_stracks if id(s) not in gone]
        tracker.removed_stracks.extend(expired)

    def _our_ids(self, theirs: np.ndarray) -> np.ndarray:
        """Ultralytics' track IDs ``[T]`` -> ours ``[T]``; new ones numbered on from this tracker's own counter in
        the order Ultralytics made them (its IDs only grow)."""
        new = np.setdiff1d(theirs, self._theirs)  # [M] sorted, unique
        if len(new):
            self._theirs = np.concatenate([self._theirs, new])
            self._ours = np.concatenate([self._ours, np.arange(self._next_id, self._next_id + len(new))])
            self._next_id += len(new)
            order = np.argsort(self._theirs, kind="stable")
            self._theirs, self._ours = self._theirs[order], self._ours[order]
        return self._ours[np.searchsorted(self._theirs, theirs)]

    def _forget_dead(self) -> None:
        """Drop the ID pairs of removed tracks: a live run's map stays as small as its live tracks."""
        tracker = self._tracker
        alive = np.fromiter((s.track_id for s in tracker.tracked_stracks + tracker.lost_stracks), np.int64)  # [L]
        keep = np.isin(self._theirs, alive)  # [K]
        self._theirs, self._ours = self._theirs[keep], self._ours[keep]
