"""The live loop: newest-frame hand-over, simulated live, headless outputs, the real window under Xvfb,
and a real HTTP stream served by ffmpeg that drops and comes back."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import app_threads
from test_cli import assert_bad_input, cli_env, detector, read_video

from detector import Detector
from detector.live import LiveOutputs, LiveRun
from detector.render import class_color
from detector.sources import SAMPLE_VIDEO, LiveFrame, LiveSource, NewestFrame

CLIP = str(SAMPLE_VIDEO)  # 12 s, 10 fps, a person standing in a room


# --- the hand-over -------------------------------------------------------------------------------


def frame(index: int) -> LiveFrame:
    return LiveFrame(np.zeros((2, 2, 3), np.uint8), index, time.monotonic())


def test_newest_frame_only_and_never_twice():
    slot = NewestFrame()
    for i in range(5):
        slot.put(frame(i))
    got = slot.wait_newer(-1, timeout=0.1)
    assert got.index == 4  # the newest, not the oldest
    assert slot.wait_newer(4, timeout=0.05) is None  # nothing newer: no repeat
    slot.put(frame(9))
    assert slot.wait_newer(4, timeout=0.1).index == 9


def test_reader_wakes_on_put_and_on_close():
    slot = NewestFrame()
    seen = []

    def reader():
        seen.append(slot.wait_newer(-1, timeout=5))
        seen.append(slot.wait_newer(0, timeout=5))

    slot.busy_until = time.monotonic() + 60  # a reader busy for a minute...
    assert not slot.wanted(next_frame_at=time.monotonic() + 0.1)  # ...does not want this frame decoded
    assert slot.wanted(next_frame_at=time.monotonic() + 61)  # but the last one before it is free
    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    assert slot.wanted(next_frame_at=time.monotonic())  # a reader waits: the capture thread should decode
    slot.put(frame(0))
    time.sleep(0.1)
    slot.close()
    t.join(timeout=5)
    assert [f.index if f else None for f in seen] == [0, None]


def test_a_reader_is_busy_for_the_time_it_said_from_the_frame_it_took():
    slot = NewestFrame()
    reader = threading.Thread(target=lambda: slot.wait_newer(-1, timeout=5, busy_s=30))
    reader.start()
    time.sleep(0.1)
    assert slot.wanted(next_frame_at=time.monotonic() + 1)  # waiting: decode the next frame
    slot.put(frame(0))  # taken at once: the reader is now busy for 30 s
    reader.join(timeout=5)
    assert time.monotonic() + 25 < slot.busy_until < time.monotonic() + 31
    assert not slot.wanted(next_frame_at=time.monotonic() + 1)  # nobody would take it: leave it undecoded
    assert slot.wanted(next_frame_at=time.monotonic() + 31)  # the newest when the reader is free


def test_simulated_live_drops_what_a_slow_reader_misses():
    source = LiveSource(CLIP).start()
    indices, last = [], -1
    try:
        while len(indices) < 6:
            got = source.slot.wait_newer(last, timeout=5)
            assert got is not None
            indices.append(got.index)
            last = got.index
            time.sleep(0.25)  # a slow model: 2.5 frame periods per frame
    finally:
        source.stop()
    assert indices == sorted(set(indices))  # newest first, never twice
    assert indices[-1] - indices[0] > len(indices)  # frames were dropped, as with a camera
    assert source.fps == 10.0 and source.kind == "simulated"


# --- headless runs -------------------------------------------------------------------------------


def test_headless_outputs(tmp_path):
    out = {k: tmp_path / v for k, v in (("jsonl", "d.jsonl"), ("record", "a.mp4"), ("raw", "raw.mp4"))}
    result = detector(
        "live", "--simulate-live", CLIP, "--no-show", "--duration", "4",
        "--jsonl", str(out["jsonl"]), "--record", str(out["record"]), "--record-raw", str(out["raw"]),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out["jsonl"].read_text().splitlines()]
    assert len(lines) >= 10
    assert {"frame", "time_s", "t_capture", "latency_ms", "detections"} <= set(lines[0])
    assert all(a["frame"] < b["frame"] and a["t_capture"] < b["t_capture"] for a, b in zip(lines, lines[1:]))
    assert all(line["latency_ms"] > 0 for line in lines)
    assert sum(d["class_name"] == "person" for line in lines for d in line["detections"]) >= len(lines) - 2
    raw_frames, raw_size, raw_fps = read_video(out["raw"])
    assert raw_size == (768, 432) and raw_frames >= 30
    assert 6 <= raw_fps <= 14  # measured from the 10 fps clip, not a fixed 30
    annotated_frames, _, annotated_fps = read_video(out["record"])
    assert annotated_frames == len(lines)
    results_fps = (len(lines) - 1) / (lines[-1]["t_capture"] - lines[0]["t_capture"])
    assert abs(annotated_fps / results_fps - 1) < 0.25  # plays as long as it ran (a slow first call skewed it)
    assert "latency capture->shown p50" in result.stdout


def test_the_model_runs_in_its_own_thread_only_warmed_up_before_the_first_frame(tmp_path, monkeypatch):
    """PyTorch's CPU threads belong to the thread that first calls it: a warm-up call in the main thread left
    yolo11n.pt at 320 a third slower in the model thread (benchmarks/RESULTS.md)."""
    calls = []
    real_call = Detector.__call__

    def recording_call(self, frames, letterboxed=None):
        calls.append((threading.current_thread().name, letterboxed is not None))
        return real_call(self, frames, letterboxed)

    monkeypatch.setattr(Detector, "__call__", recording_call)
    source = LiveSource(CLIP)
    run = LiveRun(Detector(), source, LiveOutputs(jsonl=tmp_path / "d.jsonl"), show=False, duration_s=1.5)
    assert run.run() == 0
    assert len(calls) >= 3 and {name for name, _ in calls} == {"model"}
    assert calls[0] == ("model", False)  # the warm-up: a grey frame, before the source started
    assert all(from_capture for _, from_capture in calls[1:])  # camera frames, letterboxed by the capture thread
    assert run.inference.count == len(calls) - 1 == len((tmp_path / "d.jsonl").read_text().splitlines())


def test_ctrl_c_during_the_warm_up_stops_every_thread(tmp_path, monkeypatch):
    source = LiveSource(CLIP)
    run = LiveRun(Detector(), source, LiveOutputs(jsonl=tmp_path / "d.jsonl"), show=False)
    real_call = Detector.__call__

    def interrupted_while_warming_up(self, frames, letterboxed=None):
        run.interrupted.set()  # what the SIGINT handler does
        return real_call(self, frames, letterboxed)

    monkeypatch.setattr(Detector, "__call__", interrupted_while_warming_up)
    assert run.run() == 130
    assert not app_threads() and source.stats.produced == 0  # the camera never started
    assert (tmp_path / "d.jsonl").read_text() == ""


def test_a_looped_file_keeps_counting_frames(tmp_path):
    """`--loop` replays the 12 s clip from the start (here 4x faster, 3 s a pass) until --duration."""
    jsonl = tmp_path / "d.jsonl"
    result = detector(
        "live", "--simulate-live", CLIP, "--loop", "--speed", "4", "--duration", "7", "--no-show",
        "--jsonl", str(jsonl),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
    assert frames == sorted(set(frames)) and frames[-1] >= 150  # past the clip's 120 frames, still counting


def test_the_demo_runs_as_long_as_asked(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    result = detector("demo", "--no-show", "--duration", "14", "--jsonl", str(jsonl), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert lines[-1]["frame"] >= 125 and lines[-1]["time_s"] > 12.5  # the 12 s clip went round again


def test_interrupt_keeps_outputs(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "--simulate-live", CLIP, "--no-show", "--jsonl", str(jsonl),
         "--record", str(tmp_path / "a.mp4")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 15):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) >= 15
    assert read_video(tmp_path / "a.mp4")[0] == len(lines)


def test_no_display(tmp_path):
    env = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    assert_bad_input(detector("live", "--simulate-live", CLIP, **env), "display")
    result = detector("live", "--simulate-live", CLIP, "--duration", "2", "--jsonl", str(tmp_path / "d.jsonl"), **env)
    assert result.returncode == 0, result.stderr
    assert "running without a window" in result.stderr and (tmp_path / "d.jsonl").stat().st_size > 0
    result = detector("demo", "--duration", "2", cwd=tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert read_video(tmp_path / "runs/demo/demo.mp4")[0] > 5


def test_bad_sources(tmp_path):
    assert_bad_input(detector("live", "--source", "7", "--no-show"), "no camera at '7'", "cameras that open")
    start = time.monotonic()
    result = detector("live", "--source", f"http://127.0.0.1:{free_port()}/live.ts", "--timeout", "1", "--no-show")
    assert_bad_input(result, "could not be opened within 1 s")
    assert time.monotonic() - start < 60
    assert_bad_input(detector("live", "--source", str(tmp_path / "nothing.mp4"), "--no-show"), "nothing.mp4")
    listed = detector("cameras")
    assert listed.returncode == 0 and listed.stdout.strip()


# --- the real window -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def xvfb():
    if not (shutil.which("Xvfb") and shutil.which("xdotool") and shutil.which("import")):
        pytest.skip("needs Debian's xvfb, xdotool and imagemagick (installed by .ci/run)")
    number = random.randint(100, 400)
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x720x24"], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)


def x(display: str, *args: str) -> str:
    return subprocess.run(list(args), env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                          timeout=30, check=True).stdout  # fmt: skip


def paused_screenshot(display: str, jsonl: Path, tmp_path: Path) -> tuple[str, np.ndarray, str]:
    """Once the run has written 20 JSON lines: its window paused (space), the screen, the window's geometry."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
        time.sleep(0.2)
    window = x(display, "xdotool", "search", "--name", "^detector$").split()[0]
    x(display, "xdotool", "key", "--window", window, "space")  # pause: the picture and its boxes hold still
    time.sleep(1.0)
    shot = tmp_path / "screen.png"
    x(display, "import", "-window", "root", str(shot))
    return window, cv2.imread(str(shot)), x(display, "xdotool", "getwindowgeometry", window)


def test_window_shows_boxes_and_answers_keys(xvfb, tmp_path):
    jsonl, snaps = tmp_path / "d.jsonl", tmp_path / "snaps"
    proc = subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "--simulate-live", CLIP, "--jsonl", str(jsonl),
         "--snapshots", str(snaps), "--no-hud"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(DISPLAY=xvfb),
    )  # fmt: skip
    try:
        window, screen, geometry = paused_screenshot(xvfb, jsonl, tmp_path)
        box = json.loads(jsonl.read_text().splitlines()[-1])["detections"][0]  # the boxes on screen
        left, top = (int(v) for v in geometry.split("Position: ")[1].split(" ")[0].split(","))
        assert box["class_name"] == "person"
        x1, y1, x2, y2 = (round(v) for v in box["xyxy"])
        color = np.array(class_color(box["class_id"]))
        near = 4  # px: line thickness and rounding
        for name, strip in {
            "left": screen[top + y1 + 40 : top + y2 - 40, left + x1 - near : left + x1 + near],
            "right": screen[top + y1 + 40 : top + y2 - 40, left + x2 - near : left + x2 + near],
            "bottom": screen[top + y2 - near : top + y2 + near, left + x1 + 20 : left + x2 - 20].transpose(1, 0, 2),
        }.items():
            rows_with_box = (strip == color).all(-1).any(1)  # each row of the edge strip: box colour present?
            assert rows_with_box.mean() > 0.8, f"{name} edge of the person box not on screen"
        elsewhere = screen[top + y1 + 40 : top + y2 - 40, left + x1 + 20 : left + x2 - 20]
        assert (elsewhere == color).all(-1).mean() < 0.01  # not just a screen full of red

        x(xvfb, "xdotool", "key", "--window", window, "space")  # play on
        x(xvfb, "xdotool", "key", "--window", window, "s")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not list(snaps.glob("*.json")):
            time.sleep(0.1)
        snapshot = json.loads(next(snaps.glob("*.json")).read_text())
        assert snapshot["detections"] and next(snaps.glob("*.png")).stat().st_size > 10_000
        x(xvfb, "xdotool", "key", "--window", window, "q")
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "shown" in stdout
    finally:
        if proc.poll() is None:
            proc.kill()


# --- a real network stream -----------------------------------------------------------------------


def serve(port: int) -> subprocess.Popen:
    """ffmpeg serving the clip over HTTP at its own rate, looping, to one client."""
    return subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", CLIP, "-c", "copy", "-f", "mpegts",
         "-listen", "1", f"http://127.0.0.1:{port}/live.ts"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_stream_drop_and_reconnect(tmp_path):
    if not shutil.which("ffmpeg"):
        pytest.skip("needs Debian's ffmpeg (installed by .ci/run)")
    port, jsonl = free_port(), tmp_path / "d.jsonl"
    server = serve(port)
    time.sleep(1)
    app = subprocess.Popen(
        [sys.executable, "-m", "detector", "live", "--source", f"http://127.0.0.1:{port}/live.ts", "--no-show",
         "--timeout", "2", "--jsonl", str(jsonl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )  # fmt: skip
    try:
        assert wait_for(lambda: len(lines_of(jsonl)) >= 10, 60), "no detections from the stream"
        server.kill()
        server.wait()
        dropped_at = time.monotonic()
        before = len(lines_of(jsonl))
        time.sleep(3)
        server = serve(port)
        assert wait_for(lambda: len(lines_of(jsonl)) >= before + 10, 60), "no detections after the server came back"
        resumed = lines_of(jsonl)[-1]
        assert resumed["t_capture"] > dropped_at  # new frames, captured after the drop
        app.send_signal(signal.SIGINT)
        stdout, stderr = app.communicate(timeout=30)
        assert app.returncode == 0, stderr
        assert "1 gap(s)" in stdout and "reconnected" in stdout
    finally:
        for proc in (app, server):
            if proc.poll() is None:
                proc.kill()


def test_video_realtime_shows_what_a_camera_user_saw(tmp_path):
    jsonl = tmp_path / "d.jsonl"
    result = detector("video", CLIP, "--realtime", "--out", str(tmp_path / "o.mp4"), "--jsonl", str(jsonl))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(120))  # every frame of the file, dropped or not
    found_in = [line["shown_from"] for line in lines]
    assert all(-1 <= k <= i for i, k in enumerate(found_in))  # boxes come from the past, never the future
    assert found_in == sorted(found_in)
    assert sum(bool(line["detections"]) for line in lines) >= 100  # the person stays in view
    assert "dropped" in result.stdout and read_video(tmp_path / "o.mp4")[0] == 120


def test_image_folder_as_a_live_source(tmp_path, bus, zidane):
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, image in (("a.jpg", bus), ("b.jpg", zidane), ("c.jpg", bus)):
        cv2.imwrite(str(folder / name), image)
    (folder / "notes.txt").write_text("not an image")
    jsonl = tmp_path / "d.jsonl"
    result = detector("live", "--source", str(folder), "--fps", "4", "--no-show", "--jsonl", str(jsonl))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2]  # a slow slideshow: the model sees every image
    assert "bus" in {d["class_name"] for d in lines[0]["detections"]}
    assert "image folder" in result.stdout
