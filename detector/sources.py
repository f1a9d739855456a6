"""Frame sources: image files, folders and globs; video files decoded ahead in a thread."""

from __future__ import annotations

import glob
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.errors import DetectorError

SAMPLE_VIDEO = Path(__file__).resolve().parent / "assets" / "people.mp4"  # CC BY 4.0, see assets/README.md
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def find_images(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and globs -> image paths; errors name the bad input."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DetectorError(f"folder '{item}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            found += images
        elif path.is_file():
            found.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise DetectorError(f"pattern '{item}' matches no files")
            found += matches
        else:
            raise DetectorError(f"image '{item}' not found: give image files, folders or globs")
    return found


def read_image(path: Path) -> np.ndarray:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise DetectorError(f"image '{path}' could not be read: not an image, or unreadable; check the file")
    return frame


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # [H, W, 3] BGR uint8
    index: int  # 0-based position in the source
    time_s: float  # position in the source, seconds


class VideoFile:
    """Every frame of a video file in order, decoded ahead in a thread so decoding overlaps inference.

    A frame that fails to decode is skipped and counted (``failed``); the run goes on with the next.
    """

    MAX_CONSECUTIVE_FAILURES = 300  # then the rest of the file is taken to be unreadable

    def __init__(self, path: str | Path, prefetch: int = 8) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DetectorError(f"video '{path}' not found: check the path")
        self.cap = cv2.VideoCapture(str(self.path))
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            self.cap.release()
            raise DetectorError(f"video '{path}' could not be decoded: not a video, or damaged beyond reading")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not 0 < self.fps < 1000:
            self.fps = 30.0  # some containers carry no rate
        self.size = (first.shape[1], first.shape[0])  # (w, h)
        self.expected = max(int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.decoded = 0
        self.failed = 0
        self._first = first
        self._queue: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, name="decode", daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        item, misses, index = (self._first, 0), 0, 0
        try:
            while not self._stop.is_set():
                if item is not None:
                    self._put(item)
                    misses = 0
                ok, image = self.cap.read()
                if ok:  # the timestamp keeps frame numbers true across damaged frames that were skipped
                    index = max(index + 1, round(self.cap.get(cv2.CAP_PROP_POS_MSEC) * self.fps / 1000))
                    item = (image, index)
                else:  # a damaged frame, or the end: keep reading past damage
                    item, misses = None, misses + 1
                    if misses >= self.MAX_CONSECUTIVE_FAILURES or (self.expected and index + 1 >= self.expected):
                        break
        finally:
            if not self._stop.is_set():  # reached the end: what the container lists but we never got
                self.failed = max(self.expected - self.decoded, 0)
            self._put(None)

    def _put(self, item: tuple[np.ndarray, int] | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                if item is not None:
                    self.decoded += 1
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Frame]:
        while (item := self._queue.get()) is not None:
            image, index = item
            yield Frame(image, index, index / self.fps)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.cap.release()
