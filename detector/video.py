"""`detector video`: every frame of a file through the detector, into an annotated video and JSON lines.

Three stages overlap: a thread decodes ahead (sources.VideoFile), the calling thread runs the model,
and a thread draws, encodes and writes. Ctrl-C or an error stops the model; frames already detected
are still written, then both files are closed, so they play and parse up to the last processed frame.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from detector.detections import Detections
from detector.environment import run_in_idle_time
from detector.pipeline import Detector
from detector.render import draw_detections
from detector.sinks import InThread, JsonlSink, VideoSink
from detector.sources import Frame, LiveSource, VideoFile
from detector.track.run import Tracking

T = TypeVar("T")
U = TypeVar("U")


@dataclass
class VideoSummary:
    frames: int = 0
    seconds: float = 0.0
    failed_frames: int = 0
    per_class: Counter = field(default_factory=Counter)
    interrupted: bool = False
    counts: list[str] = field(default_factory=list)  # with --track and lines or zones: the counts in words

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        classes = ", ".join(f"{name} {n}" for name, n in self.per_class.most_common()) or "none"
        out = [f"frames: {self.frames} in {self.seconds:.1f} s ({self.fps:.1f} frames/s)", f"detections: {classes}"]
        out += self.counts
        if self.failed_frames:
            out.append(f"warning: {self.failed_frames} frame(s) could not be decoded and were skipped")
        if self.interrupted:
            out.append("interrupted: outputs hold every frame processed before the stop")
        return out


def _ahead(items: Iterable[T], fn: Callable[[T], U], depth: int = 4) -> Iterator[U]:
    """``map(fn, items)`` computed up to ``depth`` items ahead in a thread, in order. The thread has ended
    when the generator finishes or is closed: nothing of it outlives the run."""
    done = object()
    results: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(result) -> bool:
        while not stop.is_set():
            try:
                results.put(result, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        run_in_idle_time()
        try:
            for item in items:
                if stop.is_set() or not hand_over(fn(item)):
                    return
        except BaseException as e:  # re-raised in the consumer
            hand_over(_Failure(e))
            return
        hand_over(done)

    worker = threading.Thread(target=work, name="prepare", daemon=True)
    worker.start()
    try:
        while (result := results.get()) is not done:
            if isinstance(result, _Failure):
                raise result.error
            yield result
    finally:
        stop.set()
        worker.join()


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@dataclass
class _Failure:
    error: BaseException


def run_video(
    detector: Detector,
    path: str | Path,
    out: Path | None,
    jsonl: Path | None,
    progress: bool = True,
    tracking: Callable[[VideoFile], Tracking | None] | None = None,
) -> VideoSummary:
    """``tracking``: makes the run's `Tracking` for the opened source (its frame rate and size), or None."""
    source = VideoFile(path)
    summary = VideoSummary()
    video_sink = jsonl_sink = writer = track = None

    def write(item: tuple[Frame, Detections, dict]) -> None:
        frame, dets, counts = item
        if jsonl_sink is not None:
            jsonl_sink.write({"frame": frame.index, "time_s": round(frame.time_s, 4), **dets.to_dict(), **counts})
        if video_sink is not None:
            video_sink.write(draw_detections(frame.image, dets))

    try:
        track = tracking(source) if tracking is not None else None
        video_sink = VideoSink(out, source.fps, source.size) if out else None
        jsonl_sink = JsonlSink(jsonl) if jsonl else None
        writer = InThread(write, name="write")
        batch = detector.backend.prepare_stream(detector.preprocess([source.first]).shape[1:3])

        def prepare(frames: list[Frame]) -> tuple[np.ndarray, tuple[list[Frame], tuple[int, int]]]:
            x = detector.preprocess([f.image for f in frames])  # [B, H, W, 3]
            return x, (frames, x.shape[1:3])

        start = time.perf_counter()
        bar = tqdm(total=source.expected or None, unit="frame", disable=not progress, desc=source.path.name)
        # decode (thread) -> letterbox (thread) -> model, several frames in flight -> draw and write (thread);
        # closed in this order on every way out: no request in flight, no thread left running
        prepared = _ahead(_chunks(source, batch), prepare)
        detected = detector.backend.stream(prepared)
        try:
            for raw, (frames, input_hw) in detected:
                for frame, dets in zip(frames, detector.postprocess(raw, input_hw, [f.image for f in frames])):
                    counts = {}
                    if track is not None:  # in frame order, here: the writer thread only draws and writes
                        dets = track.update(dets, frame.index, frame.image, predict=False).dets  # drawn where found
                        counts = {"counts": track.counts()} if track.counters else {}
                        if video_sink is not None:
                            track.draw(frame.image)  # trails and counters, under the boxes
                    writer.put((frame, dets, counts))
                    summary.per_class.update(dets.class_name)
                    summary.frames += 1
                    bar.update()
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            detected.close()
            prepared.close()
            bar.close()
            summary.seconds = time.perf_counter() - start
            writer.close()  # writes what is queued; re-raises a write error
        summary.failed_frames = source.failed
        summary.counts = track.count_lines() if track is not None else []
    finally:
        source.close()
        for sink in (video_sink, jsonl_sink, track):
            if sink is not None:
                sink.close()
    return summary


def run_video_realtime(
    detector: Detector,
    path: str | Path,
    out: Path | None,
    jsonl: Path | None,
    tracking: Callable[[LiveSource], Tracking | None] | None = None,
) -> list[str]:
    """`detector video --realtime`: the file as a camera user would have seen it (detector/realtime.py);
    every frame written with the boxes that were on screen, ``shown_from`` naming the frame they came from."""
    from detector.realtime import replay_realtime

    replay = replay_realtime(detector, path, tracking)
    source = VideoFile(path)
    jsonl_sink = JsonlSink(jsonl) if jsonl else None
    annotated = VideoSink(out, source.fps, source.size) if out else None
    try:
        for frame in source:
            if frame.index >= replay.frames:
                break
            dets, found_in = replay.shown[frame.index], replay.shown_from[frame.index]
            if jsonl_sink is not None:
                record = {"frame": frame.index, "time_s": round(frame.time_s, 4), "shown_from": found_in}
                jsonl_sink.write({**record, **dets.to_dict()})
            if annotated is not None:
                annotated.write(draw_detections(frame.image, dets))
    finally:
        source.close()
        for sink in (jsonl_sink, annotated):
            if sink is not None:
                sink.close()
    return replay.lines() + replay.counts
