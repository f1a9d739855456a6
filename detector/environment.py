"""Process-wide settings made before the libraries load: Ultralytics and OpenVINO offline and quiet,
FFmpeg quiet.

Ultralytics looks up DNS at import (to decide whether it is online), sends usage events, checks PyPI
for updates and pip-installs missing requirements. This module runs before the first ultralytics
import and turns all of that off. A download still happens when the user names an official weights
file that is not on disk (``yolo26n.pt``): ``network_allowed()`` lifts the switch for that one call,
unless the user set ``YOLO_OFFLINE`` themselves.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# threads for inference: what the user asked for, else every core we may run on (read before Ultralytics'
# import sets OMP_NUM_THREADS=1 for its data loaders)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
INFERENCE_THREADS = int(os.environ.get("OMP_NUM_THREADS") or CORES)
USER_OFFLINE = os.environ.get("YOLO_OFFLINE", "").lower() in {"1", "true", "yes", "on"}

os.environ["YOLO_OFFLINE"] = "1"  # no DNS probe at import, no telemetry, no update check
os.environ["YOLO_AUTOINSTALL"] = "False"  # never pip-install behind the user's back
os.environ.setdefault("YOLO_VERBOSE", "False")
# FFmpeg (inside OpenCV) prints a line per damaged packet; we count failed frames and say so once
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
# opencv-python's Qt looks for fonts in its own empty folder and complains on every window; point it
# at the system's fonts where there are some
if "QT_QPA_FONTDIR" not in os.environ and os.path.isdir("/usr/share/fonts/truetype"):
    os.environ["QT_QPA_FONTDIR"] = "/usr/share/fonts/truetype"


def _decline_openvino_telemetry() -> None:
    """OpenVINO sends usage events to Google Analytics from a background thread unless a consent file
    says no (its tools count a missing file as yes). Answer no for this process, writing nothing."""
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED


_decline_openvino_telemetry()


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


@contextmanager
def no_downloads() -> Iterator[None]:
    """Run Ultralytics code without the downloads it starts on its own, whatever YOLO_OFFLINE says:
    it looks online for checkpoints that are on disk (renaming yolov5n.pt to yolov5nu.pt, re-downloading
    official names it cannot unpickle) and fetches a font when it reads a dataset. Here a file on disk is
    that file, and no font is fetched (ours need none)."""
    from ultralytics.data import utils as data_utils
    from ultralytics.utils import downloads

    saved = downloads.attempt_download_asset, data_utils.check_font
    downloads.attempt_download_asset = lambda file, *args, **kwargs: str(file)
    data_utils.check_font = lambda *args, **kwargs: None
    try:
        yield
    finally:
        downloads.attempt_download_asset, data_utils.check_font = saved


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence C libraries writing to file descriptor 2 for the duration of the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def run_in_idle_time() -> None:
    """Let the calling thread run only on CPU time nothing else wants (Linux ``SCHED_IDLE``; elsewhere
    nothing). For helper threads of a few cores' machine: each time one of them takes a core from a
    multi-threaded model, every other thread of the model waits for it at the next barrier."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread
    except (AttributeError, OSError):
        pass


def run_below_the_model() -> None:
    """Give the calling thread the lowest priority that still gets CPU when every core is busy (nice 19;
    elsewhere nothing): it seldom takes a core from the model's threads, and is never starved outright as
    under ``run_in_idle_time``. For work a person waits on, such as the browser's picture."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)  # Linux: a thread's own nice value
    except (AttributeError, OSError):
        pass
