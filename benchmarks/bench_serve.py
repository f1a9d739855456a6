"""The browser view (`--serve`): what watching costs, and how late the browser's picture is.

    python benchmarks/bench_serve.py [--seconds 15] [--rounds 3] [--video car-detection.mp4]

- latency: `detector live --simulate-live VIDEO --serve` with its window (under Xvfb) and Debian's chromium
  on the page at once: capture -> decoded in the page (measured by the page, per frame) against the
  window's capture -> shown (`latency_ms` in the run's JSONL), medians over the same seconds;
- cost, with the camera at 30 frames/s (the clip replayed faster) and no window: the model's frames/s (as
  the status shows it: 1000 / mean ms per frame over its last 60 frames, read every second and averaged over
  the window) and the app's CPU (% of one core) with 0, 1 and 4 viewers reading /stream.mjpg as fast as they
  can; for ours (one JPEG per shown frame for every viewer) against one JPEG encode per viewer (Frigate's
  way: each viewer's handler encodes the frame itself).
Each run in its own process; the cost rows take turns (--rounds, default 3), medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_VIDEOS = REPO.parent / "shared" / "data" / "videos"
HERE = Path(__file__).resolve()


# --- the rival way, for comparison -------------------------------------------------------------------


def encode_per_viewer_server():
    """WebServer whose viewers each encode the newest raw picture themselves (as Frigate's MJPEG view)."""
    import cv2

    from detector.serve.server import JPEG_QUALITY, WRITE_TIMEOUT_S, WebServer

    class EncodePerViewer(WebServer):
        def publish_frame(self, image: np.ndarray, index: int, t_capture: float) -> None:
            if self.viewers:
                self._loop.call_soon_threadsafe(self._set_part, (image,))

        async def _stream(self, request):
            from aiohttp import web

            response = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
            self.viewers += 1
            try:
                await response.prepare(request)
                seen = -1
                while not self._closing:
                    if self._part_version == seen or self._part is None:
                        await self._new_part.wait()
                        continue
                    seen, image = self._part_version, self._part[0]
                    quality = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
                    jpeg = await asyncio.get_running_loop().run_in_executor(None, cv2.imencode, ".jpg", image, quality)
                    jpeg = jpeg[1]
                    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {jpeg.size}\r\n\r\n".encode()
                    await asyncio.wait_for(response.write(head + jpeg.tobytes() + b"\r\n"), WRITE_TIMEOUT_S)
            except (asyncio.TimeoutError, ConnectionError):
                pass
            finally:
                self.viewers -= 1
            return response

    return EncodePerViewer


def app(per_viewer: bool, *args: str) -> int:
    """`detector ...args` in this process, with the rival server when ``per_viewer``."""
    import detector.live
    from detector.cli import main

    if per_viewer:
        detector.live.WebServer = encode_per_viewer_server()
    return main(list(args))


def start_app(per_viewer: bool, args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, int]:
    code = f"import sys; sys.path.insert(0, {str(HERE.parent)!r}); import bench_serve as b; "
    code += f"sys.exit(b.app({per_viewer!r}, *{args!r}))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env={**os.environ, "YOLO_OFFLINE": "1", **(env or {})})  # fmt: skip
    line = proc.stdout.readline()
    if not line.startswith("serving: "):
        proc.kill()
        raise RuntimeError(f"the app did not serve: {line!r}")
    return proc, int(line.split()[1].split(":")[2].split("/")[0])


def state(port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=10) as r:
        return json.loads(r.read())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Viewer(threading.Thread):
    """Reads /stream.mjpg as fast as it comes; counts bytes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"GET /stream.mjpg HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        self.bytes = 0

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 16):
                self.bytes += len(chunk)
        except OSError:
            pass


def cost(video: str, viewers: int, per_viewer: bool, seconds: float) -> dict:
    """The model's frames/s and the app's CPU with ``viewers`` reading, the camera at 30 frames/s."""
    import cv2

    speed = 30.0 / cv2.VideoCapture(video).get(cv2.CAP_PROP_FPS)
    args = ["live", "--simulate-live", video, "--loop", "--speed", f"{speed:.3f}", "--no-show", "--serve", "0"]
    proc, port = start_app(per_viewer, args)
    try:
        time.sleep(5)  # warmed up, the rates settled
        readers = [Viewer(port) for _ in range(viewers)]
        for r in readers:
            r.start()
        time.sleep(2)
        cpu0, t0, frames0 = cpu_seconds(proc.pid), time.monotonic(), state(port)["frames"]
        bytes0 = sum(r.bytes for r in readers)
        rates = []  # the model's rate over its last 60 frames, every second: their mean covers the whole window
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            rates.append((s := state(port))["model_fps"])
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        mb_s = (sum(r.bytes for r in readers) - bytes0) / (t1 - t0) / 1e6
        return {"model_fps": float(np.mean(rates)), "results_fps": (s["frames"] - frames0) / (t1 - t0),
                "cpu": 100 * (cpu1 - cpu0) / (t1 - t0), "mb_s": mb_s, "viewers": s["viewers"]}  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def latency(video: str, seconds: float) -> dict | None:
    """The window's and the page's p50 capture -> shown, over the same seconds of one run."""
    if not (shutil.which("Xvfb") and Path("/usr/bin/chromium").exists()):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x720x24"], stderr=subprocess.DEVNULL)
    time.sleep(1)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    os.environ.setdefault("SE_OFFLINE", "true")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = Path(tmp) / "run.jsonl"
        args = ["live", "--simulate-live", video, "--loop", "--serve", "0", "--jsonl", str(jsonl)]
        proc, port = start_app(False, args, env={"DISPLAY": display})
        try:
            driver.get(f"http://127.0.0.1:{port}/")
            time.sleep(5)
            skip = len(jsonl.read_text().splitlines())
            page_before = driver.execute_script("return window.detectorStats.frames")
            time.sleep(seconds)
            page = driver.execute_script("return window.detectorStats")
            lines = [json.loads(x) for x in jsonl.read_text().splitlines()[skip:]]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            driver.quit()
            xvfb.terminate()
    new = page["frames"] - page_before
    browser = page["latencies"][-new:] if new else []
    return {"window_p50": float(np.median([x["latency_ms"] for x in lines])),
            "browser_p50": float(np.median(browser)), "browser_p95": float(np.percentile(browser, 95)),
            "frames": new}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(SHARED_VIDEOS / "car-detection.mp4"))
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3, help="the cost rows take turns this many times")
    args = parser.parse_args()
    name = Path(args.video).name
    print(f"# browser view; {platform.machine()}, {os.cpu_count()} CPUs; bundled default model; {name}")
    lat = latency(args.video, args.seconds)
    print("| capture -> shown p50, window | capture -> decoded p50, browser | difference | browser p95 | frames |")
    print("|---|---|---|---|---|")
    if lat is None:
        print("| (needs Xvfb and chromium) | | | | |")
    else:
        difference = lat["browser_p50"] - lat["window_p50"]
        print(f"| {lat['window_p50']:.1f} ms | {lat['browser_p50']:.1f} ms | {difference:+.1f} ms | "
              f"{lat['browser_p95']:.1f} ms | {lat['frames']} |")  # fmt: skip
    print()
    runs: dict[tuple[bool, int], list[dict]] = {}
    for _ in range(args.rounds):  # taking turns: this machine drifts by 10% between runs
        for per_viewer in (False, True):
            for n in (0, 1, 4):
                if per_viewer and n == 0:
                    continue  # no viewer: nothing encoded either way
                runs.setdefault((per_viewer, n), []).append(cost(args.video, n, per_viewer, args.seconds))
    runs[(True, 0)] = runs[(False, 0)]
    med = {k: {m: float(np.median([r[m] for r in v])) for m in v[0]} for k, v in runs.items()}
    print("| encoding | viewers | model fps | / none | app CPU % | CPU % per viewer | stream MB/s | results/s |")
    print("|---|---|---|---|---|---|---|---|")
    for per_viewer in (False, True):
        base = med[(per_viewer, 0)]
        for n in (0, 1, 4):
            m = med[(per_viewer, n)]
            per = f"{(m['cpu'] - base['cpu']) / n:.1f}" if n else "-"
            way = "one per viewer (Frigate's)" if per_viewer else "once per frame (ours)"
            print(f"| {way} | {n} | {m['model_fps']:.1f} | {m['model_fps'] / base['model_fps']:.2f}x | "
                  f"{m['cpu']:.0f} | {per} | {m['mb_s']:.2f} | {m['results_fps']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
