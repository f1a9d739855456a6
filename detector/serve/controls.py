"""The one set of controls of a live run: the window's keys and the browser's requests both act here.

Settings (pause, confidence, class filter, overlay) take effect at once, from any thread. Actions that need
the picture on screen (snapshot, recording on/off) are queued for the thread that draws it, which carries
them out between two frames (``take_requests``); whoever asked gets the outcome through a Future.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from detector.errors import DetectorError
from detector.pipeline import resolve_classes

CONF_STEP, CONF_MIN, CONF_MAX = 0.05, 0.05, 0.95
ACTIONS = ("snapshot", "record")


class HasConf(Protocol):
    conf: float


class HasClasses(Protocol):
    classes: list[int] | None
    names: dict[int, str]


@dataclass
class Request:
    """An action for the drawing thread: ``snapshot`` (value None) or ``record`` (value: on or off)."""

    action: str
    value: Any = None
    outcome: Future = field(default_factory=Future)


class Controls:
    """``threshold``: whose ``conf`` decides what is shown (the tracker's while tracking, else the detector's);
    ``detector``: whose ``classes`` filter what the model keeps."""

    def __init__(self, threshold: HasConf, detector: HasClasses, hud: bool = True) -> None:
        self.threshold, self.detector, self.hud = threshold, detector, hud
        self.paused = threading.Event()  # the model thread skips frames and the picture holds still
        self._requests: list[Request] = []
        self._lock = threading.Lock()

    # --- settings ------------------------------------------------------------------------------

    @property
    def conf(self) -> float:
        return self.threshold.conf

    def set_conf(self, conf: float) -> None:
        self.threshold.conf = round(min(max(float(conf), CONF_MIN), CONF_MAX), 2)

    def set_paused(self, paused: bool) -> None:
        self.paused.set() if paused else self.paused.clear()

    @property
    def classes(self) -> list[str] | None:
        """The class filter by name; None: every class."""
        kept = self.detector.classes
        return None if kept is None else [self.detector.names[c] for c in kept]

    def set_classes(self, classes: Sequence[int | str] | None) -> None:
        """By name or id; None or empty: every class. Raises DetectorError naming an unknown class."""
        self.detector.classes = resolve_classes(list(classes), self.detector.names) if classes else None

    # --- actions for the drawing thread -------------------------------------------------------------

    def request(self, action: str, value: Any = None) -> Future:
        item = Request(action, value)
        with self._lock:
            self._requests.append(item)
        return item.outcome

    def take_requests(self) -> list[Request]:
        with self._lock:
            taken, self._requests = self._requests, []
        return taken

    def cancel_requests(self, why: str) -> None:
        """The run ends: nobody will carry out what is still queued."""
        for item in self.take_requests():
            item.outcome.set_exception(DetectorError(why))

    # --- the two ways in ----------------------------------------------------------------------------

    def key(self, key: int, recording: bool) -> bool:
        """The window's keys (``KEYS_HELP``); True when the key quits."""
        if key in (ord("q"), 27):
            return True
        if key == ord(" "):
            self.set_paused(not self.paused.is_set())
        elif key == ord("s"):
            self.request("snapshot")
        elif key == ord("r"):
            self.request("record", not recording)
        elif key in (ord("+"), ord("=")):
            self.set_conf(self.conf + CONF_STEP)
        elif key in (ord("-"), ord("_")):
            self.set_conf(self.conf - CONF_STEP)
        elif key == ord("h"):
            self.hud = not self.hud
        return False

    def apply(self, body: dict[str, Any]) -> dict[str, Future]:
        """A browser's ``POST /api/control`` body: any of pause, conf, classes, hud (set now), snapshot,
        record (queued; their Futures returned by name). Raises DetectorError on a bad field, before changing
        anything."""
        checks = {
            "pause": lambda v: isinstance(v, bool),
            "hud": lambda v: isinstance(v, bool),
            "record": lambda v: isinstance(v, bool),
            "snapshot": lambda v: v is True,
            "conf": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
            "classes": lambda v: v is None or (isinstance(v, list) and all(isinstance(c, (int, str)) for c in v)),
        }
        unknown = sorted(set(body) - set(checks))
        if unknown:
            raise DetectorError(f"unknown control(s) {', '.join(unknown)}; known: {', '.join(checks)}")
        for name, value in body.items():
            if not checks[name](value):
                raise DetectorError(f"bad value for {name}: {value!r}")
        if "classes" in body:  # first: an unknown class is refused before anything has changed
            self.set_classes(body["classes"])
        if "pause" in body:
            self.set_paused(body["pause"])
        if "conf" in body:
            self.set_conf(body["conf"])
        if "hud" in body:
            self.hud = body["hud"]
        return {name: self.request(name, body[name]) for name in ACTIONS if name in body}
