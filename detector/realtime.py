"""What a camera user would have seen: a video file replayed in real time through the live loop.

The file plays on the wall clock at its own frame rate (``LiveSource`` in simulated-live mode) and the
model takes the newest frame whenever it is free, exactly as with a camera. Afterwards every frame of the
file gets the boxes that were on screen while it was: those of the newest result finished before the next
frame came. A frame the model never saw thus counts with the boxes last shown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detector.detections import Detections
from detector.live import Inference, Result
from detector.pipeline import Detector
from detector.sources import LiveSource
from detector.track.run import Tracking


@dataclass
class RealtimeReplay:
    shown: list[Detections]  # per frame of the file, the boxes on screen while it was
    shown_from: list[int]  # per frame, the frame those boxes were found in (-1: none yet)
    fps: float  # the file's frame rate
    inferred: int  # frames the model saw
    seconds: float
    counts: list[str] = field(default_factory=list)  # with --track and lines or zones: the counts in words

    @property
    def frames(self) -> int:
        return len(self.shown)

    @property
    def dropped(self) -> int:
        return self.frames - self.inferred

    @property
    def effective_fps(self) -> float:
        return self.inferred / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        return [
            f"realtime: {self.frames} frames at {self.fps:.1f} fps; the model saw {self.inferred} "
            f"({self.effective_fps:.1f} frames/s), {self.dropped} dropped, shown with the boxes last drawn"
        ]


def replay_realtime(
    detector: Detector, video: str | Path, tracking: Callable[[LiveSource], Tracking | None] | None = None
) -> RealtimeReplay:
    """``tracking``: makes the run's `Tracking` for the opened source, or None. With it, each frame shows the
    boxes where their tracks' motion put them at that frame (unless ``predict_boxes`` is off)."""
    source = LiveSource(str(video))
    try:
        track = tracking(source) if tracking is not None else None
    except BaseException:
        source.stop()
        raise
    finished: list[tuple[float, Result]] = []  # (when the boxes were ready, result)
    on_result = lambda r: finished.append((time.monotonic(), r))  # noqa: E731
    inference = Inference(detector, source, threading.Event(), on_result=on_result, tracking=track)
    source.start()
    inference.start()
    try:
        inference.join()
    finally:  # Ctrl-C included: both threads have ended when this returns
        inference.stop.set()
        source.stop()
        inference.join()
        if track is not None:
            track.close()
    if inference.error is not None:
        raise inference.error
    total = source.stats.produced
    ready = np.array([t for t, _ in finished])  # [R] increasing
    next_frame_due = source.t_start + (np.arange(total) + 1) / source.fps  # [F]
    on_screen = np.searchsorted(ready, next_frame_due, side="right") - 1  # [F] index into finished, -1: none
    empty = Detections.empty(detector.names)
    return RealtimeReplay(
        shown=[finished[k][1].boxes_at(f) if k >= 0 else empty for f, k in enumerate(on_screen.tolist())],
        shown_from=[finished[k][1].frame.index if k >= 0 else -1 for k in on_screen],
        fps=source.fps,
        inferred=len(finished),
        seconds=(ready[-1] - source.t_start) if len(ready) else 0.0,
        counts=track.count_lines() if track is not None else [],
    )
