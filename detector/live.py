"""The live loop: capture -> detect -> render -> sinks, each stage in its own thread.

    capture thread   LiveSource: newest frame only, in a NewestFrame slot      (sources.py)
    model thread     Inference: takes the newest frame whenever it is free
    main thread      the window: redraws every camera frame with the latest detections, reads keys
    writer threads   recordings (InThread), JSON lines
    serve threads    with --serve: the browser view (detector/serve/), fed the shown pictures and results

The window's keys and the browser act on one ``Controls`` object (detector/serve/controls.py).

The window never waits for the model. Boxes are drawn on the newest frame, not on the (older) frame they
were found in: the picture stays live, and the boxes trail moving objects by one inference at most.
``latency_ms`` is what a person sees: from the capture of the frame the model looked at to the moment
its boxes are on screen (or, without a window, written out).
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.detections import Detections
from detector.errors import DetectorError
from detector.pipeline import Detector
from detector.render import draw_detections, draw_hud
from detector.serve.controls import Controls, Request
from detector.serve.server import ServeOptions, WebServer
from detector.sinks import InThread, JsonlSink, RateMeasuringVideo, write_image, write_json_atomic
from detector.sources import LiveFrame, LiveSource
from detector.track.run import Tracked, Tracking

WINDOW = "detector"


@dataclass(frozen=True)
class Result:
    frame: LiveFrame  # the frame the model looked at
    dets: Detections
    infer_ms: float
    tracked: Tracked | None = None  # with --track: the boxes and how they move

    def boxes_at(self, frame_index: int) -> Detections:
        """The boxes to draw on frame ``frame_index``: where their tracks' motion puts them, with --track."""
        return self.tracked.at(frame_index) if self.tracked is not None else self.dets


class Inference(threading.Thread):
    """Runs the model on the newest frame, over and over; ``latest`` is the last result."""

    def __init__(
        self,
        detector: Detector,
        source: LiveSource,
        paused: threading.Event,
        on_result=None,
        tracking: Tracking | None = None,
        predict_boxes: bool = True,
    ) -> None:
        """``predict_boxes``: work out where tracked boxes move, for a picture that draws them on later frames."""
        super().__init__(name="model", daemon=True)
        self.detector, self.source, self.on_result, self.tracking = detector, source, on_result, tracking
        self.predict_boxes = predict_boxes
        source.prepare = lambda image: detector.preprocess([image])  # letterboxed while we run the last frame
        self.latest: Result | None = None
        self.count = 0
        self.dropped = 0  # frames captured but never given to the model
        self.times_ms: deque[float] = deque(maxlen=60)
        self.paused = paused  # the run's Controls.paused
        self.stop = threading.Event()
        self.ready = threading.Event()  # warmed up: the source may start
        self.error: BaseException | None = None

    def run(self) -> None:
        last = -1
        try:
            # the first call allocates and tunes: done now, it would drop the first frames and skew the
            # frame rate the recordings measure over their first second. In this thread: PyTorch's CPU
            # threads belong to the thread that first calls it (yolo11n.pt at 320 on 2 cores ran at 41
            # frames/s after a warm-up in the main thread, 62-67 after one here). At the source's frame size:
            # the model is compiled for the input shape that size letterboxes to
            frame_hw = self.source.frame_hw or self.detector.imgsz
            self.detector([np.full((*frame_hw, 3), 114, np.uint8)])
            self.ready.set()
            while not self.stop.is_set():
                # say how long we will be busy: the capture thread decodes again just before we are free
                busy_s = sum(self.times_ms) / len(self.times_ms) / 1e3 if self.times_ms else 0.0
                frame = self.source.slot.wait_newer(last, timeout=0.2, busy_s=busy_s)
                if frame is None:
                    if self.source.slot.closed:
                        return
                    continue
                if self.paused.is_set():
                    continue
                self.dropped += frame.index - last - 1 if last >= 0 else frame.index
                last = frame.index
                start = time.perf_counter()
                dets = self.detector([frame.image], frame.letterboxed)[0]
                tracked = None
                if self.tracking is not None:  # in frame order, right after the model: the gaps are real
                    tracked = self.tracking.update(dets, frame.index, frame.image, self.predict_boxes)
                    dets = tracked.dets
                self.times_ms.append((time.perf_counter() - start) * 1e3)
                self.latest = Result(frame, dets, self.times_ms[-1], tracked)
                self.count += 1
                if self.on_result is not None:
                    self.on_result(self.latest)
        except BaseException as e:  # re-raised by the main thread
            self.error = e
        finally:
            self.ready.set()

    def rate(self) -> float:
        """Frames/s the model can take (1000 / mean ms of its last frames); safe from any thread."""
        times = list(self.times_ms)  # a copy: the model thread appends
        return 1e3 / (sum(times) / len(times)) if times else 0.0


class LatencyLog:
    """Capture-to-shown latencies; percentiles over the last few hundred and over the whole run."""

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=300)
        self.all: list[float] = []

    def add(self, ms: float) -> None:
        self.recent.append(ms)
        self.all.append(ms)

    @staticmethod
    def percentile(values, q: float) -> float:
        return float(np.percentile(np.fromiter(values, float), q)) if len(values) else float("nan")


@dataclass
class LiveOutputs:
    jsonl: Path | None = None
    record: Path | None = None  # annotated, as shown
    record_raw: Path | None = None  # camera frames as captured
    snapshots: Path = Path("runs/live")


def display_problem() -> str | None:
    """Why a window cannot open here, or None."""
    if "NONE" in cv2.getBuildInformation().split("GUI:")[1].splitlines()[0]:
        return "this OpenCV build has no GUI (opencv-python-headless?)"
    if sys.platform.startswith("linux") and not os.environ.get("WAYLAND_DISPLAY"):
        display = os.environ.get("DISPLAY", "")
        if not display:
            return "no display (DISPLAY is not set)"
        if display.startswith(":"):  # a local X server: its socket must answer, or Qt aborts the process
            number = display[1:].split(".")[0]
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(f"/tmp/.X11-unix/X{number}")
            except OSError:
                return f"no X server answers on DISPLAY={display}"
    return None


class LiveRun:
    """Wires a source, the detector and the sinks; ``run()`` returns when the user quits or the source ends.

    ``show``: the local window; ``serve``: the browser view. With either, the drawing loop composes the
    newest frame with the latest boxes for both; with neither, results are written as the model gives them.
    """

    def __init__(
        self,
        detector: Detector,
        source: LiveSource,
        outputs: LiveOutputs,
        show: bool = True,
        hud: bool = True,
        duration_s: float | None = None,
        tracking: Tracking | None = None,
        serve: ServeOptions | None = None,
    ) -> None:
        self.detector, self.source, self.outputs, self.tracking = detector, source, outputs, tracking
        self.show, self.duration_s = show, duration_s
        self.latency = LatencyLog()
        # whose conf the slider and +/- move: with --track, what is shown (the detector then runs lower)
        self.controls = Controls(tracking or detector, detector, hud=hud)
        # outputs and threads start in run(), which closes and joins every one of them on its way out
        self.jsonl: JsonlSink | None = None
        self.recording: RateMeasuringVideo | None = None
        self.recorder: InThread | None = None
        self.raw: RateMeasuringVideo | None = None
        self.raw_writer: InThread | None = None
        self.server = WebServer(serve, self.controls, self.state, self.snapshot_files) if serve else None
        self.drawing = show or serve is not None
        self.inference = Inference(
            detector,
            source,
            self.controls.paused,
            on_result=None if self.drawing else self._shown,
            tracking=tracking,
            predict_boxes=self.drawing,  # without a picture, results are final as the model gives them
        )
        self.shown_frames = 0
        self.snapshots: dict[int, tuple[Path, Path]] = {}  # number -> (png, json)
        self.interrupted = threading.Event()
        self.started = time.monotonic()

    # --- what happens when boxes reach the user ---------------------------------------------------

    def _shown(self, result: Result, canvas: np.ndarray | None = None) -> None:
        """Boxes of ``result`` are now on screen (window, browser) or final (headless): log and write them."""
        now = time.monotonic()
        latency_ms = (now - result.frame.t_capture) * 1e3
        self.latency.add(latency_ms)
        if self.jsonl is not None or self.server is not None:  # the JSON line, made once for both
            record = {
                "frame": result.frame.index,
                "time_s": round(result.frame.index / self.source.fps, 4),
                "t_capture": round(result.frame.t_capture, 6),
                "latency_ms": round(latency_ms, 2),
                **result.dets.to_dict(),
                **self._counts(),
            }
            if self.jsonl is not None:
                self.jsonl.write(record)
            if self.server is not None:
                self.server.publish_event(record)
        if canvas is None and self.recorder is not None:  # headless: record what the model saw
            image = result.frame.image.copy()
            if self.tracking is not None:
                self.tracking.draw(image)
            self.recorder.put((draw_detections(image, result.dets), result.frame.t_capture))

    def _counts(self) -> dict:
        """``{"counts": ...}`` where lines or zones count, else nothing."""
        return {"counts": self.tracking.counts()} if self.tracking is not None and self.tracking.counters else {}

    def _start_recording(self, path: Path) -> None:
        self.recording = RateMeasuringVideo(path, self.source.fps)
        recording = self.recording
        self.recorder = InThread(lambda item: recording.write(*item), name="record")

    def _stop_recording(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recording.close()
            print(f"recorded {self.recording.frames} frames at {self.recording.fps:.1f} fps: {self.recording.path}")
        self.recorder = self.recording = None

    def state(self) -> dict:
        """What the browser's status shows (``GET /api/state``); safe to call from any thread."""
        stats, inf = self.source.stats, self.inference
        recent = list(self.latency.recent)  # a copy: the drawing thread appends
        tracking = self.tracking
        return {
            "paused": self.controls.paused.is_set(),
            "conf": self.controls.conf,
            "classes": self.controls.classes,
            "camera_fps": round(stats.rate(), 2),
            "model_fps": round(inf.rate(), 2),
            "latency_ms_p50": round(self.latency.percentile(recent, 50), 2) if recent else None,
            "latency_ms_p95": round(self.latency.percentile(recent, 95), 2) if recent else None,
            "dropped": inf.dropped,
            "frames": inf.count,
            "viewers": self.server.viewers if self.server is not None else 0,
            "recording": self.recorder is not None,
            "hud": self.controls.hud,
            "source": self.source.spec,
            "names": list(self.detector.names.values()),
            "tracking": tracking is not None,
            "counts": tracking.counts() if tracking is not None and tracking.counters else {},
        }

    def snapshot_files(self, number: int) -> tuple[Path, Path] | None:
        return self.snapshots.get(number)

    # --- the loops --------------------------------------------------------------------------------

    def run(self) -> int:
        # the libraries' million long-lived objects out of the collector's sight: its full passes would
        # otherwise stall every thread for tens of milliseconds, now and then, in the middle of a frame
        gc.collect()
        gc.freeze()
        # Ctrl-C and SIGTERM end the loops like q does, instead of an exception at a random point
        previous = {sig: signal.signal(sig, self._interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._open_outputs()
            if self.server is not None:
                self._announce(self.server.start())
            self.inference.start()
            while not self.inference.ready.wait(timeout=0.1):  # warmed up before the first frame comes
                if self.interrupted.is_set():
                    return 130
            self.source.start()
            self.started = time.monotonic()
            if self.drawing:
                self._drawing_loop()
            else:
                self._headless_loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close()
        if self.inference.error is not None:
            raise self.inference.error
        self._summary()
        return 0

    def _announce(self, url: str) -> None:
        token = self.server.options.token
        link = url + (f"?token={token}" if token is not None and self.server.options.token_made else "")
        print(f"serving: {link}" + ("" if self.show else "   (no window: watch it there)"), flush=True)

    def _open_outputs(self) -> None:
        if self.outputs.jsonl:
            self.jsonl = JsonlSink(self.outputs.jsonl)
        if self.outputs.record:
            self._start_recording(self.outputs.record)
        if self.outputs.record_raw:
            self.raw = raw = RateMeasuringVideo(self.outputs.record_raw, self.source.fps)
            self.raw_writer = InThread(lambda f: raw.write(f.image, f.t_capture), name="record-raw", maxsize=64)
            self.source.on_frame, self.source.decode_all = self.raw_writer.put, True

    def _close(self) -> None:
        """Stop and join every thread of the run, then close the files: nothing runs on after ``run()``
        (a thread still inside OpenCV or OpenVINO while the interpreter shuts down can crash it)."""
        errors = []
        if self.server is not None:  # first: no viewer waits on a run that is ending
            try:
                self.server.stop()
            except Exception as e:
                errors.append(e)
        self.controls.cancel_requests("the run has ended")
        self.inference.stop.set()
        self.source.stop()  # joins the capture thread, then releases the camera
        if self.inference.ident is not None:  # started
            self.inference.join()  # it checks the stop at least every 0.2 s, after at most one forward
        closers = [self._stop_recording] + [
            c.close for c in (self.raw_writer, self.raw, self.jsonl, self.tracking) if c is not None
        ]
        for close in closers:  # each one, even after another failed (a full disk): its thread ends, its file closes
            try:
                close()
            except Exception as e:
                errors.append(e)
        if self.show:
            cv2.destroyAllWindows()
        if errors:
            raise errors[0]

    def _interrupt(self, signum, frame) -> None:
        print("interrupted: closing the outputs, complete up to the last frame", file=sys.stderr)
        self.interrupted.set()

    def _over(self) -> bool:
        if self.interrupted.is_set():
            return True
        return self.duration_s is not None and time.monotonic() - self.started >= self.duration_s

    def _headless_loop(self) -> None:
        while self.inference.is_alive() and not self._over():
            self.inference.join(timeout=0.1)

    def _drawing_loop(self) -> None:
        """The newest frame with the latest boxes, to the window and the browser; keys and requests between."""
        if self.show:
            cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
            cv2.resizeWindow(WINDOW, *self._window_size())
        newest: LiveFrame | None = None
        canvas: np.ndarray | None = None  # the newest frame with the latest boxes, without the HUD
        drawn: Result | None = None  # the result whose boxes are on screen
        was_paused, had_hud = False, self.controls.hud
        still, painted = None, 0.0  # while paused: the picture on screen, and when it was last painted
        while not self._over():
            # wake for a new camera frame, or redraw when the model has new boxes: both reach the screen
            # at once; the short wait also keeps the window's event loop (waitKey) responsive
            frame = self.source.slot.wait_newer(newest.index if newest else -1, timeout=0.005)
            if frame is None and self.source.slot.closed and not self.inference.is_alive():
                break
            paused, result = self.controls.paused.is_set(), self.inference.latest
            if not paused and (frame is not None or result is not drawn) and (frame or newest) is not None:
                newest = frame or newest
                canvas = newest.image.copy()
                if self.tracking is not None:
                    self.tracking.draw(canvas)  # trails and counters, under the boxes
                if result is not None:
                    draw_detections(canvas, result.boxes_at(newest.index))
                self._present(canvas, newest)
                if result is not drawn:
                    self._shown(result, canvas)
                    drawn = result
                if frame is not None:
                    self.shown_frames += 1
                    if self.recorder is not None:
                        self.recorder.put((canvas, frame.t_capture))
            elif canvas is not None and (paused != was_paused or self.controls.hud != had_hud):
                still, painted = self._present(canvas, newest), time.monotonic()  # say so on the frozen picture
            elif paused and self.show and still is not None and time.monotonic() - painted > 0.5:
                # painted again now and then: under Xvfb a window mapped after its last paint stayed black
                cv2.imshow(WINDOW, still)
                painted = time.monotonic()
            was_paused, had_hud = paused, self.controls.hud
            for request in self.controls.take_requests():
                self._carry_out(request, canvas, drawn)
            if self.show:
                key = cv2.waitKey(1) & 0xFF
                if self.controls.key(key, recording=self.recorder is not None):
                    break
                if cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                    break
            if self.inference.error is not None:
                break

    def _present(self, canvas: np.ndarray, frame: LiveFrame) -> np.ndarray:
        """The picture to the window and the browser, with the status overlay when it is on; returns it."""
        shown = draw_hud(canvas.copy(), self._hud_lines()) if self.controls.hud else canvas
        if self.show:
            cv2.imshow(WINDOW, shown)
        if self.server is not None:
            self.server.publish_frame(shown, frame.index, frame.t_capture)  # never drawn on again: no copy
        return shown

    def _carry_out(self, request: Request, canvas: np.ndarray | None, drawn: Result | None) -> None:
        """A snapshot or a recording switch, asked for by a key or by the browser."""
        try:
            if request.action == "snapshot":
                if canvas is None:
                    raise DetectorError("nothing on screen yet")
                number = self._snapshot(canvas, drawn)
                answer = {"png": f"/snapshots/{number}.png", "json": f"/snapshots/{number}.json"}
            else:
                if request.value and self.recorder is None:
                    self._start_recording(self.outputs.snapshots / f"recording_{time.strftime('%Y%m%d_%H%M%S')}.mp4")
                elif not request.value and self.recorder is not None:
                    self._stop_recording()
                answer = self.recorder is not None
        except Exception as e:  # a full disk: the browser hears of it, the run goes on
            request.outcome.set_exception(e if isinstance(e, DetectorError) else DetectorError(str(e)))
        else:
            request.outcome.set_result(answer)

    def _window_size(self) -> tuple[int, int]:
        w, h = (int(v) for v in self.source.stats.granted.split(" ")[0].split("x"))
        scale = min(1.0, 1280 / max(w, 1), 720 / max(h, 1))
        return max(int(w * scale), 320), max(int(h * scale), 240)

    def _snapshot(self, canvas: np.ndarray, result: Result | None) -> int:
        """The picture without the overlay, and its boxes, as PNG and JSON; returns the snapshot's number."""
        number = len(self.snapshots) + 1
        stem = self.outputs.snapshots / f"snapshot_{time.strftime('%Y%m%d_%H%M%S')}_{number}"
        write_image(stem.with_suffix(".png"), canvas)
        dets = result.dets.to_dict() if result else {"detections": []}
        record = {"frame": result.frame.index if result else None, **dets, **self._counts()}
        write_json_atomic(stem.with_suffix(".json"), record)
        self.snapshots[number] = (stem.with_suffix(".png"), stem.with_suffix(".json"))
        print(f"snapshot: {stem}.png")
        return number

    # --- what the user reads ----------------------------------------------------------------------

    def _hud_lines(self) -> list[str]:
        stats, inf, lat = self.source.stats, self.inference, self.latency
        infer_ms = sum(inf.times_ms) / len(inf.times_ms) if inf.times_ms else 0.0
        lines = [
            f"camera {stats.rate():.1f} fps   model {inf.rate():.1f} fps {infer_ms:.0f} ms"
            f"   conf {self.controls.conf:.2f}",
            f"latency p50 {lat.percentile(lat.recent, 50):.0f} ms  p95 {lat.percentile(lat.recent, 95):.0f} ms"
            f"   dropped {inf.dropped}",
        ]
        states = []
        if stats.state == "reconnecting":
            states.append(f"RECONNECTING (gap {stats.gaps})")
        if self.controls.paused.is_set():
            states.append("PAUSED")
        if self.recorder is not None:
            states.append("REC")
        counts = self.tracking.count_lines() if self.tracking is not None else []
        return lines + counts + ([" ".join(states)] if states else [])

    def _summary(self) -> None:
        stats, inf, lat = self.source.stats, self.inference, self.latency
        seconds = time.monotonic() - self.started
        print(f"source: {self.source.spec} ({stats.granted})")
        print(
            f"frames: {stats.produced} captured, {inf.count} detected, {self.shown_frames} shown, "
            f"{inf.dropped} never reached the model, in {seconds:.1f} s"
        )
        print(
            f"rates: camera {stats.produced / seconds:.1f} fps, model {inf.count / seconds:.1f} fps; latency "
            f"capture->shown p50 {lat.percentile(lat.all, 50):.0f} ms, p95 {lat.percentile(lat.all, 95):.0f} ms"
        )
        if stats.gaps:
            print(f"stream: {stats.gaps} gap(s), {stats.gap_seconds:.1f} s without frames, reconnected each time")
        if self.tracking is not None:
            print("\n".join(self.tracking.count_lines()))
        for path in (self.outputs.jsonl, self.outputs.record_raw, self.tracking and self.tracking.options.mot):
            if path:
                print(f"wrote: {path}")


def check_can_show(
    show: bool, outputs: LiveOutputs, fallback: LiveOutputs | None = None, serving: bool = False
) -> tuple[bool, LiveOutputs]:
    """Decide between window and headless; says why in one line when there is no window."""
    if not show:
        return False, outputs
    problem = display_problem()
    if problem is None:
        return True, outputs
    if serving:
        print(f"note: {problem}; no window, serving the picture to the browser only", file=sys.stderr)
        return False, outputs
    if fallback is not None and not (outputs.jsonl or outputs.record):
        outputs = fallback
    if not (outputs.jsonl or outputs.record or outputs.record_raw):
        raise DetectorError(f"{problem}: nothing to show; add --jsonl/--record to run without a window, or --no-show")
    written = ", ".join(str(p) for p in (outputs.record, outputs.record_raw, outputs.jsonl) if p)
    print(f"note: {problem}; running without a window, writing {written}", file=sys.stderr)
    return False, outputs
