"""Frame sources: image files, folders and globs; video files decoded ahead in a thread."""

from __future__ import annotations

import glob
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from detector.environment import quiet_stderr, run_in_idle_time
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
        self.first = first  # [H, W, 3], also the first frame the iteration yields
        self._queue: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, name="decode", daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        run_in_idle_time()
        item, misses, index = (self.first, 0), 0, 0
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
        while not self._stop.is_set():  # close() from another thread ends the iteration too
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                return
            image, index = item
            yield Frame(image, index, index / self.fps)

    def close(self) -> None:
        """Stop decoding and release the file. The capture is released only once the decoding thread has
        ended: releasing it while that thread is inside ``read()`` frees FFmpeg's buffers under it."""
        self._stop.set()
        self._thread.join()  # it checks the stop between frames; one frame of a file decodes in milliseconds
        self.cap.release()


# --- live sources: a capture thread keeps only the newest frame ----------------------------------


@dataclass(frozen=True)
class LiveFrame:
    image: np.ndarray  # [H, W, 3] BGR uint8
    index: int  # 0-based count of frames the source produced (dropped ones included)
    t_capture: float  # time.monotonic() when the frame was captured
    letterboxed: np.ndarray | None = None  # [1, h, w, 3] for the model, made in the capture thread


class NewestFrame:
    """A one-frame slot between a capture thread and its readers.

    The capture thread ``put``s every frame it decodes, overwriting the last; each reader ``wait_newer``
    than the frame it had, so it always gets the newest frame, never the same one twice, and never waits
    behind stale ones. Handed over with a Condition: no polling. A reader says how long it will be busy
    with the frame it takes (``busy_s``), so the capture thread knows which frames are worth decoding.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: LiveFrame | None = None
        self.closed = False
        self._waiting_busy_s: list[float] = []  # one entry per reader waiting now
        self.busy_until = 0.0  # time.monotonic() when the busy readers will want the next frame

    def put(self, frame: LiveFrame) -> None:
        with self._cond:
            self._frame = frame
            if self._waiting_busy_s:  # a waiting reader takes this frame now
                self.busy_until = time.monotonic() + max(self._waiting_busy_s)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_newer(self, than: int, timeout: float | None = None, busy_s: float = 0.0) -> LiveFrame | None:
        """The newest frame with ``index > than``; None once closed with nothing newer, or on timeout."""
        with self._cond:
            self._waiting_busy_s.append(busy_s)
            try:
                newer = self._cond.wait_for(
                    lambda: (self._frame is not None and self._frame.index > than) or self.closed, timeout
                )
            finally:
                self._waiting_busy_s.remove(busy_s)
            if newer and self._frame is not None and self._frame.index > than:
                self.busy_until = max(self.busy_until, time.monotonic() + busy_s)
                return self._frame
            return None

    def wanted(self, next_frame_at: float) -> bool:
        """Whether decoding the frame just grabbed is worth it: a reader waits now, or a busy reader will be
        free before the next frame comes, so this one will be the newest it can take."""
        return bool(self._waiting_busy_s) or self.busy_until <= next_frame_at


@dataclass
class CaptureStats:
    produced: int = 0  # frames the source delivered (decoded or skipped)
    gaps: int = 0  # times a stream dropped and was reconnected
    gap_seconds: float = 0.0
    state: str = "starting"  # starting | live | reconnecting | ended
    granted: str = ""  # what the camera actually gave: size, fps, fourcc
    recent: list[float] = field(default_factory=list)  # capture times of the last frames, for the rate

    def rate(self) -> float:
        return (len(self.recent) - 1) / (self.recent[-1] - self.recent[0]) if len(self.recent) > 1 else 0.0


def describe(cap: cv2.VideoCapture) -> str:
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    fourcc = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\x00") if code > 0 else "?"
    return f"{w}x{h} at {cap.get(cv2.CAP_PROP_FPS):.1f} fps, {fourcc or '?'} ({cap.getBackendName()})"


CAPTURE_BACKENDS = {
    "any": cv2.CAP_ANY,
    "v4l2": cv2.CAP_V4L2,
    "ffmpeg": cv2.CAP_FFMPEG,
    "gstreamer": cv2.CAP_GSTREAMER,
    "dshow": cv2.CAP_DSHOW,
    "msmf": cv2.CAP_MSMF,
    "avfoundation": cv2.CAP_AVFOUNDATION,
}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


@dataclass(frozen=True)
class CameraSettings:
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None  # e.g. MJPG: many USB cameras only reach full rate with it
    backend: str = "any"


def parse_camera(spec: str) -> int | str | None:
    """A camera index (``0``) or device path (``/dev/video0``), else None."""
    if spec.isdigit():
        return int(spec)
    if spec.startswith("/dev/video"):
        return spec
    return None


def open_camera(device: int | str, settings: CameraSettings) -> cv2.VideoCapture:
    """Open a camera with the requested settings; the error lists the cameras that do open."""
    with quiet_stderr():  # OpenCV warns on stderr for every backend it tries
        cap = cv2.VideoCapture(device, CAPTURE_BACKENDS[settings.backend])
    if cap.isOpened():
        if settings.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*settings.fourcc.ljust(4)[:4]))
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, settings.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, settings.height),
            (cv2.CAP_PROP_FPS, settings.fps),
        ):
            if value:
                cap.set(prop, value)
    if not cap.isOpened() or not cap.grab():
        cap.release()
        path = Path(f"/dev/video{device}" if isinstance(device, int) else device)
        if path.exists():
            raise DetectorError(
                f"camera '{device}' exists but could not be opened: busy in another program, or no permission "
                "(on Linux, join the 'video' group)"
            )
        found = ", ".join(f"{i} ({desc})" for i, desc in list_cameras()) or "none"
        raise DetectorError(f"no camera at '{device}'; cameras that open: {found}")
    return cap


def list_cameras(max_index: int = 10) -> list[tuple[int, str]]:
    """Camera indices that open, with what they give by default."""
    found = []
    for index in range(max_index):
        if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
            continue  # no device node: nothing to probe
        with quiet_stderr():
            cap = cv2.VideoCapture(index)
        if cap.isOpened() and cap.grab():
            found.append((index, describe(cap)))
        cap.release()
    return found


def open_stream(url: str, timeout_s: float) -> cv2.VideoCapture:
    """An RTSP/HTTP/RTMP stream, with open and read time-outs so a dead server never hangs us."""
    ms = int(timeout_s * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)


class ImageFolderCapture:
    """A folder of images behind the few ``cv2.VideoCapture`` calls a ``LiveSource`` makes: a slideshow."""

    def __init__(self, folder: Path, fps: float) -> None:
        self.paths = find_images([str(folder)])
        self.fps, self.position, self._image = fps, 0, None

    def isOpened(self) -> bool:  # noqa: N802  (OpenCV's names)
        return bool(self.paths)

    def grab(self) -> bool:
        if self.position >= len(self.paths):
            return False
        self._image = cv2.imread(str(self.paths[self.position]), cv2.IMREAD_COLOR)
        self.position += 1
        return self._image is not None or self.grab()  # an unreadable file is skipped

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return self._image is not None, self._image

    def get(self, prop: int) -> float:
        shape = self._image.shape if self._image is not None else (0, 0)
        return {
            cv2.CAP_PROP_FPS: self.fps,
            cv2.CAP_PROP_FRAME_WIDTH: shape[1],
            cv2.CAP_PROP_FRAME_HEIGHT: shape[0],
            cv2.CAP_PROP_FRAME_COUNT: len(self.paths),
        }.get(prop, 0.0)

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_POS_FRAMES:
            self.position = int(value)
        return True

    def getBackendName(self) -> str:  # noqa: N802
        return "image folder"

    def release(self) -> None:
        self._image = None


class LiveSource:
    """A capture thread feeding a ``NewestFrame`` slot.

    - camera (index or device path) and stream (URL): frames as they come; on a drop, reconnect with
      exponential backoff (state ``reconnecting``, counted in ``stats.gaps``);
    - simulated live (a video file, or a folder of images shown at ``settings.fps``): replayed on the wall
      clock at its own frame rate (times ``speed``); frames nobody took in time are dropped, as a camera's.

    Each frame is grabbed, but decoded (``retrieve``) only when a reader waits for it or ``decode_all`` is
    set (the raw recording needs every frame); ``prepare(image)``, where set, makes the model's input in
    this thread, so the model thread only runs the model. A simulated source decodes the next frame of its
    file while the model is idle where it can: a camera costs the model no CPU time, nor should the file.
    """

    RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds; the last repeats

    def __init__(
        self,
        spec: str,
        settings: CameraSettings = CameraSettings(),
        timeout_s: float = 5.0,
        loop: bool = False,
        on_frame: Callable[[LiveFrame], None] | None = None,
        speed: float = 1.0,
        prepare: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.spec, self.settings, self.timeout_s, self.loop, self.speed = spec, settings, timeout_s, loop, speed
        self.on_frame = on_frame  # called in the capture thread with every decoded frame (raw recording)
        self.prepare = prepare
        self._grab_s = 0.0  # how long decoding a frame takes, smoothed
        self.slot = NewestFrame()
        self.stats = CaptureStats()
        self._stop = threading.Event()
        camera = parse_camera(spec)
        if camera is not None:
            self.kind, self._open = "camera", lambda: open_camera(camera, settings)
        elif spec.lower().startswith(STREAM_PREFIXES):
            self.kind, self._open = "stream", lambda: open_stream(spec, timeout_s)
        elif Path(spec).is_file():
            self.kind, self._open = "simulated", lambda: cv2.VideoCapture(spec)
        elif Path(spec).is_dir():  # a slideshow at --fps (default 1 image a second)
            self.kind, self._open = "simulated", lambda: ImageFolderCapture(Path(spec), settings.fps or 1.0)
        else:
            raise DetectorError(
                f"source '{spec}' is not a camera index, device path, stream URL, video file or image folder"
            )
        self.cap = self._open()
        if not self.cap.isOpened() or not self.cap.grab():
            self.cap.release()
            what = {
                "stream": f"could not be opened within {timeout_s:.0f} s: check the URL and that the server is up",
                "simulated": "could not be decoded: not a video?",
            }.get(self.kind, "failed")
            raise DetectorError(f"source '{spec}' {what}")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not 0 < self.fps < 1000:
            self.fps = 30.0
        self.stats.granted = describe(self.cap)
        w, h = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.frame_hw: tuple[int, int] | None = (h, w) if w > 0 and h > 0 else None  # None: not known before frames
        # frames in a file or folder (0 for cameras and streams): how long one pass of a replay lasts
        self.frames = max(int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0) if self.kind == "simulated" else 0
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self.decode_all = on_frame is not None
        self.t_start = 0.0

    def start(self) -> LiveSource:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop capturing and release the device, only once the capture thread has ended (releasing a
        capture while a thread is inside ``grab()`` frees FFmpeg's or V4L2's buffers under it). Every call
        in that thread is bounded: stream reads by ``timeout_s``, waits by the stop event."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.cap.release()

    def _run(self) -> None:
        if self.kind == "simulated":
            run_in_idle_time()  # a camera costs the model no CPU: decoding the file should not either
        index, start = 0, time.monotonic()
        self.t_start = start  # simulated live: frame i is due at t_start + i / (fps * speed)
        grabbed = True  # the constructor grabbed the first frame
        self.stats.state = "live"
        try:
            while not self._stop.is_set():
                if not grabbed and not self._recover():
                    break
                t = time.monotonic()
                if self.kind == "simulated":
                    due = start + index / (self.fps * self.speed)
                    if t < due:  # wait for this frame's moment on the wall clock
                        self._stop.wait(due - t)
                        t = time.monotonic()
                    late = t - due > 1 / (self.fps * self.speed)  # behind: let this one go undecoded
                    t = due  # when a camera would have captured it: our own delays count in the latency
                else:
                    late = False
                self._record(t)
                if not late and (self.decode_all or self.slot.wanted(next_frame_at=t + 1 / (self.fps * self.speed))):
                    ok, image = self.cap.retrieve()
                    if ok:
                        frame = LiveFrame(image, index, t, self.prepare(image) if self.prepare else None)
                        if self.on_frame is not None:
                            self.on_frame(frame)
                        self.slot.put(frame)
                index += 1
                if self.kind == "simulated":
                    self._wait_for_idle_model(next_due=start + index / (self.fps * self.speed))
                t_grab = time.monotonic()
                grabbed = self.cap.grab()
                self._grab_s += (time.monotonic() - t_grab - self._grab_s) / 8
        finally:
            self.stats.state = "ended"
            self.slot.close()

    def _wait_for_idle_model(self, next_due: float) -> None:
        """Put off decoding the next frame until the model is done, as long as it still comes in time."""
        wake = min(self.slot.busy_until, next_due - 2 * self._grab_s - 0.002)
        if wake > time.monotonic():
            self._stop.wait(wake - time.monotonic())

    def _record(self, t: float) -> None:
        self.stats.produced += 1
        self.stats.recent = [*self.stats.recent[-59:], t]

    def _recover(self) -> bool:
        """After a failed grab: rewind a looping file, reconnect a camera or stream; False to end."""
        if self.kind == "simulated":
            if not self.loop:
                return False
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            return self.cap.grab()
        self.stats.state, self.stats.gaps = "reconnecting", self.stats.gaps + 1
        lost = time.monotonic()
        for attempt in range(10**9):
            self.cap.release()
            try:
                self.cap = self._open()
                if self.cap.isOpened() and self.cap.grab():
                    self.stats.state = "live"
                    self.stats.gap_seconds += time.monotonic() - lost
                    return True
            except DetectorError:
                pass  # a camera that is gone for now: keep trying
            delay = self.RECONNECT_DELAYS[min(attempt, len(self.RECONNECT_DELAYS) - 1)]
            if self._stop.wait(delay):
                return False
        return False
