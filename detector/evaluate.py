"""Testing on recorded video: `detector eval-video` scores detections against ground truth, `detector diff`
compares two runs.

eval-video runs the detector over the video as `detector video` does, into ``detections.jsonl``, and scores
exactly what that file holds, like Ultralytics' val: conf 0.001, NMS IoU 0.7, max_det 300, matching greedy
by confidence, AP over IoU 0.50:0.95 with COCO's 101-point interpolation (detector/metrics.py). Only classes
that have ground truth are scored. Precision, recall and per-frame TP/FP/FN are counted at one operating
point, by default what `detector video` shows (confidence > 0.25), matched at IoU >= 0.5.

Ground truth: a MOT ``gt.txt`` (``frame,id,x,y,w,h,...``: pixels, 1-based frames) or a folder with one
YOLO label file per frame (``class cx cy w h``, normalised). A class map ties ground-truth classes to model
classes; by default MOT's pedestrians are COCO's ``person`` and YOLO ids are the model's ids.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from detector.detections import Detections
from detector.errors import DetectorError
from detector.metrics import IOU_THRESHOLDS, ClassAP, ap_per_class, box_iou, match_boxes, matched_targets
from detector.pipeline import Detector, resolve_classes
from detector.render import draw_detections, draw_hud
from detector.sinks import VideoSink, write_json_atomic
from detector.sources import VideoFile
from detector.video import run_video, run_video_realtime

# MOT16/17 ground-truth class ids (Milan et al., "MOT16: A Benchmark for Multi-Object Tracking", 2016)
MOT_CLASSES = {
    1: "pedestrian",
    2: "person_on_vehicle",
    3: "car",
    4: "bicycle",
    5: "motorbike",
    6: "non_mot_vehicle",
    7: "static_person",
    8: "distractor",
    9: "occluder",
    10: "occluder_on_ground",
    11: "occluder_full",
    12: "reflection",
}
MOT_DEFAULT_MAP = ("pedestrian=person",)
GT_COLORS = {"found": (255, 255, 255), "missed": (255, 0, 255)}  # BGR: white, magenta (no class colour is either)
MOVED_IOU = 0.1  # diff: boxes left unpaired at --iou that still overlap this much are the same box, moved
SHOWN_DIFF_FRAMES = 10  # diff: changed frames listed in the terminal (all of them go to --json)


# --- ground truth ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroundTruth:
    """Every ground-truth box of a video, in frame pixels, with the ground truth's own class ids."""

    frame: torch.Tensor  # [M] 0-based frame index
    xyxy: torch.Tensor  # [M, 4] float32
    class_id: torch.Tensor  # [M] int64
    names: Mapping[int, str]  # class names where the format has them (MOT); empty for YOLO labels
    frames: int  # frames of the video it belongs to
    source: str  # what to call it in messages, e.g. "gt.txt (MOT)"


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not a text file"
        raise DetectorError(f"{what} '{path}' could not be read ({reason}); check the path") from None


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    size: tuple[int, int]  # (w, h)
    fps: float


def probe_video(video: str | Path) -> VideoInfo:
    """Frames, size and rate of a video: the container's frame count, or a decode where it has none."""
    source = VideoFile(video)
    try:
        return VideoInfo(source.expected or sum(1 for _ in source), source.size, source.fps)
    finally:
        source.close()


def load_ground_truth(path: str | Path, video: str | Path, gt_format: str | None = None) -> GroundTruth:
    """``--gt`` for ``video``: MOT for a file, YOLO labels for a folder, unless ``gt_format`` says."""
    path = Path(path)
    if not path.exists():
        raise DetectorError(f"ground truth '{path}' not found: give a MOT gt.txt or a folder of YOLO label files")
    info = probe_video(video)
    if (gt_format or ("yolo" if path.is_dir() else "mot")) == "yolo":
        return load_yolo_labels(path, info.frames, info.size)
    return load_mot(path, info.frames, info.size)


def load_mot(path: Path, frames: int, size: tuple[int, int]) -> GroundTruth:
    """MOT ``gt.txt``: ``frame,id,x,y,w,h`` and more columns. Rows of 9 columns are MOT16/17's, whose 7th
    column flags rows to leave out (0) and 8th is the class; other rows are pedestrians. Boxes reaching out
    of the frame (people walking in or out) are clipped to it, as detections are and YOLO labels must be."""
    seqinfo = path.parent.parent / "seqinfo.ini"  # MOT layout: SEQUENCE/gt/gt.txt beside SEQUENCE/seqinfo.ini
    length = re.search(r"^seqLength\s*=\s*(\d+)", read_text(seqinfo, "seqinfo") if seqinfo.is_file() else "", re.M)
    if length and int(length.group(1)) != frames:
        raise DetectorError(
            f"ground truth '{path}' is for {length.group(1)} frames ({seqinfo.name}) but the video has {frames}: "
            "give the gt.txt of this video"
        )
    rows = []
    for number, line in enumerate(read_text(path, "ground truth").splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            values = []
        box = values[2:6]
        if len(values) < 6 or not values[0].is_integer() or not all(map(math.isfinite, box)) or min(box[2:]) <= 0:
            raise DetectorError(
                f"{path} line {number}: not a MOT row 'frame,id,x,y,w,h,...' with a whole frame number and a "
                f"positive width and height: {line.strip()[:60]!r}"
            )
        frame = int(values[0])
        if not 1 <= frame <= frames:
            raise DetectorError(
                f"{path} line {number}: frame {frame} is out of range: the video has {frames} frames, "
                f"numbered 1..{frames} in MOT files"
            )
        mot17 = len(values) == 9
        if mot17 and values[6] == 0:
            continue
        x, y, w, h = box
        rows.append((frame - 1, x, y, x + w, y + h, int(values[7]) if mot17 else 1))
    gt = _ground_truth(rows, MOT_CLASSES, frames, f"{path.name} (MOT)")
    gt.xyxy.clamp_(min=torch.zeros(4), max=torch.tensor(size).repeat(2).float())  # [4] w h w h
    return gt


def natural_key(path: Path) -> list:
    """``frame2.txt`` before ``frame10.txt``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def load_yolo_labels(folder: Path, frames: int, size: tuple[int, int]) -> GroundTruth:
    """One YOLO label file per frame (``class cx cy w h`` per line, normalised), in frame order by name."""
    files = sorted(folder.glob("*.txt"), key=natural_key)
    if len(files) != frames:
        raise DetectorError(
            f"labels folder '{folder}' holds {len(files)} .txt files but the video has {frames} frames: give one "
            "label file per frame, in frame order by name (an empty file for a frame without objects)"
        )
    w, h = size
    rows = []
    for index, file in enumerate(files):
        for number, line in enumerate(read_text(file, "label file").splitlines(), 1):
            if not line.strip():
                continue
            try:
                cls, cx, cy, bw, bh = (int(v) if i == 0 else float(v) for i, v in enumerate(line.split()))
            except ValueError:
                cls = -1
            if cls < 0 or not all(0 <= v <= 1 for v in (cx, cy, bw, bh)):
                raise DetectorError(
                    f"{file} line {number}: not a YOLO label 'class cx cy w h' with coordinates normalised to "
                    f"0..1: {line.strip()[:60]!r}"
                )
            rows.append((index, (cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, cls))
    return _ground_truth(rows, {}, frames, f"{folder.name}/ (YOLO labels)")


def _ground_truth(rows: list[tuple], names: Mapping[int, str], frames: int, source: str) -> GroundTruth:
    table = torch.tensor(rows, dtype=torch.float64).reshape(-1, 6)  # [M, 6] frame x1 y1 x2 y2 class
    return GroundTruth(table[:, 0].long(), table[:, 1:5].float(), table[:, 5].long(), names, frames, source)


def resolve_class_map(items: Sequence[str] | None, gt: GroundTruth, model_names: Mapping[int, str]) -> dict[int, int]:
    """``GT=MODEL`` pairs (names or ids) -> {GT class id: model class id}. Default: MOT pedestrians are the
    model's ``person``; YOLO label ids are the model's own ids."""
    if items is None and not gt.names:
        return {k: k for k in model_names}
    by_name = {name.lower(): k for k, name in gt.names.items()}
    mapping = {}
    for item in items or MOT_DEFAULT_MAP:
        gt_class, sep, model_class = item.partition("=")
        gt_class, model_class = gt_class.strip(), model_class.strip()
        if not sep or not gt_class or not model_class:
            raise DetectorError(f"--class-map '{item}': write GT=MODEL, e.g. pedestrian=person or 0=person")
        if gt_class.isdigit() and (not gt.names or int(gt_class) in gt.names):
            gt_id = int(gt_class)
        elif gt_class.lower() in by_name:
            gt_id = by_name[gt_class.lower()]
        else:
            known = ", ".join(gt.names.values()) if gt.names else "YOLO labels have ids only, e.g. 0=person"
            raise DetectorError(f"--class-map '{item}': '{gt_class}' is not a class of {gt.source} ({known})")
        try:
            mapping[gt_id] = resolve_classes([model_class], dict(model_names))[0]
        except DetectorError as e:
            raise DetectorError(f"--class-map '{item}': {e}") from None
    return mapping


# --- detections of a run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameDetections:
    frame: int  # 0-based
    time_s: float
    detections: Detections


def read_jsonl(path: str | Path) -> list[FrameDetections]:
    """The JSON lines of `detector video` (and of eval-video's detections.jsonl), checked line by line."""
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"detections '{path}' not found: give the .jsonl of a `detector video` run")
    names: dict[int, str] = {}  # filled while reading; every frame's Detections shares it
    records, seen = [], set()
    for number, line in enumerate(read_text(path, "detections").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            frame, time_s, dets = record["frame"], float(record["time_s"]), record["detections"]
            if not isinstance(frame, int) or frame < 0 or frame in seen:
                raise ValueError(f"frame {frame!r} is not a new frame number")
            rows = torch.tensor(
                [[*d["xyxy"], d["confidence"], d["class_id"]] for d in dets], dtype=torch.float64
            ).reshape(-1, 6)  # [N, 6] x1 y1 x2 y2 confidence class; a box without 4 numbers fails here
            names.update((int(d["class_id"]), str(d["class_name"])) for d in dets)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            reason = f"no {e}" if isinstance(e, KeyError) else str(e).splitlines()[0][:80]
            raise DetectorError(f"{path} line {number}: not a `detector video` JSON line ({reason})") from None
        seen.add(frame)
        records.append(FrameDetections(frame, time_s, Detections.from_rows(rows, names)))
    return records


def by_confidence(dets: Detections) -> Detections:
    """Best first, equal scores in their order: the order greedy matching takes predictions in."""
    return dets[torch.sort(dets.confidence, descending=True, stable=True).indices]


# --- eval-video -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameMatch:
    """One frame at the operating point: the detections a user sees, and which GT boxes they found."""

    frame: int
    time_s: float
    shown: Detections  # scored classes, confidence above the operating point
    hit: torch.Tensor  # [n] bool, shown box matched a GT box
    gt_xyxy: torch.Tensor  # [M, 4]
    found: torch.Tensor  # [M] bool

    def counts(self) -> dict[str, Any]:
        tp = int(self.hit.sum())
        return {
            "frame": self.frame,
            "time_s": self.time_s,
            "gt": len(self.found),
            "tp": tp,
            "fp": len(self.hit) - tp,
            "fn": len(self.found) - tp,
        }


@dataclass(frozen=True)
class Evaluation:
    ap: ClassAP
    frames: list[FrameMatch]
    names: Mapping[int, str]  # the model's classes
    scored: int  # detections scored for AP
    op_conf: float
    op_iou: float

    def per_class(self) -> dict[str, dict[str, float]]:
        """Counts at the operating point and AP, per class with ground truth."""
        classes = self.ap.classes

        def per_class_count(ids: torch.Tensor) -> list[int]:
            return torch.bincount(torch.searchsorted(classes, ids), minlength=len(classes)).tolist()

        shown = per_class_count(torch.cat([f.shown.class_id for f in self.frames]))
        hit = per_class_count(torch.cat([f.shown.class_id[f.hit] for f in self.frames]))
        out = {}
        for c, gt, tp, n, ap50, ap in zip(
            classes.tolist(), self.ap.targets.tolist(), hit, shown, self.ap.ap50, self.ap.ap50_95
        ):
            out[self.names.get(c, str(c))] = {
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

    def report(self) -> dict[str, Any]:
        per_frame = [f.counts() for f in self.frames]
        tp, fp, fn = (sum(f[k] for f in per_frame) for k in ("tp", "fp", "fn"))
        return {
            "precision": round(tp / (tp + fp), 6) if tp + fp else 0.0,
            "recall": round(tp / (tp + fn), 6),
            "mAP50": round(float(self.ap.ap50.mean()), 6),
            "mAP50-95": round(float(self.ap.ap50_95.mean()), 6),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "operating_point": {"conf_above": self.op_conf, "iou_at_least": self.op_iou},
            "max_f1": {  # what Ultralytics' val prints as P and R
                "conf": round(self.ap.conf, 6),
                "precision": round(float(self.ap.precision.mean()), 6),
                "recall": round(float(self.ap.recall.mean()), 6),
            },
            "scored_detections": self.scored,
            "per_class": self.per_class(),
            "per_frame": per_frame,
        }

    def lines(self) -> list[str]:
        """The terminal table."""
        report = self.report()
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
            f"TP, FP, FN, precision, recall: confidence > {self.op_conf:g}, IoU >= {self.op_iou:g}; "
            f"AP: {self.scored} detections at IoU 0.50:0.95",
            f"Ultralytics' max-F1 point: confidence {f1['conf']:.3f}, precision {f1['precision']:.3f}, "
            f"recall {f1['recall']:.3f}",
        ]
        return out


def score(
    runs: Sequence[FrameDetections],
    gt: GroundTruth,
    class_map: Mapping[int, int],
    names: Mapping[int, str],
    op_conf: float = 0.25,
    op_iou: float = 0.5,
) -> Evaluation:
    """Score the detections of every frame (``runs``: one per frame, in order) against the ground truth.

    ``class_map``: GT class id -> model class id; GT boxes of other classes are left out. ``names``: the
    model's classes."""
    keys, order = torch.tensor(list(class_map), dtype=torch.long).sort()
    values = torch.tensor(list(class_map.values()), dtype=torch.long)[order]
    mapped = torch.isin(gt.class_id, keys)  # [M]
    gt_frame, gt_xyxy = gt.frame[mapped], gt.xyxy[mapped]
    gt_class = values[torch.searchsorted(keys, gt.class_id[mapped])]  # [M'] model class ids
    if not len(gt_class):
        raise DetectorError(f"ground truth {gt.source} has no boxes of the mapped classes: nothing to score")
    classes = torch.unique(gt_class)  # only classes with ground truth are scored, as in Ultralytics' val
    thresholds = torch.cat((IOU_THRESHOLDS, torch.tensor([op_iou])))  # [11] the AP levels, then the operating point
    by_frame = torch.argsort(gt_frame, stable=True)
    boxes_per_frame = torch.bincount(gt_frame, minlength=gt.frames).tolist()
    gt_xyxy, gt_class = gt_xyxy[by_frame].split(boxes_per_frame), gt_class[by_frame].split(boxes_per_frame)

    tp, conf, pred_cls, frames = [], [], [], []
    for run, boxes, cls in zip(runs, gt_xyxy, gt_class):  # one iteration per frame, not per box
        dets = by_confidence(run.detections[torch.isin(run.detections.class_id, classes)])
        matched = matched_targets(dets.xyxy, dets.class_id, boxes, cls, thresholds)  # [n, 11]
        shown = dets.confidence > op_conf  # [n] what `detector video --conf op_conf` shows
        hit = shown & (matched[:, -1] >= 0)
        found = torch.zeros(len(boxes), dtype=torch.bool)
        found[matched[hit, -1]] = True  # [M]
        tp.append(matched[:, :-1] >= 0)
        conf.append(dets.confidence)
        pred_cls.append(dets.class_id)
        frames.append(FrameMatch(run.frame, run.time_s, dets[shown], hit[shown], boxes, found))
    ap = ap_per_class(torch.cat(tp), torch.cat(conf), torch.cat(pred_cls), torch.cat(gt_class))
    return Evaluation(ap, frames, names, sum(len(c) for c in conf), op_conf, op_iou)


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


def evaluate_video(
    detector: Detector,
    video: str | Path,
    gt: GroundTruth,
    class_map: Sequence[str] | None,
    out: Path,
    op_conf: float = 0.25,
    op_iou: float = 0.5,
    annotate: bool = False,
    progress: bool = True,
    realtime: bool = False,
) -> tuple[Evaluation, list[str]]:
    """Run, score, write ``out``/report.json, detections.jsonl, per_frame.png (and <video>.mp4 with
    ``annotate``); returns the evaluation and the lines to print. Ctrl-C stops after the detections.

    ``realtime``: the video replayed at its own rate with the live drop policy (detector/realtime.py);
    every frame is scored with the boxes that were on screen while it was, so recall is what a camera
    user would have seen."""
    if not 0 <= op_conf < 1 or not 0 < op_iou <= 1:
        raise DetectorError(f"--op-conf {op_conf} / --op-iou {op_iou}: confidence in [0, 1), IoU in (0, 1]")
    mapping = resolve_class_map(class_map, gt, detector.names)
    jsonl = out / "detections.jsonl"
    if realtime:
        run_lines = run_video_realtime(detector, video, None, jsonl)
    else:
        summary = run_video(detector, video, None, jsonl, progress=progress)
        if summary.interrupted:
            raise KeyboardInterrupt  # a partial run would score the missing frames as misses
        run_lines = [line for line in summary.lines() if not line.startswith("detections")]  # all classes: noise
    runs = {r.frame: r for r in read_jsonl(jsonl)}
    fps, empty = probe_video(video).fps, Detections.empty(detector.names)
    # a frame that failed to decode has no line: nothing was detected there
    ordered = [runs.get(i) or FrameDetections(i, round(i / fps, 4), empty) for i in range(gt.frames)]
    evaluation = score(ordered, gt, mapping, detector.names, op_conf, op_iou)
    write_json_atomic(out / "report.json", {"video": str(video), "ground_truth": gt.source, **evaluation.report()})
    plot_per_frame(evaluation, out / "per_frame.png", f"{Path(video).name} vs {gt.source}")
    outputs = ["report.json", "detections.jsonl", "per_frame.png"]
    if annotate:
        write_annotated_video(video, out / f"{Path(video).stem}.mp4", evaluation)
        outputs.append(f"{Path(video).stem}.mp4")
    left_out = int((~torch.isin(gt.class_id, torch.tensor(list(mapping)))).sum())
    lines = [
        f"ground truth: {gt.source}, {gt.frames} frames, {len(gt.class_id) - left_out} boxes"
        + (f" ({left_out} of unmapped classes left out)" if left_out else ""),
        *run_lines,
        *evaluation.lines(),
        f"outputs: {out}/ " + " ".join(outputs),
    ]
    return evaluation, lines


# --- diff -------------------------------------------------------------------------------------------

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
