"""`detector diff`: two runs of `detector video` on the same video compared frame by frame, box by box."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detector.detections import Detections
from detector.errors import DetectorError
from detector.evaluate.runs import by_confidence, read_jsonl
from detector.metrics import box_iou, match_boxes

MOVED_IOU = 0.1  # diff: boxes left unpaired at --iou that still overlap this much are the same box, moved
SHOWN_DIFF_FRAMES = 10  # diff: changed frames listed in the terminal (all of them go to --json)
DIFF_KINDS = ("same", "added", "removed", "moved", "reclassified")


def diff_frame(a: Detections, b: Detections, iou: float) -> dict[str, int]:
    """Pair A's boxes with B's in three passes, each greedy by B's confidence over what is still unpaired:
    same class at ``iou`` (same), any class at ``iou`` (reclassified), any class at ``MOVED_IOU`` (moved).
    What is left is removed (A only) or added (B only)."""
    a, b = by_confidence(a), by_confidence(b)
    overlap = box_iou(a.xyxy, b.xyxy)  # [M, N]
    free_a, free_b = torch.ones(len(a), dtype=torch.bool), torch.ones(len(b), dtype=torch.bool)
    same_class = a.class_id[:, None] == b.class_id[None]  # [M, N]
    counts = {}
    for kind, allowed, level in (("same", same_class, iou), ("reclassified", True, iou), ("moved", True, MOVED_IOU)):
        pair = match_boxes(overlap, free_a[:, None] & free_b[None] & allowed, torch.tensor([level]))[:, 0]  # [N]
        paired = pair >= 0
        free_a[pair[paired]] = False
        free_b &= ~paired
        counts[kind] = int(paired.sum())
    return {**counts, "removed": int(free_a.sum()), "added": int(free_b.sum())}


@dataclass(frozen=True)
class Diff:
    a: Path
    b: Path
    iou: float
    per_frame: list[dict[str, Any]]  # frame, time_s and the DIFF_KINDS counts

    def total(self) -> dict[str, int]:
        return {k: sum(f[k] for f in self.per_frame) for k in DIFF_KINDS}

    @property
    def changed_share(self) -> float:
        """Changed boxes over all boxes of either run (pairs counted once); 0 when both runs are empty."""
        total = self.total()
        union = sum(total.values())
        return (union - total["same"]) / union if union else 0.0

    def report(self) -> dict[str, Any]:
        return {
            "a": str(self.a),
            "b": str(self.b),
            "iou": self.iou,
            "changed_share": round(self.changed_share, 6),
            "total": self.total(),
            "per_frame": self.per_frame,
        }

    def lines(self) -> list[str]:
        changed = [f for f in self.per_frame if f["same"] != sum(f[k] for k in DIFF_KINDS)]
        out = [f"diff: {self.a} -> {self.b}, {len(self.per_frame)} frames, boxes paired at IoU >= {self.iou:g}"]
        if changed:
            out.append(f"{'frame':>6}{'time_s':>8}" + "".join(f"{k:>{len(k) + 2}}" for k in DIFF_KINDS))
            for f in changed[:SHOWN_DIFF_FRAMES]:
                out.append(f"{f['frame']:>6}{f['time_s']:>8.2f}" + "".join(f"{f[k]:>{len(k) + 2}}" for k in DIFF_KINDS))
            if len(changed) > SHOWN_DIFF_FRAMES:
                out.append(f"... and {len(changed) - SHOWN_DIFF_FRAMES} more changed frames (all in --json)")
        total = self.total()
        union = sum(total.values())
        out.append(
            f"total: {', '.join(f'{k} {total[k]}' for k in DIFF_KINDS)}; changed {union - total['same']} of "
            f"{union} boxes ({self.changed_share:.1%}) in {len(changed)} of {len(self.per_frame)} frames"
        )
        return out


def diff_runs(a_path: str | Path, b_path: str | Path, iou: float = 0.5) -> Diff:
    """Compare two runs on the same video, frame by frame."""
    if not 0 < iou <= 1:
        raise DetectorError(f"--iou {iou}: must lie in (0, 1]")
    a_path, b_path = Path(a_path), Path(b_path)
    a, b = read_jsonl(a_path), read_jsonl(b_path)
    b_by_frame = {r.frame: r for r in b}
    only_a = sorted({r.frame for r in a} - b_by_frame.keys())
    only_b = sorted(b_by_frame.keys() - {r.frame for r in a})
    if only_a or only_b:
        frame, which = (only_a[0], a_path) if only_a and (not only_b or only_a[0] < only_b[0]) else (only_b[0], b_path)
        raise DetectorError(
            f"frame {frame} is only in {which} ({len(a)} vs {len(b)} frames): diff compares runs on the same video"
        )
    per_frame = []
    for ra in sorted(a, key=lambda r: r.frame):
        rb = b_by_frame[ra.frame]
        if abs(ra.time_s - rb.time_s) > 1e-3:
            raise DetectorError(
                f"frame {ra.frame} is at {ra.time_s} s in {a_path} but at {rb.time_s} s in {b_path}: "
                "runs of different videos (frame rates differ)"
            )
        per_frame.append({"frame": ra.frame, "time_s": ra.time_s, **diff_frame(ra.detections, rb.detections, iou)})
    return Diff(a_path, b_path, iou, per_frame)
