"""The browser view of a live run: an aiohttp server in its own thread, with its own event loop.

    drawing thread  --publish_frame-->  encoder thread (one JPEG per shown frame, only while someone watches)
                                           --call_soon_threadsafe-->  every /stream.mjpg viewer: the newest part
    drawing thread  --publish_event-->  every /events client: the JSONL line of each result
    /api/control    --> Controls (the same object the window's keys act on)

The live loop's threads only hand over and return: they never wait for a socket. aiohttp rather than
Starlette on uvicorn: one well-kept package with a server, streaming responses and a runner that lives in
any thread's event loop (uvicorn wants the main thread's signals), and nothing else to install.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import cv2
import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from detector.environment import run_below_the_model
from detector.errors import DetectorError
from detector.serve.controls import Controls

JPEG_QUALITY = 80
WRITE_TIMEOUT_S = 2.0  # a viewer that takes no bytes for this long is dropped
ACTION_TIMEOUT_S = 5.0  # a snapshot or recording switch is carried out between two frames, or the run is paused
EVENT_BACKLOG = 256  # results kept for a slow /events client before its oldest are dropped
PAGE_FILES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
              "/style.css": ("style.css", "text/css")}  # fmt: skip
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None
    max_viewers: int = 8
    token_made: bool = False  # made here, not given: printed once in the URL


def parse_serve(spec: str, token: str | None, max_viewers: int) -> ServeOptions:
    """``--serve [HOST:]PORT`` (``[::]:8080`` for IPv6) -> options; a non-loopback address without
    ``--token`` gets a token made here."""
    host, _, port = spec.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise DetectorError(f"--serve {spec}: give a port, or HOST:PORT, e.g. --serve 8080 or --serve 0.0.0.0:8080")
    if max_viewers < 1:
        raise DetectorError(f"--max-viewers {max_viewers}: give at least 1")
    made = token is None and host not in LOOPBACK_NAMES
    if made:
        token = secrets.token_urlsafe(16)
    return ServeOptions(host, int(port), token, max_viewers, made)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Encoder(threading.Thread):
    """The newest picture in, one multipart JPEG part out; pictures that come while it encodes are skipped."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        super().__init__(name="serve-encode", daemon=True)
        self.deliver = deliver
        self._picture: tuple[np.ndarray, int, float] | None = None
        self._wake = threading.Condition()
        self._closing = False

    def put(self, image: np.ndarray, index: int, t_wall: float) -> None:
        with self._wake:
            self._picture = (image, index, t_wall)
            self._wake.notify()

    def run(self) -> None:
        run_below_the_model()  # encoding for the browser seldom takes a core from the model
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._picture is not None or self._closing)
                if self._closing:
                    return
                (image, index, t_wall), self._picture = self._picture, None
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                head = (
                    f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {jpeg.size}\r\n"
                    f"X-Frame: {index}\r\nX-Capture-Time: {t_wall:.6f}\r\n\r\n"
                )
                self.deliver(head.encode() + jpeg.tobytes() + b"\r\n")

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self.join()


class _StateMetrics:
    """/metrics: the state as Prometheus gauges and counters, read when scraped."""

    def __init__(self, state: Callable[[], dict]) -> None:
        self.state = state

    def collect(self):
        s = self.state()
        gauges = {
            "camera_fps": "frames per second the camera gives",
            "model_fps": "frames per second the model can take",
            "latency_ms_p50": "capture to shown latency, median of the recent frames (ms)",
            "latency_ms_p95": "capture to shown latency, 95th percentile of the recent frames (ms)",
            "conf": "confidence threshold of what is shown",
            "viewers": "browsers watching /stream.mjpg",
        }
        for name, text in gauges.items():
            yield GaugeMetricFamily(f"detector_{name}", text, value=float(s[name]))
        for name in ("paused", "recording"):
            yield GaugeMetricFamily(f"detector_{name}", f"1 while {name}", value=float(s[name]))
        yield CounterMetricFamily("detector_frames", "frames detected", value=s["frames"])
        yield CounterMetricFamily(
            "detector_dropped", "frames captured that never reached the model", value=s["dropped"]
        )


class WebServer:
    """``start()`` binds and returns the URL to open; ``publish_*`` from the live loop; ``stop()`` ends every
    connection and joins its threads. ``state()`` gives /api/state's JSON; ``snapshot_files(n)`` the paths
    of snapshot ``n`` (only numbers the run gave out are ever looked up)."""

    def __init__(
        self,
        options: ServeOptions,
        controls: Controls,
        state: Callable[[], dict],
        snapshot_files: Callable[[int], tuple[Any, Any] | None],
    ) -> None:
        self.options, self.controls, self.state, self.snapshot_files = options, controls, state, snapshot_files
        self.viewers = 0
        self.port = options.port
        self._page = {route: resources.files("detector.serve").joinpath("static", name).read_bytes()
                      for route, (name, _) in PAGE_FILES.items()}  # fmt: skip
        self._part: bytes | None = None
        self._part_version = 0
        self._event_clients: set[asyncio.Queue] = set()
        self._closing = False
        self._wall_offset = time.time() - time.monotonic()  # t_capture is monotonic; browsers know the wall clock
        self._loop = asyncio.new_event_loop()
        self._new_part = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run_loop, name="serve", daemon=True)
        self._encoder = Encoder(lambda part: self._loop.call_soon_threadsafe(self._set_part, part))
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_StateMetrics(state))

    # --- the live loop's side: hand over and return ----------------------------------------------

    def publish_frame(self, image: np.ndarray, index: int, t_capture: float) -> None:
        """A shown picture (not copied: the caller draws the next one on a fresh array)."""
        if self.viewers:
            self._encoder.put(image, index, t_capture + self._wall_offset)

    def publish_event(self, record: dict) -> None:
        """One result's JSONL line, to every /events client."""
        if self._event_clients:
            data = b"data: " + json.dumps(record, separators=(",", ":")).encode() + b"\n\n"
            self._loop.call_soon_threadsafe(self._push_event, data)

    # --- start and stop -----------------------------------------------------------------------------

    def start(self) -> str:
        self._thread.start()
        self._encoder.start()
        try:
            asyncio.run_coroutine_threadsafe(self._bind(), self._loop).result(timeout=10)
        except OSError as e:
            self.stop()
            where = f"{self.options.host}:{self.options.port}"
            raise DetectorError(f"--serve {where}: cannot listen ({e.strerror or e}); try another port") from None
        return self.url

    @property
    def url(self) -> str:
        host = self.options.host
        if host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        if self._encoder.is_alive():
            self._encoder.close()
        self._loop.close()

    def _run_loop(self) -> None:
        self._loop.run_forever()

    async def _bind(self) -> None:
        app = web.Application(middlewares=[self._guard])
        for route in PAGE_FILES:
            app.router.add_get(route, self._page_file)
        app.router.add_get("/stream.mjpg", self._stream)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_post("/api/control", self._api_control)
        app.router.add_get(r"/snapshots/{number:\d+}.{kind:png|json}", self._snapshot)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.options.port, shutdown_timeout=0.5)
        await site.start()
        self.port = self._runner.addresses[0][1]  # port 0: the one the system gave

    async def _shutdown(self) -> None:
        self._closing = True
        self._new_part.set()
        for queue in self._event_clients:
            queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
        await self._loop.shutdown_default_executor()  # the threads that served snapshot files

    # --- who may ask ----------------------------------------------------------------------------

    def _host_allowed(self, host_header: str) -> bool:
        """Only this server's own names: a page on another site that rebinds its DNS to us is refused."""
        name, _, port = host_header.rpartition(":") if not host_header.endswith("]") else (host_header, "", "")
        name = name.strip("[]").lower()
        if port != str(self.port):
            return False
        bound = self.options.host.lower()
        if name in LOOPBACK_NAMES or name == bound:
            return True
        return bound in ("0.0.0.0", "::") and (_is_ip(name) or name == socket.gethostname().lower())

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if not self._host_allowed(request.host):
            return web.Response(status=403, text="forbidden: unknown Host\n")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"http://{request.host}":
            return web.Response(status=403, text="forbidden: a page from another site\n")
        token = self.options.token
        set_cookie = False
        if token is not None:
            cookie_name = f"detector_token_{self.port}"
            offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            offered = offered or request.query.get("token") or request.cookies.get(cookie_name, "")
            if not hmac.compare_digest(offered.encode(), token.encode()):
                return web.Response(status=401, text="unauthorized: open the URL with ?token=... printed at start\n")
            set_cookie = "token" in request.query
        response = await handler(request)
        if set_cookie and not response.prepared:
            response.set_cookie(cookie_name, token, httponly=True, samesite="Strict", path="/")
        return response

    # --- the routes -----------------------------------------------------------------------------

    async def _page_file(self, request: web.Request) -> web.Response:
        _, content_type = PAGE_FILES[request.path]
        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=self._page[request.path], content_type=content_type, headers=headers)

    def _set_part(self, part: bytes) -> None:
        self._part, self._part_version = part, self._part_version + 1
        woken, self._new_part = self._new_part, asyncio.Event()
        woken.set()

    def _push_event(self, data: bytes) -> None:
        for queue in self._event_clients:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(data)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        if self.viewers >= self.options.max_viewers:
            raise web.HTTPServiceUnavailable(text=f"at most {self.options.max_viewers} viewers (--max-viewers)\n")
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame", "Cache-Control": "no-store"}
        )
        self.viewers += 1
        try:
            await response.prepare(request)
            seen = self._part_version if self._part is None else -1
            while not self._closing:
                if self._part_version == seen:
                    await self._new_part.wait()
                    continue
                seen, part = self._part_version, self._part
                await asyncio.wait_for(response.write(part), WRITE_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()  # it stopped reading: free its buffers now
        finally:
            self.viewers -= 1
            if not self.viewers:
                self._part = None  # an old picture is never the first one a new viewer sees
        return response

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._event_clients) >= self.options.max_viewers:
            raise web.HTTPServiceUnavailable(text=f"at most {self.options.max_viewers} event clients\n")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        queue: asyncio.Queue = asyncio.Queue(EVENT_BACKLOG)
        self._event_clients.add(queue)
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")  # the browser reconnects by itself after a second
            while (data := await queue.get()) is not None:
                await asyncio.wait_for(response.write(data), WRITE_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()
        finally:
            self._event_clients.discard(queue)
        return response

    async def _api_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state(), headers={"Cache-Control": "no-store"})

    async def _api_control(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return web.json_response({"error": "send a JSON body (Content-Type: application/json)"}, status=415)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise DetectorError('send a JSON object, e.g. {"pause": true}')
            pending = self.controls.apply(body)
        except (ValueError, DetectorError) as e:
            return web.json_response({"error": str(e)}, status=400)
        answer: dict[str, Any] = {}
        for action, outcome in pending.items():
            try:
                answer[action] = await asyncio.wait_for(asyncio.wrap_future(outcome), ACTION_TIMEOUT_S)
            except (asyncio.TimeoutError, DetectorError) as e:
                return web.json_response({"error": f"{action}: {e or 'not done in time'}"}, status=503)
        return web.json_response({**self.state(), **answer})

    async def _snapshot(self, request: web.Request) -> web.Response:
        files = self.snapshot_files(int(request.match_info["number"]))
        if files is None:
            raise web.HTTPNotFound()
        png, record = files
        kind = request.match_info["kind"]
        path = png if kind == "png" else record
        return web.FileResponse(path, headers={"Content-Disposition": f"attachment; filename={path.name}"})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
