"""The `detector` command as a user runs it: outputs, bad input (one line, exit 2), Ctrl-C, no network.

Every run has tests/no_network on its PYTHONPATH: a socket to anywhere but loopback raises.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED, needs_shared, ultralytics_asset

from detector.track.mot import read_mot

NO_NETWORK = Path(__file__).resolve().parent / "no_network"
BUS = str(ultralytics_asset("bus.jpg"))
ZIDANE = str(ultralytics_asset("zidane.jpg"))


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "YOLO_OFFLINE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(NO_NETWORK), env.get("PYTHONPATH")]))
    env.setdefault("YOLO_CONFIG_DIR", str(REPO / ".pytest_cache" / "ultralytics"))
    return {**env, **extra}


def detector(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "detector", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=cli_env(**env),
    )


def assert_bad_input(result: subprocess.CompletedProcess, *words: str) -> None:
    err = result.stderr.strip()
    assert result.returncode == 2, f"exit {result.returncode}: {err[-500:]}"
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("detector: error:") and len(err.splitlines()) <= 2, err
    for word in words:
        assert word.lower() in last.lower(), f"{word!r} not in: {last}"


def make_video(path: Path, frames: int, fps: float = 5.0, source: str = BUS) -> Path:
    """A real-image clip: the bus photo panning sideways, written by OpenCV."""
    image = cv2.imread(source)
    h, w = 360, 480
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(frames):
        x = (i * 7) % (image.shape[1] - w)
        writer.write(image[200 : 200 + h, x : x + w])
    writer.release()
    return path


def read_video(path: Path) -> tuple[int, tuple[int, int], float]:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    return count, size, cap.get(cv2.CAP_PROP_FPS)


# --- the jobs ------------------------------------------------------------------------------------


def test_help_reads_well():
    result = detector("--help")
    assert result.returncode == 0
    assert "image" in result.stdout and "video" in result.stdout and "pickle" in result.stdout
    video_help = detector("video", "--help").stdout
    for option in ("--weights", "--imgsz", "--conf", "--iou", "--classes", "--max-det", "--device", "--jsonl"):
        assert option in video_help


def test_image_files_folders_and_globs(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "zidane.jpg").write_bytes(Path(ZIDANE).read_bytes())
    result = detector("image", BUS, str(folder), str(folder / "*.jpg"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    bus = json.loads((tmp_path / "out" / "bus.json").read_text())
    names = [d["class_name"] for d in bus["detections"]]
    assert names.count("person") >= 3 and "bus" in names
    assert set(bus["detections"][0]) == {"xyxy", "confidence", "class_id", "class_name"}
    annotated = cv2.imread(str(tmp_path / "out" / "bus.jpg"))
    assert annotated.shape == cv2.imread(BUS).shape and not np.array_equal(annotated, cv2.imread(BUS))
    assert (tmp_path / "out" / "zidane.json").exists()
    assert "person" in result.stdout


def test_image_class_filter_by_name_and_id(tmp_path):
    result = detector("image", BUS, "--classes", "bus", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert {d["class_name"] for d in json.loads((tmp_path / "bus.json").read_text())["detections"]} == {"bus"}
    detector("image", BUS, "--classes", "0", "--max-det", "2", "--out", str(tmp_path))
    dets = json.loads((tmp_path / "bus.json").read_text())["detections"]
    assert [d["class_name"] for d in dets] == ["person", "person"]


def test_video_writes_annotated_mp4_and_jsonl(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=12, fps=5)
    result = detector("video", str(clip), "--out", str(tmp_path / "out.mp4"), "--jsonl", str(tmp_path / "d.jsonl"))
    assert result.returncode == 0, result.stderr
    frames, size, fps = read_video(tmp_path / "out.mp4")
    assert (frames, size, fps) == (12, (480, 360), 5.0)
    lines = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(12))
    assert lines[5]["time_s"] == pytest.approx(1.0)
    assert any(d["class_name"] == "person" for line in lines for d in line["detections"])
    assert "frames: 12" in result.stdout and "person" in result.stdout


def test_video_default_outputs(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=3)
    result = detector("video", str(clip), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs/video/clip.mp4").exists() and (tmp_path / "runs/video/clip.jsonl").exists()


def test_video_without_the_annotated_video(tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=4)
    result = detector("video", str(clip), "--quiet", "--no-video", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "runs/video/clip.mp4").exists() and "video:" not in result.stdout
    lines = (tmp_path / "runs/video/clip.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == [0, 1, 2, 3]


def test_imgsz_not_multiple_of_32_is_rounded_up(tmp_path):
    result = detector("image", BUS, "--weights", "yolo11n.yaml", "--imgsz", "500", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "not a multiple of 32" in result.stderr and "512" in result.stderr


# --- bad input ---------------------------------------------------------------------------------


def test_missing_image(tmp_path):
    assert_bad_input(detector("image", str(tmp_path / "nope.jpg")), "nope.jpg", "not found")


def test_not_an_image(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    assert_bad_input(detector("image", str(fake), "--out", str(tmp_path)), "fake.jpg", "could not be read")


def test_empty_folder_and_empty_glob(tmp_path):
    assert_bad_input(detector("image", str(tmp_path)), str(tmp_path), "no images")
    assert_bad_input(detector("image", str(tmp_path / "*.png")), "*.png", "matches no files")


def test_missing_video_and_not_a_video(tmp_path):
    assert_bad_input(detector("video", str(tmp_path / "gone.mp4")), "gone.mp4", "not found")
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video at all\n" * 100)
    result = detector("video", str(fake), "--out", str(tmp_path / "o.mp4"))
    assert_bad_input(result, "notes.mp4", "could not be decoded")


def test_unknown_weights(tmp_path):
    assert_bad_input(detector("image", BUS, "--weights", str(tmp_path / "mine.pt")), "mine.pt", "not found")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(os.urandom(2048))
    assert_bad_input(detector("image", BUS, "--weights", str(junk)), "junk.pt", "could not be loaded")
    odd = tmp_path / "model.tflite"
    odd.write_bytes(b"0" * 100)
    assert_bad_input(detector("image", BUS, "--weights", str(odd)), "model.tflite")


@pytest.mark.parametrize("cfg,kind", [("yolo11n-cls.yaml", "Classify"), ("yolo11n-seg.yaml", "Segment")])
def test_non_detection_checkpoint_is_refused(cfg, kind, tmp_path):
    from ultralytics import YOLO

    path = tmp_path / f"{kind.lower()}.pt"
    YOLO(cfg).save(path)
    assert_bad_input(detector("image", BUS, "--weights", str(path)), path.name, "not an object detector")


@needs_shared
def test_yolov5_checkpoint_is_refused_clearly():
    result = detector("image", BUS, "--weights", str(SHARED / "weights" / "yolov5n.pt"))
    assert_bad_input(result, "yolov5n.pt", "could not be loaded")


def test_official_name_offline_fails_fast_with_advice():
    start = time.monotonic()
    result = detector("image", BUS, "--weights", "yolo26n.pt", YOLO_OFFLINE="1", timeout=60)
    assert_bad_input(result, "yolo26n.pt", "YOLO_OFFLINE", "download")
    assert time.monotonic() - start < 60


@pytest.mark.download_attempt  # the one place the app may try: the user named official weights
def test_official_name_without_network_fails_without_hanging(tmp_path):
    result = detector("image", BUS, "--weights", "yolo26n.pt", cwd=tmp_path, timeout=120)
    assert_bad_input(result, "yolo26n.pt", "could not be downloaded")
    assert not (tmp_path / "yolo26n.pt").exists()


def test_unknown_class_name():
    assert_bad_input(detector("image", BUS, "--classes", "unicorn"), "unicorn", "not one of")


def test_threshold_out_of_range():
    assert_bad_input(detector("image", BUS, "--conf", "2"), "--conf")


@needs_shared
def test_truncated_video_processes_what_decodes(tmp_path):
    data = (SHARED / "videos" / "car-detection.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])
    result = detector("video", str(cut), "--out", str(tmp_path / "o.mp4"), "--quiet")
    assert result.returncode == 0, result.stderr
    written = len((tmp_path / "o.jsonl").read_text().splitlines())
    assert 50 < written < 377
    assert f"{377 - written} frame(s) could not be decoded" in result.stdout


@needs_shared
def test_corrupt_middle_is_skipped_and_counted(tmp_path):
    data = bytearray((SHARED / "videos" / "car-detection.mp4").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200_000] = np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    result = detector("video", str(damaged), "--out", str(tmp_path / "o.mp4"), "--quiet")
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line)["frame"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert frames[-1] == 376  # frame numbers stay true after the gap
    assert f"{377 - len(frames)} frame(s) could not be decoded" in result.stdout
    assert "Invalid NAL" not in result.stderr  # FFmpeg's own noise stays quiet


# --- nothing lost --------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_leaves_playable_video_and_complete_jsonl(sig, tmp_path):
    clip = make_video(tmp_path / "long.mp4", frames=400, fps=10)
    out, jsonl, mot = tmp_path / "o.mp4", tmp_path / "o.jsonl", tmp_path / "tracks.txt"
    tracking = ["--track", "--mot", str(mot)]  # tracking too: its MOT file must be complete as well
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "detector",
            "video",
            str(clip),
            "--out",
            str(out),
            "--jsonl",
            str(jsonl),
            "--quiet",
            *tracking,
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        # Ctrl-C as in a terminal: a test run started in the background (`cmd &` in a script) hands its
        # children SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 10):
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stdout
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line parses
    assert 10 <= len(lines) < 400
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    frames, size, _ = read_video(out)
    assert frames == len(lines) and size == (480, 360)  # plays, up to the last processed frame
    tracked = {line["frame"] + 1 for line in lines for d in line["detections"] if d["track_id"] is not None}
    assert tracked and set(read_mot(mot)[:, 0].astype(int)) >= tracked  # every line parses, none missing
