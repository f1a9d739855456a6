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

One module per job:

- ground_truth.py: the MOT and YOLO-label readers, the class map
- runs.py: the detections of a run, read back from its JSON lines
- score.py: matching and AP per frame and class, at the operating point
- report.py: the table, report.json, the per-frame plot and the annotated video
- run.py: eval-video's run over a video, from detector to report
- diff.py: `detector diff`
"""

from detector.evaluate.diff import DIFF_KINDS, Diff, diff_frame, diff_runs
from detector.evaluate.ground_truth import (
    MOT_CLASSES,
    GroundTruth,
    load_ground_truth,
    load_mot,
    load_yolo_labels,
    probe_video,
    resolve_class_map,
)
from detector.evaluate.run import evaluate_video
from detector.evaluate.runs import FrameDetections, read_jsonl
from detector.evaluate.score import Evaluation, FrameMatch, score

__all__ = [
    "DIFF_KINDS",
    "MOT_CLASSES",
    "Diff",
    "Evaluation",
    "FrameDetections",
    "FrameMatch",
    "GroundTruth",
    "diff_frame",
    "diff_runs",
    "evaluate_video",
    "load_ground_truth",
    "load_mot",
    "load_yolo_labels",
    "probe_video",
    "read_jsonl",
    "resolve_class_map",
    "score",
]
