"""`detector eval-video`'s run: the detector over the video into detections.jsonl (as `detector video`, or
replayed live with ``realtime``), scored against the ground truth, written out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from detector.detections import Detections
from detector.errors import DetectorError
from detector.evaluate.ground_truth import GroundTruth, probe_video, resolve_class_map
from detector.evaluate.report import plot_per_frame, write_annotated_video
from detector.evaluate.runs import FrameDetections, read_jsonl
from detector.evaluate.score import Evaluation, score
from detector.pipeline import Detector
from detector.sinks import write_json_atomic
from detector.video import run_video, run_video_realtime


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
    tracking: Callable | None = None,
    gt_txt: Path | None = None,
) -> tuple[Evaluation, list[str]]:
    """Run, score, write ``out``/report.json, detections.jsonl, per_frame.png (and <video>.mp4 with
    ``annotate``); returns the evaluation and the lines to print. Ctrl-C stops after the detections.

    ``realtime``: the video replayed at its own rate with the live drop policy (detector/realtime.py);
    every frame is scored with the boxes that were on screen while it was, so recall is what a camera
    user would have seen.

    ``tracking`` (`commands.options.tracking_for`, writing ``out``/tracks.txt): the run tracks, and the tracks
    are scored against ``gt_txt`` (MOT ground truth, with IDs) into report.json's ``"tracking"``."""
    if not 0 <= op_conf < 1 or not 0 < op_iou <= 1:
        raise DetectorError(f"--op-conf {op_conf} / --op-iou {op_iou}: confidence in [0, 1), IoU in (0, 1]")
    mapping = resolve_class_map(class_map, gt, detector.names)
    jsonl = out / "detections.jsonl"
    if tracking is not None and gt_txt is None:
        raise DetectorError("--track scores tracks against MOT ground truth (a gt.txt with IDs): pass --gt gt.txt")

    def scored_tracking(source):  # tracks of the classes with ground truth in tracks.txt, as detections are scored
        track = tracking(source)
        track.mot_classes = torch.tensor(sorted(set(mapping.values())))
        return track

    track = scored_tracking if tracking is not None else None
    if realtime:
        run_lines = run_video_realtime(detector, video, None, jsonl, track)
    else:
        summary = run_video(detector, video, None, jsonl, progress=progress, tracking=track)
        if summary.interrupted:
            raise KeyboardInterrupt  # a partial run would score the missing frames as misses
        run_lines = [line for line in summary.lines() if not line.startswith("detections")]  # all classes: noise
    runs = {r.frame: r for r in read_jsonl(jsonl)}
    fps, empty = probe_video(video).fps, Detections.empty(detector.names)
    # a frame that failed to decode has no line: nothing was detected there
    ordered = [runs.get(i) or FrameDetections(i, round(i / fps, 4), empty) for i in range(gt.frames)]
    evaluation = score(ordered, gt, mapping, detector.names, op_conf, op_iou)
    report = {"video": str(video), "ground_truth": gt.source, **evaluation.report()}
    tracking_lines = []
    if tracking is not None:
        from detector.evaluate.tracking import score_tracks  # its module reads MOT files: detector.track's

        info = probe_video(video)
        report["tracking"] = scores = score_tracks(out / "tracks.txt", gt_txt, info.size)
        tracking_lines = [
            "tracking: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
        ]
    write_json_atomic(out / "report.json", report)
    plot_per_frame(evaluation, out / "per_frame.png", f"{Path(video).name} vs {gt.source}")
    outputs = ["report.json", "detections.jsonl", "per_frame.png"] + ["tracks.txt"] * (tracking is not None)
    if annotate:
        write_annotated_video(video, out / f"{Path(video).stem}.mp4", evaluation)
        outputs.append(f"{Path(video).stem}.mp4")
    left_out = int((~torch.isin(gt.class_id, torch.tensor(list(mapping)))).sum())
    lines = [
        f"ground truth: {gt.source}, {gt.frames} frames, {len(gt.class_id) - left_out} boxes"
        + (f" ({left_out} of unmapped classes left out)" if left_out else ""),
        *run_lines,
        *evaluation.lines(),
        *tracking_lines,
        f"outputs: {out}/ " + " ".join(outputs),
    ]
    return evaluation, lines
