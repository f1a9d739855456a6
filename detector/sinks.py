"""Where results go: annotated video, JSON lines, JSON files. Each writes so that a run cut short
(Ctrl-C, a crash) leaves what it wrote so far readable."""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detector.environment import quiet_stderr, run_in_idle_time
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


class VideoSink:
    """MP4 at the input's size and frame rate: H.264 where this OpenCV build can encode it, else mp4v.

    ``close()`` writes the index that makes the file playable; callers close in ``finally``.
    """

    CODECS = ("avc1", "mp4v")

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        _make_parent(self.path)
        for codec in self.CODECS:
            with quiet_stderr():  # FFmpeg prints its own lines when a codec is missing
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


class RateMeasuringVideo:
    """An MP4 recording whose frame rate is measured from the frames' own timestamps, not assumed.

    Live frames come at whatever rate the camera or the model manages; the first second is buffered to
    measure it, then the file is opened at that rate.
    """

    MEASURE_SECONDS = 1.0

    def __init__(self, path: str | Path, fallback_fps: float) -> None:
        self.path = Path(path)
        self.fallback_fps = fallback_fps
        self._buffer: list[tuple[np.ndarray, float]] = []
        self._sink: VideoSink | None = None
        self.fps = 0.0
        _make_parent(self.path)

    def write(self, frame: np.ndarray, t: float) -> None:
        if self._sink is not None:
            self._sink.write(frame)
            return
        self._buffer.append((frame, t))
        if t - self._buffer[0][1] >= self.MEASURE_SECONDS:
            self._open()

    def _open(self) -> None:
        span = self._buffer[-1][1] - self._buffer[0][1]
        self.fps = (len(self._buffer) - 1) / span if span > 0 else self.fallback_fps
        h, w = self._buffer[0][0].shape[:2]
        self._sink = VideoSink(self.path, round(self.fps, 2), (w, h))
        for frame, _ in self._buffer:
            self._sink.write(frame)
        self._buffer.clear()

    @property
    def frames(self) -> int:
        return self._sink.frames if self._sink is not None else len(self._buffer)

    def close(self) -> None:
        if self._sink is None and self._buffer:
            self._open()
        if self._sink is not None:
            self._sink.close()


class InThread:
    """Runs ``fn(item)`` for each ``put`` item in order, in its own thread (encoding, drawing, writing
    off the caller's thread). An error is kept and re-raised by ``check``/``close`` in the caller."""

    def __init__(self, fn: Callable[[Any], None], name: str, maxsize: int = 16) -> None:
        self.fn = fn
        self.error: BaseException | None = None
        self._inbox: queue.Queue = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        run_in_idle_time()  # writing never takes a core from the model
        while (item := self._inbox.get()) is not _END:
            if self.error is None:  # after an error, keep draining so producers never block
                try:
                    self.fn(item)
                except BaseException as e:
                    self.error = e

    def put(self, item: Any) -> None:
        self.check()
        self._inbox.put(item)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Finish what is queued, then stop; re-raises the first error."""
        self._inbox.put(_END)
        self._thread.join()
        self.check()


_END = object()
