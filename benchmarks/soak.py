"""Soak: a long headless demo, watched from outside for leaks and drift.

    python benchmarks/soak.py [--duration 600] [--interval 5]

Runs `detector demo --no-show --duration D --jsonl ... --record ...` (the bundled clip replayed as a camera,
looping) and samples the process every --interval seconds from /proc: resident memory, threads, open file
descriptors. Afterwards reads the capture->shown latency of every result from the JSON lines. Prints one
row a minute and the checks, each against the run's own early figures (the reference measured in the same
run): RSS at the end <= 1.05x RSS after the first minute; threads and open files constant after start-up;
latency p95 of the last minute <= 1.15x that of the second minute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def sample(pid: int) -> tuple[float, int, int]:
    """(RSS MiB, threads, open file descriptors) of a running process."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_mib = int(fields["VmRSS"].split()[0]) / 1024
    return rss_mib, int(fields["Threads"]), len(os.listdir(f"/proc/{pid}/fd"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of demo (default 600)")
    parser.add_argument("--interval", type=float, default=5, help="seconds between samples (default 5)")
    args = parser.parse_args()
    if args.duration < 180:
        parser.error("--duration: at least 180 s (the checks compare the second minute with the last)")

    with tempfile.TemporaryDirectory() as tmp:
        jsonl, record = Path(tmp) / "demo.jsonl", Path(tmp) / "demo.mp4"
        command = [sys.executable, "-m", "detector", "demo", "--no-show", "--duration", str(args.duration)]
        command += ["--jsonl", jsonl.name, "--record", record.name]  # relative to cwd: no machine paths in the output
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
        samples: list[tuple[float, float, int, int]] = []  # (time.monotonic(), RSS MiB, threads, fds)
        while proc.poll() is None:
            try:
                samples.append((time.monotonic(), *sample(proc.pid)))
            except (FileNotFoundError, ProcessLookupError, KeyError):
                break  # it just ended
            time.sleep(args.interval)
        stdout, stderr = proc.communicate()
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    if proc.returncode != 0:
        print(f"demo exited {proc.returncode}:\n{stderr[-2000:]}", file=sys.stderr)
        return 1

    # one clock for both: the JSON lines' t_capture is the demo's time.monotonic(), system-wide on Linux;
    # minutes count from the first result (after loading and warm-up)
    t0 = lines[0]["t_capture"]
    t_result = np.array([line["t_capture"] - t0 for line in lines])  # [R]
    latency = np.array([line["latency_ms"] for line in lines])  # [R]
    sample_t = np.array([s[0] for s in samples]) - t0  # [S]
    minutes = int(args.duration // 60)
    print(f"# soak: detector demo --no-show --duration {args.duration:.0f}, {os.cpu_count()} CPUs")
    print(f"# exit {proc.returncode}; {len(lines)} results; {len(samples)} samples every {args.interval:g} s")
    print("| minute | RSS MiB (end of minute) | threads | open files | results | latency p50 ms | latency p95 ms |")
    print("|---|---|---|---|---|---|---|")
    per_minute = {}
    for m in range(minutes):
        in_minute = (t_result >= 60 * m) & (t_result < 60 * (m + 1))
        window = [s for s, t in zip(samples, sample_t) if 60 * m <= t < 60 * (m + 1)]
        last = window[-1] if window else samples[-1]
        p50, p95 = (np.percentile(latency[in_minute], q) if in_minute.any() else float("nan") for q in (50, 95))
        per_minute[m] = (last[1], p95)
        print(f"| {m + 1} | {last[1]:.1f} | {last[2]} | {last[3]} | {int(in_minute.sum())} | {p50:.1f} | {p95:.1f} |")

    # after the first minute, while frames still came (the last samples may catch the demo closing down)
    steady = [s for s, t in zip(samples, sample_t) if 60 <= t <= t_result[-1]]
    rss_ratio = steady[-1][1] / per_minute[0][0]
    p95_ratio = per_minute[minutes - 1][1] / per_minute[1][1]
    threads = sorted({s[2] for s in steady})
    fds = sorted({s[3] for s in steady})
    checks = [
        ("RSS at the end / after the first minute", f"{rss_ratio:.3f}x", "<= 1.05x", rss_ratio <= 1.05),
        ("threads after the first minute", ", ".join(map(str, threads)), "constant", len(threads) == 1),
        ("open files after the first minute", ", ".join(map(str, fds)), "constant", len(fds) == 1),
        ("latency p95 last minute / second minute", f"{p95_ratio:.3f}x", "<= 1.15x", p95_ratio <= 1.15),
    ]
    print()
    print("| check | value | target | met |")
    print("|---|---|---|---|")
    for name, value, target, met in checks:
        print(f"| {name} | {value} | {target} | {'yes' if met else 'NO'} |")
    print()
    print("demo's own summary:\n" + "\n".join(f"    {line}" for line in stdout.strip().splitlines()))
    return 0 if all(met for *_, met in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
