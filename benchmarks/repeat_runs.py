"""Exit codes under repetition: short runs, started over and over, each checked for a clean exit and complete
outputs. A crash at exit (a thread still inside native code while the interpreter shuts down) shows here as
an exit code other than 0, in some runs only.

    python benchmarks/repeat_runs.py [--video-runs 50] [--demo-runs 20]

- `detector video` on a 2-second clip (the bundled clip's first 20 frames): exit 0, a JSON line and a
  video frame for every frame of the clip;
- `detector demo --no-show --duration 3 --jsonl --record`: exit 0, every JSON line parses, the recording
  holds one frame per line.
The time column is each run's wall time against a bare `python -c "import detector"` in the same run (the
reference): what a run costs beyond starting Python and loading the libraries.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2

import detector  # noqa: F401  (quiet, offline Ultralytics)
from detector.sources import SAMPLE_VIDEO


def frames_in(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def cut_clip(path: Path, frames: int) -> Path:
    cap = cv2.VideoCapture(str(SAMPLE_VIDEO))
    fps = cap.get(cv2.CAP_PROP_FPS)
    first = cap.read()[1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (first.shape[1], first.shape[0]))
    writer.write(first)
    for _ in range(frames - 1):
        writer.write(cap.read()[1])
    writer.release()
    cap.release()
    return path


def timed(command: list[str], cwd: Path) -> tuple[int, float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    return result.returncode, time.perf_counter() - start, result.stderr


def repeat(name: str, runs: int, run_once: Callable[[Path], tuple[int, float, str, bool]], base_s: float) -> bool:
    codes: Counter = Counter()
    complete, seconds, failures = 0, [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            code, wall_s, stderr, ok = run_once(Path(tmp))
        codes[code] += 1
        complete += ok
        seconds.append(wall_s)
        if code != 0 or not ok:
            failures.append(f"run {i + 1}: exit {code}, outputs {'complete' if ok else 'INCOMPLETE'}: {stderr[-300:]}")
        print(f"\r{name}: {i + 1}/{runs}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    median = statistics.median(seconds)
    exits = ", ".join(f"{code}: {n}" for code, n in sorted(codes.items()))
    print(f"| {name} | {runs} | {exits} | {complete}/{runs} | {median:.2f} | {median / base_s:.2f}x |")
    for line in failures:
        print(f"    {line}")
    return codes[0] == runs and complete == runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video-runs", type=int, default=50)
    parser.add_argument("--demo-runs", type=int, default=20)
    args = parser.parse_args()
    python = [sys.executable, "-X", "faulthandler"]

    with tempfile.TemporaryDirectory() as tmp:
        clip = cut_clip(Path(tmp) / "clip.mp4", 20)
        clip_frames = frames_in(clip)
        base_s = statistics.median(timed([*python, "-c", "import detector"], Path(tmp))[1] for _ in range(5))

        def video_once(out: Path) -> tuple[int, float, str, bool]:
            code, wall_s, stderr = timed([*python, "-m", "detector", "video", str(clip), "--quiet"], out)
            jsonl, mp4 = out / "runs/video/clip.jsonl", out / "runs/video/clip.mp4"
            lines = jsonl.read_text().splitlines() if jsonl.exists() else []
            ok = len(lines) == clip_frames and all(json.loads(line) for line in lines) and frames_in(mp4) == clip_frames
            return code, wall_s, stderr, ok

        def demo_once(out: Path) -> tuple[int, float, str, bool]:
            command = [*python, "-m", "detector", "demo", "--no-show", "--duration", "3"]
            code, wall_s, stderr = timed([*command, "--jsonl", "d.jsonl", "--record", "d.mp4"], out)
            jsonl = out / "d.jsonl"
            lines = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
            ok = len(lines) > 5 and frames_in(out / "d.mp4") == len(lines)
            return code, wall_s, stderr, ok

        print(f"# repeated runs; reference: `python -c 'import detector'` {base_s:.2f} s (median of 5)")
        print("| command | runs | exit codes (code: runs) | complete outputs | median s | / reference |")
        print("|---|---|---|---|---|---|")
        ok = repeat(f"detector video ({clip_frames}-frame clip)", args.video_runs, video_once, base_s)
        ok &= repeat("detector demo --no-show --duration 3", args.demo_runs, demo_once, base_s)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
