"""Process-wide settings made before the libraries load: Ultralytics offline and quiet, FFmpeg quiet.

Ultralytics looks up DNS at import (to decide whether it is online), sends usage events, checks PyPI
for updates and pip-installs missing requirements. This module runs before the first ultralytics
import and turns all of that off. A download still happens when the user names an official weights
file that is not on disk (``yolo26n.pt``): ``network_allowed()`` lifts the switch for that one call,
unless the user set ``YOLO_OFFLINE`` themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

USER_OFFLINE = os.environ.get("YOLO_OFFLINE", "").lower() in {"1", "true", "yes", "on"}

os.environ["YOLO_OFFLINE"] = "1"  # no DNS probe at import, no telemetry, no update check
os.environ["YOLO_AUTOINSTALL"] = "False"  # never pip-install behind the user's back
os.environ.setdefault("YOLO_VERBOSE", "False")
# FFmpeg (inside OpenCV) prints a line per damaged packet; we count failed frames and say so once
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@contextmanager
def network_allowed() -> Iterator[bool]:
    """Let Ultralytics reach the network inside this block; yields False when the user forbade it."""
    if USER_OFFLINE:
        yield False
        return
    os.environ["YOLO_OFFLINE"] = "0"
    try:
        yield True
    finally:
        os.environ["YOLO_OFFLINE"] = "1"
