"""Assigner time and peak memory: our gathered TaskAlignedAssigner against Ultralytics' on the same inputs.

    python benchmarks/bench_assigner.py [--repeat 20]

Batch 16, 80 classes, at 640 (8,400 anchors) and 320 (2,100 anchors); COCO-like target counts (0 to 18 per
image, a fifth of images empty: mean about 7, as in COCO) and crowded ones (0 to 60). Inputs come from the
parity tests' generator.
Time: median of ``--repeat`` calls, ours and theirs alternating so that both see the same machine load.
Peak memory: ``torch.profiler`` with ``profile_memory=True`` records every CPU tensor allocation and free
with its time; the peak is the largest running sum over one call (tensors allocated during the call and
alive at once; the inputs are not counted). Target: <= 1.0x Ultralytics' time.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own start/stop lines, not our output

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from ultralytics.utils.tal import TaskAlignedAssigner as UltralyticsAssigner  # noqa: E402

import detector  # noqa: E402, F401  (quiet, offline Ultralytics before it loads)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_assign import random_assigner_inputs, ultralytics_assign  # noqa: E402  (one generator for tests and benchmarks)

from detector.train.assign import TaskAlignedAssigner  # noqa: E402

CASES = [("COCO-like", 640, 18), ("COCO-like", 320, 18), ("crowded", 640, 60), ("crowded", 320, 60)]


def peak_mib(fn) -> float:
    """Largest amount of CPU tensor memory that ``fn`` holds at once, in MiB."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    return max(itertools.accumulate((e.nbytes() for e in events), initial=0)) / 2**20


def alternating_medians_ms(fns, repeat: int) -> list[float]:
    for fn in fns:  # warm-up
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, t in zip(fns, times):
            start = time.perf_counter()
            fn()
            t.append(time.perf_counter() - start)
    return [statistics.median(t) * 1e3 for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    print(
        f"# assigner, batch {args.batch}, 80 classes, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeat}"
    )
    print(
        "| targets | imgsz | anchors | targets per image (mean / max) | ultralytics ms | ours ms | ours / ultralytics "
        "| ultralytics peak MiB | ours peak MiB | ours / ultralytics |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, imgsz, max_targets in CASES:
        inputs = random_assigner_inputs(args.batch, imgsz, 80, max_targets, np.random.default_rng(imgsz + max_targets))
        ours_fn = TaskAlignedAssigner(num_classes=80)  # v8DetectionLoss's settings: topk 10, alpha 0.5, beta 6
        theirs_fn = UltralyticsAssigner(topk=10, num_classes=80, alpha=0.5, beta=6.0)

        def ours(inputs=inputs, ours_fn=ours_fn):
            return ours_fn(*inputs)

        def theirs(inputs=inputs, theirs_fn=theirs_fn):
            return ultralytics_assign(theirs_fn, *inputs)

        assert torch.equal(ours().target_idx, theirs().target_idx), "the two assigners disagree"
        their_ms, our_ms = alternating_medians_ms([theirs, ours], args.repeat)
        their_mib, our_mib = peak_mib(theirs), peak_mib(ours)
        counts = inputs[4].sum(1).float()  # [B] targets per image
        print(
            f"| {name} | {imgsz} | {inputs[0].shape[1]} | {counts.mean():.1f} / {int(counts.max())} "
            f"| {their_ms:.1f} | {our_ms:.1f} | {our_ms / their_ms:.2f}x "
            f"| {their_mib:.1f} | {our_mib:.1f} | {our_mib / their_mib:.2f}x |"
        )


if __name__ == "__main__":
    main()
