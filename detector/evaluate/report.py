"""What `detector eval-video` reports: per-class counts and AP, report.json's content, the terminal table,
the per-frame plot and the annotated video."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from detector.render import draw_detections, draw_hud
from detector.sinks import VideoSink
from detector.sources import VideoFile

if TYPE_CHECKING:
    from detector.evaluate.score import Evaluation, FrameMatch

GT_COLORS = {"found": (255, 255, 255), "missed": (255, 0, 255)}  # BGR: white, magenta (no class colour is either)


def per_class(evaluation: Evaluation) -> dict[str, dict[str, float]]:
    """Counts at the operating point and AP, per class with ground truth."""
    classes = evaluation.ap.classes

    def per_class_count(ids: torch.Tensor) -> list[int]:
        return torch.bincount(torch.searchsorted(classes, ids), minlength=len(classes)).tolist()

    shown = per_class_count(torch.cat([f.shown.class_id for f in evaluation.frames]))
    hit = per_class_count(torch.cat([f.shown.class_id[f.hit] for f in evaluation.frames]))
    out = {}
    for c, gt, tp, n, ap50, ap in zip(
        classes.tolist(), evaluation.ap.targets.tolist(), hit, shown, evaluation.ap.ap50, evaluation.ap.ap50_95
    ):
        out[evaluation.names.get(c, str(c))] = {
            "gt": gt,
            "tp": tp,
            "fp": n - tp,
            "fn": gt - tp,
            "precision": round(tp / n, 6) if n else 0.0,
            "recall": round(tp / gt, 6),
            "AP50": round(float(ap50), 6),
            "AP50-95": round(float(ap), 6),
        }
    return out


def summary(evaluation: Evaluation) -> dict[str, Any]:
    """report.json's numbers: totals at the operating point, mAP, the max-F1 point, per class, per frame."""
    per_frame = [f.counts() for f in evaluation.frames]
    tp, fp, fn = (sum(f[k] for f in per_frame) for k in ("tp", "fp", "fn"))
    return {
        "precision": round(tp / (tp + fp), 6) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 6),
        "mAP50": round(float(evaluation.ap.ap50.mean()), 6),
        "mAP50-95": round(float(evaluation.ap.ap50_95.mean()), 6),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "operating_point": {"conf_above": evaluation.op_conf, "iou_at_least": evaluation.op_iou},
        "max_f1": {  # what Ultralytics' val prints as P and R
            "conf": round(evaluation.ap.conf, 6),
            "precision": round(float(evaluation.ap.precision.mean()), 6),
            "recall": round(float(evaluation.ap.recall.mean()), 6),
        },
        "scored_detections": evaluation.scored,
        "per_class": per_class(evaluation),
        "per_frame": per_frame,
    }


def table(evaluation: Evaluation) -> list[str]:
    """The terminal table."""
    report = summary(evaluation)
    head = f"{'class':<14}{'GT':>6}{'TP':>6}{'FP':>6}{'FN':>6}{'precision':>11}{'recall':>8}"
    head += f"{'AP50':>8}{'AP50-95':>9}"
    rows = [(name, c, c["AP50"], c["AP50-95"]) for name, c in report["per_class"].items()]
    rows.append(("all", {**report, "gt": report["tp"] + report["fn"]}, report["mAP50"], report["mAP50-95"]))
    out = [head]
    for name, c, ap50, ap in rows:
        out.append(
            f"{name[:13]:<14}{c['gt']:>6}{c['tp']:>6}{c['fp']:>6}{c['fn']:>6}{c['precision']:>11.3f}"
            f"{c['recall']:>8.3f}{ap50:>8.3f}{ap:>9.3f}"
        )
    f1 = report["max_f1"]
    out += [
        f"TP, FP, FN, precision, recall: confidence > {evaluation.op_conf:g}, IoU >= {evaluation.op_iou:g}; "
        f"AP: {evaluation.scored} detections at IoU 0.50:0.95",
        f"Ultralytics' max-F1 point: confidence {f1['conf']:.3f}, precision {f1['precision']:.3f}, "
        f"recall {f1['recall']:.3f}",
    ]
    return out


def draw_ground_truth(frame: np.ndarray, match: FrameMatch) -> np.ndarray:
    """GT boxes outlined thin, white where a shown detection found them, magenta where missed."""
    for (x1, y1, x2, y2), found in zip(match.gt_xyxy.round().int().tolist(), match.found.tolist()):
        cv2.rectangle(frame, (x1, y1), (x2, y2), GT_COLORS["found" if found else "missed"], 1, cv2.LINE_AA)
    return frame


def write_annotated_video(video: str | Path, path: Path, evaluation: Evaluation) -> None:
    """The video with the shown detections drawn, the ground truth outlined and the frame's counts."""
    source = VideoFile(video)
    sink = None
    try:
        sink = VideoSink(path, source.fps, source.size)
        for frame in source:
            match = evaluation.frames[frame.index]
            c = match.counts()
            image = draw_ground_truth(draw_detections(frame.image, match.shown), match)
            sink.write(draw_hud(image, [f"frame {frame.index}  TP {c['tp']}  FP {c['fp']}  FN {c['fn']}"]))
    finally:
        source.close()
        if sink is not None:
            sink.close()


def plot_per_frame(evaluation: Evaluation, path: Path, title: str) -> None:
    """Recall, detections and GT boxes per frame over time, at the operating point."""
    from matplotlib.figure import Figure  # object API: no pyplot state, no display needed

    counts = [f.counts() for f in evaluation.frames]
    t = [c["time_s"] for c in counts]
    fig = Figure(figsize=(10, 5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(t, [c["tp"] / c["gt"] if c["gt"] else float("nan") for c in counts], color="tab:green")
    top.set(ylabel="recall", ylim=(0, 1.05), title=title)
    bottom.plot(t, [c["tp"] + c["fp"] for c in counts], label=f"detections (conf > {evaluation.op_conf:g})")
    bottom.plot(t, [c["gt"] for c in counts], label="ground-truth boxes", color="black", linestyle="--")
    bottom.set(xlabel="time (s)", ylabel="boxes per frame")
    bottom.legend(loc="upper right")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
