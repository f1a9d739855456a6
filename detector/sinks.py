"""Where results go: annotated video, JSON lines, JSON files. Each writes so that a run cut short
(Ctrl-C, a crash) leaves what it wrote so far readable."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.errors import DetectorError


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DetectorError(f"output folder '{path.parent}' cannot be created ({e.strerror}); choose another") from None


def write_image(path: str | Path, frame: np.ndarray) -> None:
    path = Path(path)
    _make_parent(path)
    if not cv2.imwrite(str(path), frame):
        raise DetectorError(f"image '{path}' could not be written; choose another output folder")


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C libraries writing to file descriptor 2 for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class VideoSink:
    """MP4 at the input's size and frame rate: H.264 where this OpenCV build can encode it, else mp4v.

    ``close()`` writes the index that makes the file playable; callers close in ``finally``.
    """

    CODECS = ("avc1", "mp4v")

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        _make_parent(self.path)
        for codec in self.CODECS:
            with _quiet_stderr():  # FFmpeg prints its own lines when a codec is missing
                self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), fps, size)
            if self.writer.isOpened():
                self.codec = codec
                break
        else:
            raise DetectorError(f"video '{self.path}' cannot be written (no MP4 encoder here); try another --out")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


class JsonlSink:
    """One JSON object per line, flushed line by line so that every finished line survives an interruption."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _make_parent(self.path)
        self.file = open(self.path, "w", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def write_json_atomic(path: str | Path, record: Any) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    path = Path(path)
    _make_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
