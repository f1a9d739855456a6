"""Postprocess time: our gather/mask NMS against Ultralytics' non_max_suppression on the same tensors.

    python benchmarks/bench_postprocess.py [--repeat 20]

Prints a table; targets: <= 0.5x Ultralytics' time on dense output (conf 0.001), <= 1.0x on sparse (conf 0.25).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

# isort: off
import detector  # noqa: F401  (quiet, offline Ultralytics before it loads)
from ultralytics.utils.nms import non_max_suppression

# isort: on

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_postprocess import random_raw  # noqa: E402  (one generator of test inputs for tests and benchmarks)

from detector.postprocess import nms_head  # noqa: E402


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def real_raw() -> torch.Tensor:
    """The bundled model's raw output on Ultralytics' bus.jpg: real score statistics."""
    import cv2
    import ultralytics

    from detector import Detector

    model = Detector()
    bus = cv2.imread(str(Path(ultralytics.__file__).parent / "assets" / "bus.jpg"))
    return model.backend(model.preprocess([bus]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(
        f"# postprocess, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.repeat}"
    )
    print("| case | batch | conf | boxes kept | ultralytics ms | ours ms | ours / ultralytics |")
    print("|---|---|---|---|---|---|---|")
    real = real_raw()
    for name, conf in (("sparse", 0.25), ("dense", 0.001)):
        for batch, raw in ((1, random_raw(1, seed=1)), (8, random_raw(8, seed=8)), ("1 real", real)):
            kept = sum(len(r) for r in nms_head(raw, conf, 0.7))
            theirs = median_ms(lambda r=raw, c=conf: non_max_suppression(r.clone(), c, 0.7, max_det=300), args.repeat)
            ours = median_ms(lambda r=raw, c=conf: nms_head(r, c, 0.7, max_det=300), args.repeat)
            print(f"| {name} | {batch} | {conf} | {kept} | {theirs:.2f} | {ours:.2f} | {ours / theirs:.2f}x |")


if __name__ == "__main__":
    main()
