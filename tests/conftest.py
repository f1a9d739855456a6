"""Shared test fixtures: real images shipped with Ultralytics, the shared real data, random-init models."""

from __future__ import annotations

import math
import os
import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

os.environ["YOLO_OFFLINE"] = "1"  # tests never download
import detector  # noqa: E402, F401  (Ultralytics and OpenVINO quiet and offline before any test imports them)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
VIDEOS = sorted((SHARED / "videos").glob("*.mp4")) if SHARED.exists() else []
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"shared real data not found at {SHARED}")


def ultralytics_asset(name: str) -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / name


@pytest.fixture(autouse=True)
def no_network(monkeypatch, request, tmp_path_factory):
    """Any attempt to open an internet socket fails the test (loopback stays allowed), in this process and
    in the `detector` processes a test starts (tests/no_network/sitecustomize.py logs their attempts)."""
    log = tmp_path_factory.mktemp("network") / "attempts.log"
    monkeypatch.setenv("DETECTOR_NETWORK_LOG", str(log))
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (host.startswith("127.") or host in {"localhost", "::1"} or "/" in host):
            raise AssertionError(f"test tried to reach the network: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    real_getaddrinfo = socket.getaddrinfo

    def no_dns(host, *args, **kwargs):  # this machine's own names resolve without a DNS server
        if host in {"localhost", "127.0.0.1", "::1", "0.0.0.0", None}:
            return real_getaddrinfo(host, *args, **kwargs)
        raise AssertionError(f"test tried a DNS lookup of {host}")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    yield
    if log.exists() and not request.node.get_closest_marker("download_attempt"):
        pytest.fail(f"a detector process tried to reach the network: {log.read_text()[:500]}")


@pytest.fixture(scope="session", autouse=True)
def one_openvino_core():
    """Ultralytics' `YOLO(...)` makes a new ov.Core for every OpenVINO model it loads, and the parity tests load
    dozens in this one process; many Cores in one process is how Ultralytics' own CI died (a segmentation fault
    inside forward() after about 20 loads). The app loads every model through one (detector/backends.py);
    the references here do too."""
    from detector.backends import one_openvino_core

    with one_openvino_core():
        yield


def app_threads() -> list[threading.Thread]:
    """Live threads started by the detector package: its own Thread subclasses, or threads running one of
    its functions (libraries' helper threads, such as tqdm's monitor, are theirs to manage)."""

    def ours(thread: threading.Thread) -> bool:
        target = getattr(thread, "_target", None)
        module = type(thread).__module__ if target is None else getattr(target, "__module__", "") or ""
        return module == "detector" or module.startswith("detector.")

    return [t for t in threading.enumerate() if t.is_alive() and ours(t)]


@pytest.fixture(autouse=True)
def no_thread_left_behind():
    """Every thread the app starts has ended when the call that started it returns: one still inside
    OpenCV, OpenVINO or PyTorch while its objects, or the interpreter, are torn down can crash the process."""
    before = set(app_threads())
    yield
    left = [t.name for t in app_threads() if t not in before]
    assert not left, f"app threads still running after the test: {left}"


@pytest.fixture(scope="session")
def bus() -> np.ndarray:
    return cv2.imread(str(ultralytics_asset("bus.jpg")))


@pytest.fixture(scope="session")
def zidane() -> np.ndarray:
    return cv2.imread(str(ultralytics_asset("zidane.jpg")))


def random_video_frames(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Frames at fresh random positions of the shared real videos."""
    frames = []
    for video in VIDEOS:
        cap = cv2.VideoCapture(str(video))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for index in sorted(rng.choice(total, size=count, replace=False)):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = cap.read()
            assert ok, f"{video} frame {index}"
            frames.append(frame)
        cap.release()
    return frames


def class_heads(model: torch.nn.Module) -> list[torch.nn.Conv2d]:
    head = model.model[-1]
    branches = list(head.cv3) + list(getattr(head, "one2one_cv3", None) or [])
    return [seq[-1] for seq in branches]


def wake_random_model(model: torch.nn.Module, image: np.ndarray, conf: float, candidates: int = 150) -> None:
    """Shift a random-init model's class biases so that about `candidates` anchors pass `conf` on `image`.

    Fresh models score every class near sigmoid(-9): no boxes at any usual threshold, and a parity test
    over zero boxes proves nothing.
    """
    from detector.preprocess import preprocess

    model.eval()
    x = preprocess([image], (640, 640), 32, auto=True)
    with torch.no_grad():
        out = model(x)
    raw = out[0] if isinstance(out, (list, tuple)) else out  # [1, 4 + nc, A]
    best = raw[0, 4:].amax(0)  # [A]
    logits = torch.logit(best.double().clamp(1e-12, 1 - 1e-12))
    threshold_logit = math.log(conf / (1 - conf))
    delta = threshold_logit - logits.topk(candidates).values[-1].item() + 1e-3
    for conv in class_heads(model):
        conv.bias.data += delta
