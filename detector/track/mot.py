"""MOTChallenge results files, the format every MOT tool reads: one row per box,
``frame,id,x,y,w,h,conf,-1,-1,-1`` (1-based frames, top-left corner, width and height in pixels)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from detector.detections import Detections
from detector.errors import DetectorError
from detector.sinks import _make_parent

COLUMNS = 10


class MotWriter:
    """Tracks into a MOTChallenge results file, frame by frame: only confirmed tracks (``track_id >= 0``),
    each frame's rows written and flushed at once, so that Ctrl-C or a crash leaves the file complete to
    the last frame written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _make_parent(self.path)
        try:
            self.file = open(self.path, "w", encoding="utf-8")
        except OSError as e:
            raise DetectorError(f"MOT file '{self.path}' cannot be written ({e.strerror}); choose another") from None
        self.rows = 0

    def write(self, frame_index: int, dets: Detections) -> None:
        """The tracks of frame ``frame_index`` (0-based, as the app counts frames; written 1-based)."""
        if frame_index < 0:
            raise ValueError(f"frame_index {frame_index} < 0: frames are counted from 0")
        track_id = getattr(dets, "track_id", None)
        if track_id is None:
            raise ValueError("MotWriter needs tracked detections (track_id set)")
        keep = track_id >= 0
        xyxy = dets.xyxy[keep].tolist()
        rows = [
            f"{frame_index + 1},{k},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{c:.5f},-1,-1,-1\n"
            for k, (x1, y1, x2, y2), c in zip(track_id[keep].tolist(), xyxy, dets.confidence[keep].tolist())
        ]
        self.file.write("".join(rows))
        self.file.flush()
        self.rows += len(rows)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> MotWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_mot(path: str | Path, frames: int | None = None) -> np.ndarray:
    """A MOT file (results or ground truth) as ``[K, 10]`` float64 rows ``frame,id,x,y,w,h,c7,c8,c9,c10``;
    the columns a row lacks (ground truth has 6 to 9) are NaN, so that a MOT16/17 9-column row is told from
    a 10-column one. Checked line by line: a malformed row, or a frame past ``frames`` (a video's length),
    raises `DetectorError` naming the file and line."""
    from detector.evaluate.ground_truth import read_text  # evaluate sits above track: imported when used

    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"MOT file '{path}' not found; check the path")
    rows = []
    for number, line in enumerate(read_text(path, "MOT file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            values = []
        if frames is not None and values and values[0].is_integer() and not 1 <= values[0] <= frames:
            raise DetectorError(
                f"{path} line {number}: frame {int(values[0])} is out of range: the video has {frames} frames, "
                f"numbered 1..{frames} in MOT files"
            )
        if (
            not 6 <= len(values) <= COLUMNS
            or not all(map(math.isfinite, values[:6]))
            or not values[0].is_integer()
            or values[0] < 1
            or min(values[4:6]) <= 0
        ):
            raise DetectorError(
                f"{path} line {number}: not a MOT row 'frame,id,x,y,w,h,...' (6 to 10 numbers, a whole frame "
                f"number from 1, a positive width and height): {line.strip()[:60]!r}"
            )
        rows.append(values + [math.nan] * (COLUMNS - len(values)))
    return np.array(rows, dtype=np.float64).reshape(-1, COLUMNS)
