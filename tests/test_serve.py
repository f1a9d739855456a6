"""The browser view (`--serve`): one set of controls for keys and browser, who may ask what, a viewer that
stalls or hundreds that come and go, the window beside it, and a real browser (Debian's chromium)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_cli import assert_bad_input, cli_env, detector
from test_live import CLIP, lines_of, wait_for, x, xvfb  # noqa: F401 (xvfb: the fixture)

from detector.errors import DetectorError
from detector.serve.controls import Controls
from detector.serve.server import parse_serve

# --- the controls, alone ---------------------------------------------------------------------------


class Threshold:
    conf = 0.25


class Classes:
    classes = None
    names = {0: "person", 1: "bicycle", 2: "car"}


def test_keys_and_requests_act_on_one_controls_object():
    controls = Controls(Threshold(), Classes())
    assert not controls.key(ord(" "), recording=False) and controls.paused.is_set()
    controls.apply({"pause": False})
    assert not controls.paused.is_set()
    controls.key(ord("+"), recording=False)
    assert controls.conf == 0.3
    controls.apply({"conf": 0.9, "classes": ["car", 0], "hud": False})
    controls.key(ord("-"), recording=False)
    assert (controls.conf, controls.classes, controls.hud) == (0.85, ["car", "person"], False)
    controls.key(ord("h"), recording=False)
    assert controls.hud
    controls.key(ord("r"), recording=False)
    futures = controls.apply({"snapshot": True, "record": False})
    assert [(r.action, r.value) for r in controls.take_requests()] == [("record", True), ("snapshot", True),
                                                                      ("record", False)]  # fmt: skip
    assert set(futures) == {"snapshot", "record"} and controls.take_requests() == []
    assert controls.key(ord("q"), recording=False)


@pytest.mark.parametrize(
    "body, words",
    [({"conf": 2}, "conf"), ({"pause": "yes"}, "pause"), ({"classes": ["cow"]}, "cow"), ({"open": "/etc"}, "open"),
     ({"snapshot": False}, "snapshot")],
)  # fmt: skip
def test_a_bad_control_changes_nothing(body, words):
    controls = Controls(Threshold(), Classes())
    with pytest.raises(DetectorError, match=words):
        controls.apply({"conf": 0.5, "hud": False, **body})
    assert (controls.conf, controls.hud, controls.take_requests()) == (0.25, True, [])


def test_serve_addresses():
    assert parse_serve("8080", None, 8).host == "127.0.0.1"
    local = parse_serve("localhost:0", None, 8)
    assert (local.host, local.port, local.token) == ("localhost", 0, None)
    wide = parse_serve("0.0.0.0:9000", None, 8)
    assert wide.token and len(wide.token) >= 20 and wide.token_made  # beyond loopback: never without a token
    given = parse_serve("[::]:9000", "abc", 8)
    assert (given.host, given.token, given.token_made) == ("::", "abc", False)


@pytest.mark.parametrize(
    "args, words",
    [(["--serve", "nope"], "--serve nope"), (["--serve", "99999"], "--serve 99999"),
     (["--token", "x"], "--token needs --serve"), (["--serve", "0", "--max-viewers", "0"], "--max-viewers")],
)  # fmt: skip
def test_bad_serve_options(args, words):
    assert_bad_input(detector("live", "--simulate-live", CLIP, "--no-show", *args), words)


# --- a run serving, in its own process -------------------------------------------------------------


class Served:
    """`detector live --simulate-live FILE --serve 127.0.0.1:0 ...`: the process, its address, its JSONL."""

    def __init__(self, tmp_path: Path, *args: str, video: str = CLIP, port: int = 0, env: dict | None = None):
        self.jsonl = tmp_path / f"run_{time.monotonic_ns()}.jsonl"
        command = [sys.executable, "-m", "detector", "live", "--simulate-live", video, "--loop", "--serve",
                   f"127.0.0.1:{port}", "--jsonl", str(self.jsonl), "--snapshots", str(tmp_path), *args]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env or cli_env())  # fmt: skip
        line = self.proc.stdout.readline()
        assert line.startswith("serving: http://127.0.0.1:"), line + self.proc.stderr.read()
        self.url = line.split()[1]
        self.port = int(self.url.split(":")[2].split("/")[0])
        self.out: list[str] = []
        self._reader = threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True)
        self._reader.start()
        assert wait_for(lambda: len(lines_of(self.jsonl)) >= 5, 60), "no results"

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = json.dumps(body) if body is not None else None
        head = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=data, headers={**head, **(headers or {})})
        response = conn.getresponse()
        answer = response.status, response.read(), response.headers
        conn.close()
        return answer

    def state(self, **headers) -> dict:
        status, body, _ = self.request("GET", "/api/state", headers=headers)
        assert status == 200, body
        return json.loads(body)

    def open_stream(self, path: str = "/stream.mjpg", headers: str = "", rcvbuf: int | None = None) -> socket.socket:
        """A raw viewer: the request sent, nothing read (HTTP/1.0: the body comes as sent, not in chunks)."""
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{self.port}\r\n{headers}\r\n".encode())
        return s

    def counts(self) -> tuple[int, int]:
        """The process's threads and open files."""
        pid = self.proc.pid
        return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))

    def stop(self, sig=signal.SIGTERM) -> float:
        """Seconds from the signal to the exit."""
        start = time.monotonic()
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def served(tmp_path):
    runs: list[Served] = []

    def start(*args: str, **kwargs) -> Served:
        runs.append(Served(tmp_path, *args, **kwargs))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def read_head(s: socket.socket) -> str:
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def test_who_may_ask_what(served, tmp_path):
    env = {k: v for k, v in cli_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    run = served("--token", "s3cret", "--max-viewers", "1", env=env)  # no --no-show: no display, serving only
    auth = {"Authorization": "Bearer s3cret"}
    assert run.request("GET", "/api/state")[0] == 401
    assert run.request("GET", "/api/state", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert run.request("GET", "/api/state?token=wrong")[0] == 401
    assert run.request("GET", "/stream.mjpg")[0] == 401
    assert run.request("GET", "/api/state", headers=auth)[0] == 200
    status, _, headers = run.request("GET", "/?token=s3cret")  # the link printed: sets the cookie
    cookie = headers["Set-Cookie"]
    assert status == 200 and "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    assert run.request("GET", "/api/state", headers={"Cookie": cookie.split(";")[0]})[0] == 200
    # a page from another site may not steer it, even with the token; a rebound DNS name is refused
    evil = {**auth, "Origin": "http://evil.example"}
    assert run.request("POST", "/api/control", {"pause": True}, evil)[0] == 403
    assert not run.state(**auth)["paused"]
    assert run.request("GET", "/api/state", headers={**auth, "Host": f"evil.example:{run.port}"})[0] == 403
    own = {**auth, "Origin": f"http://127.0.0.1:{run.port}"}
    assert run.request("POST", "/api/control", {"conf": 0.4}, own)[0] == 200
    assert run.state(**auth)["conf"] == 0.4
    # controls: POST with JSON only
    assert run.request("GET", "/api/control", headers=auth)[0] == 405
    assert run.request("POST", "/api/control", headers={**auth, "Content-Type": "text/plain"})[0] == 415
    assert run.request("POST", "/api/control", {"conf": "high"}, auth)[0] == 400
    # nothing a client sends becomes a file path
    for path in ("/snapshots/1.png", "/snapshots/../../etc/passwd", "/static/../server.py", "/..%2fserver.py"):
        assert run.request("GET", path, headers=auth)[0] == 404, path
    # one viewer over --max-viewers 1
    first = run.open_stream(headers="Authorization: Bearer s3cret\r\n")
    assert " 200 " in read_head(first).splitlines()[0]
    assert wait_for(lambda: run.state(**auth)["viewers"] == 1, 10)
    assert run.request("GET", "/stream.mjpg", headers=auth)[0] == 503
    metrics = {
        m.name: m for m in text_string_to_metric_families(run.request("GET", "/metrics", headers=auth)[1].decode())
    }
    assert metrics["detector_viewers"].samples[0].value == 1 and metrics["detector_frames"].samples[0].value > 0
    assert metrics["detector_conf"].samples[0].value == 0.4
    seconds = run.stop()  # SIGTERM with a viewer connected
    first.close()
    print(f"SIGTERM to exit with a viewer connected: {seconds:.2f} s")
    assert run.proc.returncode == 0, run.proc.stderr.read()
    assert "serving the picture to the browser only" in run.proc.stderr.read()
    lines = run.jsonl.read_text().splitlines()
    assert lines and all(json.loads(line)["detections"] is not None for line in lines)  # complete to the last


def test_a_stalled_viewer_slows_nothing_and_viewers_that_come_and_go_leave_nothing(served):
    run = served()
    events: list[dict] = []

    def follow() -> None:  # another client, reading every result
        s = run.open_stream("/events")
        buffer = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return
            buffer += chunk
            *done, buffer = buffer.split(b"\n\n")
            events.extend(json.loads(e[6:]) for e in done if e.startswith(b"data: "))

    threading.Thread(target=follow, daemon=True).start()
    assert wait_for(lambda: len(events) >= 10, 30)
    stalled = run.open_stream(rcvbuf=4096)  # asks for the picture, never reads a byte
    assert wait_for(lambda: run.state()["viewers"] == 1, 10)
    first = events[-1]["frame"]
    state = run.state()
    # the picture goes on being encoded for it until its buffers are full; then it is dropped
    assert wait_for(lambda: run.state()["viewers"] == 0, 60), "the stalled viewer was never dropped"
    time.sleep(2)
    last = events[-1]["frame"]
    after = run.state()
    stalled.close()
    # every frame of the replay reached the model and every result reached the other client meanwhile
    got = {e["frame"] for e in events if first <= e["frame"] <= last}
    assert len(got) >= 0.95 * (last - first + 1), (len(got), first, last)
    assert after["dropped"] - state["dropped"] <= 0.05 * (last - first + 1)

    # 200 viewers come and go: threads and open files back where they were
    def come_and_go(path: str) -> None:
        s = run.open_stream(path)
        read_head(s)
        s.close()

    come_and_go("/stream.mjpg")
    come_and_go("/events")
    assert wait_for(lambda: run.state()["viewers"] == 0, 10)
    time.sleep(1)  # the last one's socket closed on the server's side too
    before = run.counts()
    for i in range(200):
        come_and_go(("/stream.mjpg", "/events", "/")[i % 3])
    back = lambda: all(now <= then for now, then in zip(run.counts(), before)) and run.state()["viewers"] == 0  # noqa: E731
    assert wait_for(back, 20), (before, run.counts())
    run.stop()
    assert run.proc.returncode == 0


def test_the_window_and_the_browser_share_the_controls(xvfb, served):  # noqa: F811
    run = served("--no-hud", env=cli_env(DISPLAY=xvfb))  # beside the window
    window = x(xvfb, "xdotool", "search", "--sync", "--name", "^detector$").split()[0]
    x(xvfb, "xdotool", "key", "--window", window, "space")
    assert wait_for(lambda: run.state()["paused"], 10)
    run.request("POST", "/api/control", {"pause": False})
    x(xvfb, "xdotool", "key", "--window", window, "plus")
    assert wait_for(lambda: run.state()["conf"] == 0.3 and not run.state()["paused"], 10)
    status, body, _ = run.request("POST", "/api/control", {"record": True})
    assert status == 200 and json.loads(body)["record"] is True
    x(xvfb, "xdotool", "key", "--window", window, "r")  # the key sees the browser's recording, and stops it
    assert wait_for(lambda: not run.state()["recording"], 10)
    viewer = run.open_stream()  # q with a viewer watching
    assert " 200 " in read_head(viewer).splitlines()[0]
    start = time.monotonic()
    x(xvfb, "xdotool", "key", "--window", window, "q")
    run.proc.wait(timeout=30)
    print(f"q to exit with a viewer connected: {time.monotonic() - start:.2f} s")
    viewer.close()
    run._reader.join(timeout=5)
    assert run.proc.returncode == 0 and any(line.startswith("recorded ") for line in run.out), run.out


# --- a real browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (installed by .ci/run)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "profile.default_content_setting_values.automatic_downloads": 1,
    })  # fmt: skip
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never fetches a driver or a browser
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.downloads = downloads
    yield driver
    driver.quit()


def canvas_pixels(driver, x0: int = 0, y0: int = 0, w: int | None = None, h: int | None = None) -> list[int]:
    return driver.execute_script(
        "const c = document.getElementById('picture');"
        "const d = c.getContext('2d').getImageData(arguments[0], arguments[1], arguments[2] || c.width,"
        " arguments[3] || c.height).data; return Array.from(d.filter((v, i) => i % 4 !== 3));",
        x0,
        y0,
        w,
        h,
    )


def page_stats(driver) -> dict:
    return driver.execute_script("return window.detectorStats")


def test_the_page_shows_the_picture_and_steers_the_run(browser, served):
    import numpy as np

    from detector.render import class_color

    run = served("--no-hud")
    browser.get(run.url)
    assert wait_for(lambda: page_stats(browser)["frames"] >= 10 and page_stats(browser)["events"] >= 10, 30)
    width, height = browser.execute_script("const c = document.getElementById('picture'); return [c.width, c.height]")
    assert (width, height) == (768, 432)  # the clip's frames, as shown

    # pause holds the picture still, until resumed
    browser.find_element("id", "pause").click()
    assert wait_for(lambda: run.state()["paused"], 10)
    time.sleep(1.0)
    still = canvas_pixels(browser)
    time.sleep(1.5)
    assert canvas_pixels(browser) == still

    # snapshot: both files downloaded, and the picture on the page is the snapshot's, boxes and all
    browser.find_element("id", "snapshot").click()
    assert wait_for(lambda: len([p for p in browser.downloads.iterdir() if p.suffix in (".png", ".json")]) == 2, 20)
    png = next(browser.downloads.glob("*.png"))
    record = json.loads(next(browser.downloads.glob("*.json")).read_text())
    import cv2

    saved = cv2.imread(str(png))[:, :, ::-1].astype(int)  # RGB, as the canvas
    shown = np.array(still).reshape(height, width, 3)
    assert np.abs(saved - shown).mean() < 4  # the same picture, through JPEG
    people = [d for d in record["detections"] if d["class_name"] == "person"]
    assert people, record
    x1, y1, x2, y2 = (round(v) for v in people[0]["xyxy"])
    person = np.array(class_color(0)[::-1])

    def distance_to_person_colour(x: int) -> float:  # along a vertical line, the median distance
        column = shown[y1 + (y2 - y1) // 4 : y2 - (y2 - y1) // 4, x]
        return float(np.median(np.linalg.norm(column - person, axis=1)))

    on_edge = min(distance_to_person_colour(x) for x in range(x1 - 1, x1 + 2))
    inside = distance_to_person_colour(min(x1 + 30, x2 - 1))
    assert on_edge < 60 < inside, (on_edge, inside)

    browser.find_element("id", "pause").click()  # resume: the picture moves again
    assert wait_for(lambda: not run.state()["paused"], 10)
    assert wait_for(lambda: canvas_pixels(browser) != still, 10)

    # the slider changes conf in /api/state, and the number of boxes
    def boxes_at(conf: float) -> float:
        browser.execute_script(
            "const s = document.getElementById('conf'); s.value = arguments[0];"
            "s.dispatchEvent(new Event('change'));", conf
        )  # fmt: skip
        assert wait_for(lambda: run.state()["conf"] == conf, 10)
        start = page_stats(browser)["events"]
        assert wait_for(lambda: page_stats(browser)["events"] >= start + 15, 30)
        time.sleep(0.5)
        recent = [json.loads(line) for line in run.jsonl.read_text().splitlines()[-10:]]
        return float(np.mean([len(r["detections"]) for r in recent]))

    few, many = boxes_at(0.9), boxes_at(0.05)
    assert many > few, (many, few)
    run.stop()


def test_the_page_reconnects_when_the_server_comes_back(browser, served):
    first = served()
    browser.get(first.url)
    assert wait_for(lambda: page_stats(browser)["frames"] >= 5, 30)
    first.stop()
    assert wait_for(lambda: "reconnecting" in browser.find_element("id", "connection").text, 10)
    seen, results = page_stats(browser)["frames"], page_stats(browser)["events"]
    second = served(port=first.port)
    assert wait_for(lambda: page_stats(browser)["frames"] >= seen + 5, 30), "no frames after the server came back"
    assert wait_for(lambda: page_stats(browser)["events"] >= results + 5, 30), "no results after it came back"
    assert browser.find_element("id", "connection").text == "live"
    second.stop()
