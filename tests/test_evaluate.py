"""`detector eval-video` and `detector diff`: TUD-Campus scored like Ultralytics' val, hand-made cases with
known answers, and bad input (one line naming the line or frame, exit 2)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED, needs_shared
from test_cli import assert_bad_input, detector, make_video, read_video
from test_metrics import ultralytics_match
from ultralytics.utils.metrics import ap_per_class as ultralytics_ap_per_class

from detector import Detections, DetectorError
from detector.cli import main
from detector.evaluate import (
    MOT_CLASSES,
    FrameDetections,
    GroundTruth,
    diff_runs,
    load_ground_truth,
    load_mot,
    read_jsonl,
    resolve_class_map,
    score,
)
from detector.sinks import JsonlSink

TUD = SHARED / "tracking" / "TUD-Campus"
TUD_VIDEO, TUD_GT, TUD_LABELS = TUD / "TUD-Campus.mp4", TUD / "gt" / "gt.txt", TUD / "labels_yolo"
NAMES = {0: "person", 1: "car", 2: "dog"}
COCO_NAMES = {0: "person", 1: "bicycle", 2: "car"}  # enough of the model's classes for class-map tests


def run_cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """`detector ARGS` in this process (fast: no interpreter start, and bad input stops before the model)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def write_run(path: Path, frames: list[list[tuple]], fps: float = 25.0) -> Path:
    """A `detector video` JSONL: per frame, rows (x1, y1, x2, y2, confidence, class_id)."""
    sink = JsonlSink(path)
    for i, rows in enumerate(frames):
        dets = Detections.from_rows(torch.tensor(rows, dtype=torch.float32).reshape(-1, 6), NAMES)
        sink.write({"frame": i, "time_s": round(i / fps, 4), **dets.to_dict()})
    sink.close()
    return path


# --- TUD-Campus: the bundled model, scored, against independent computations -------------------------


@pytest.fixture(scope="module")
def tud_run(tmp_path_factory):
    if not SHARED.exists():
        pytest.skip(f"shared real data not found at {SHARED}")
    out = tmp_path_factory.mktemp("tud")
    result = detector("eval-video", str(TUD_VIDEO), "--gt", str(TUD_GT), "--out", str(out), "--video", "--quiet")
    assert result.returncode == 0, result.stderr
    return result, out


def independent_scores(jsonl: Path, gt_txt: Path) -> dict:
    """Ultralytics' matching and ap_per_class on detections.jsonl and gt.txt, both read here with json/numpy."""
    gt = np.loadtxt(gt_txt, delimiter=",")
    xyxy = np.clip(np.c_[gt[:, 2:4], gt[:, 2:4] + gt[:, 4:6]], 0, [640, 480, 640, 480])  # in the frame, as detections
    tp, conf, per_frame = [], [], []
    for line in jsonl.read_text().splitlines():
        record = json.loads(line)
        rows = xyxy[gt[:, 0] == record["frame"] + 1]  # MOT frames are 1-based
        gt_boxes = torch.tensor(rows, dtype=torch.float32)
        people = [d for d in record["detections"] if d["class_name"] == "person"]  # file order: best first
        boxes = torch.tensor([d["xyxy"] for d in people], dtype=torch.float32).reshape(-1, 4)
        scores = np.array([d["confidence"] for d in people])
        correct = ultralytics_match(boxes, torch.zeros(len(people)), gt_boxes, torch.zeros(len(rows)))
        hit = int((correct[:, 0] & (scores > 0.25)).sum())
        per_frame.append({"gt": len(rows), "tp": hit, "fp": int((scores > 0.25).sum()) - hit, "fn": len(rows) - hit})
        tp.append(correct)
        conf.append(scores)
    tp, conf = np.concatenate(tp), np.concatenate(conf)
    # The INT8 model gives few distinct scores (most detections share theirs), and AP depends on the order of
    # equal scores, which Ultralytics' unstable sort leaves open. Give it ours (COCO's: frame, then the
    # model's order) by separating equal scores by 1e-12.
    order = np.argsort(-conf, kind="stable")
    strict = conf[order] - np.arange(len(conf)) * 1e-12
    *_, p, r, _, ap = ultralytics_ap_per_class(tp[order], strict, np.zeros(len(conf)), np.zeros(len(gt)))[:6]
    return {"mAP50": ap[0, 0], "mAP50-95": ap[0].mean(), "p": p[0], "r": r[0], "per_frame": per_frame}


@needs_shared
def test_tud_campus_map_equals_ultralytics(tud_run):
    _, out = tud_run
    report = json.loads((out / "report.json").read_text())
    theirs = independent_scores(out / "detections.jsonl", TUD_GT)
    assert report["mAP50"] == pytest.approx(theirs["mAP50"], abs=1e-4)
    assert report["mAP50-95"] == pytest.approx(theirs["mAP50-95"], abs=1e-4)
    assert report["max_f1"]["precision"] == pytest.approx(theirs["p"], abs=1e-4)
    assert report["max_f1"]["recall"] == pytest.approx(theirs["r"], abs=1e-4)
    assert [{k: f[k] for k in ("gt", "tp", "fp", "fn")} for f in report["per_frame"]] == theirs["per_frame"]
    assert 0.5 < report["mAP50"] < 1 and 0.2 < report["mAP50-95"] < report["mAP50"]  # a real model on real data


@needs_shared
def test_tud_campus_map_agrees_with_pycocotools(tud_run):
    """COCO's evaluation reads precision at the first recall >= each of its 101 points instead of Ultralytics'
    interpolation, so it agrees to about 0.005, not 1e-4."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _, out = tud_run
    report = json.loads((out / "report.json").read_text())
    gt = np.loadtxt(TUD_GT, delimiter=",")
    xyxy = np.clip(np.c_[gt[:, 2:4], gt[:, 2:4] + gt[:, 4:6]], 0, [640, 480, 640, 480])  # in the frame, as detections
    boxes = np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]  # COCO's x y w h
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    dataset = {
        "images": [{"id": r["frame"] + 1, "width": 640, "height": 480} for r in records],
        "annotations": [
            {"id": i, "image_id": int(g[0]), "category_id": 1, "bbox": list(b), "area": b[2] * b[3], "iscrowd": 0}
            for i, (g, b) in enumerate(zip(gt, boxes), 1)
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    dets = [
        {"image_id": r["frame"] + 1, "category_id": 1, "score": d["confidence"], "bbox": [x1, y1, x2 - x1, y2 - y1]}
        for r in records
        for d in r["detections"]
        if d["class_name"] == "person"
        for x1, y1, x2, y2 in [d["xyxy"]]
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(dets), "bbox")
        evaluation.params.maxDets = [1, 10, 300]  # every detection, as Ultralytics' max_det
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, 0, 0, 2]  # [IoU, recall], class person, all areas, 300 dets
    assert report["mAP50"] == pytest.approx(precision[0].mean(), abs=0.005)
    assert report["mAP50-95"] == pytest.approx(precision.mean(), abs=0.005)


@needs_shared
def test_tud_campus_outputs(tud_run):
    result, out = tud_run
    report = json.loads((out / "report.json").read_text())
    assert {"precision", "recall", "mAP50", "mAP50-95", "per_class", "per_frame"} <= set(report)
    assert list(report["per_class"]) == ["person"] and report["per_class"]["person"]["gt"] == 359
    frames = report["per_frame"]
    assert [f["frame"] for f in frames] == list(range(71)) and sum(f["gt"] for f in frames) == 359
    tp, fp, fn = (sum(f[k] for f in frames) for k in ("tp", "fp", "fn"))
    assert report["precision"] == pytest.approx(tp / (tp + fp), abs=1e-6)
    assert report["recall"] == pytest.approx(tp / (tp + fn), abs=1e-6)
    assert 0.7 < report["recall"] < 0.95 and 0.5 < report["precision"] < 0.8  # PROVENANCE.md: 0.84, 0.62

    lines = (out / "detections.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert len(lines) == 71 and set(first) == {"frame", "time_s", "detections"}
    assert set(first["detections"][0]) == {"xyxy", "confidence", "class_id", "class_name"}
    assert min(d["confidence"] for line in lines for d in json.loads(line)["detections"]) < 0.01  # val's conf 0.001

    plot = cv2.imread(str(out / "per_frame.png"))
    assert plot is not None and plot.shape[0] > 200 and plot.std() > 10
    assert read_video(out / "TUD-Campus.mp4")[:2] == (71, (640, 480))

    table = result.stdout
    assert "person" in table and f"{report['mAP50']:.3f}" in table and f"{report['recall']:.3f}" in table
    assert "confidence > 0.25, IoU >= 0.5" in table


@needs_shared
def test_tud_campus_yolo_labels_score_like_the_mot_file(tud_run):
    """The same boxes as YOLO labels (normalised to 6 decimals): the same scores, to rounding."""
    _, out = tud_run
    report = json.loads((out / "report.json").read_text())
    mot, yolo = load_ground_truth(TUD_GT, TUD_VIDEO), load_ground_truth(TUD_LABELS, TUD_VIDEO)
    assert torch.equal(mot.frame, yolo.frame) and (mot.xyxy - yolo.xyxy).abs().max() < 0.5
    runs = read_jsonl(out / "detections.jsonl")
    names = runs[0].detections.names
    evaluation = score(runs, yolo, resolve_class_map(None, yolo, {0: "person"}), names)
    assert evaluation.report()["mAP50"] == pytest.approx(report["mAP50"], abs=2e-3)
    assert evaluation.report()["mAP50-95"] == pytest.approx(report["mAP50-95"], abs=2e-3)


# --- hand-made cases ------------------------------------------------------------------------------


def handmade() -> tuple[list[FrameDetections], GroundTruth]:
    """Three frames whose answers are worked out by hand in test_score_handmade_frames."""
    gt_rows = [  # frame, x1, y1, x2, y2, class (GT ids = model ids here)
        (0, 0, 0, 100, 100, 0),  # A person
        (0, 200, 0, 300, 100, 0),  # B person
        (0, 400, 0, 500, 100, 1),  # C car
        (1, 0, 0, 100, 100, 0),  # D person
    ]
    preds = [
        [
            (0, 0, 100, 100, 0.9, 0),  # A: TP
            (5, 0, 105, 100, 0.8, 0),  # A again: FP
            (200, 0, 300, 100, 0.2, 0),  # B, under the operating confidence: not shown, FN there, but in AP
            (400, 0, 500, 100, 0.7, 1),  # C: TP
            (600, 0, 700, 100, 0.9, 2),  # a dog: no dog in the ground truth, not scored
        ],
        [(150, 0, 250, 100, 0.6, 0)],  # beside D: FP, and D is a FN
        [(0, 0, 50, 50, 0.5, 1)],  # a car where there is nothing: FP
    ]
    runs = [
        FrameDetections(i, i / 25, Detections.from_rows(torch.tensor(rows).reshape(-1, 6), NAMES))
        for i, rows in enumerate(preds)
    ]
    table = torch.tensor(gt_rows, dtype=torch.float32)
    gt = GroundTruth(table[:, 0].long(), table[:, 1:5], table[:, 5].long(), {}, 3, "hand-made")
    return runs, gt


def test_score_handmade_frames():
    runs, gt = handmade()
    report = score(runs, gt, {0: 0, 1: 1}, NAMES, op_conf=0.25, op_iou=0.5).report()
    counts = [(f["gt"], f["tp"], f["fp"], f["fn"]) for f in report["per_frame"]]
    assert counts == [(3, 2, 1, 1), (1, 0, 1, 1), (0, 0, 1, 0)]
    assert (report["tp"], report["fp"], report["fn"]) == (2, 3, 2)
    assert report["precision"] == pytest.approx(0.4) and report["recall"] == pytest.approx(0.5)
    person, car = report["per_class"]["person"], report["per_class"]["car"]
    assert (person["gt"], person["tp"], person["fp"], person["fn"]) == (3, 1, 2, 2)
    assert (car["gt"], car["tp"], car["fp"], car["fn"]) == (1, 1, 1, 0)
    # person, best first: TP FP FP TP over 3 targets -> envelope 1 up to recall 1/3, 0.5 up to 2/3: AP 0.5
    # car: TP FP over 1 target -> 0.995 (Ultralytics' curve drops to 0 at recall 1)
    assert person["AP50"] == pytest.approx(0.5) and person["AP50-95"] == pytest.approx(0.5)
    assert car["AP50"] == pytest.approx(0.995) and report["mAP50"] == pytest.approx(0.7475)
    assert report["scored_detections"] == 6 and "dog" not in report["per_class"]


def test_score_operating_point_moves_the_counts():
    runs, gt = handmade()
    low = score(runs, gt, {0: 0, 1: 1}, NAMES, op_conf=0.1).report()
    assert (low["tp"], low["fp"], low["fn"]) == (3, 3, 1)  # B's 0.2 box is shown now
    strict = score(runs, gt, {0: 0}, NAMES, op_iou=0.99).report()  # cars unmapped: persons only
    assert list(strict["per_class"]) == ["person"] and (strict["tp"], strict["fp"]) == (1, 2)  # A is exact


def test_mot_file_with_mot17_columns(tmp_path):
    gt_txt = tmp_path / "gt.txt"
    gt_txt.write_text(
        "1,1,10,20,30,40,1,1,1.0\n"  # pedestrian
        "1,2,50,20,30,40,0,1,1.0\n"  # flagged 0: left out, as MOT's own evaluation does
        "2,3,10,20,30,40,1,7,0.5\n"  # static person
    )
    gt = load_mot(gt_txt, frames=2, size=(640, 480))
    assert gt.frame.tolist() == [0, 1] and gt.class_id.tolist() == [1, 7]
    assert gt.xyxy[0].tolist() == [10, 20, 40, 60]
    assert resolve_class_map(["static_person=person", "1=0"], gt, COCO_NAMES) == {7: 0, 1: 0}


def test_class_map_defaults_and_names():
    mot = GroundTruth(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0), MOT_CLASSES, 1, "gt.txt (MOT)")
    yolo = GroundTruth(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0), {}, 1, "labels/ (YOLO labels)")
    assert resolve_class_map(None, mot, COCO_NAMES) == {1: 0}
    assert resolve_class_map(["Pedestrian=car", "3=2"], mot, COCO_NAMES) == {1: 2, 3: 2}
    assert resolve_class_map(None, yolo, COCO_NAMES) == {0: 0, 1: 1, 2: 2}
    assert resolve_class_map(["5=person"], yolo, COCO_NAMES) == {5: 0}


# --- diff -------------------------------------------------------------------------------------------

BOXES = [[(0, 0, 100, 100, 0.9, 0), (200, 0, 300, 100, 0.8, 1)], [(0, 0, 100, 200, 0.7, 0)], []]


def shifted(frames: list[list[tuple]], dx: float) -> list[list[tuple]]:
    return [[(x1 + dx, y1, x2 + dx, y2, c, k) for x1, y1, x2, y2, c, k in rows] for rows in frames]


@pytest.mark.parametrize(
    "b_frames,expected",
    [
        (BOXES, {"same": 3}),
        (shifted(BOXES, 10), {"same": 3}),  # IoU 0.82 and more: the same boxes
        (shifted(BOXES, 50), {"moved": 3}),  # IoU 0.33
        (shifted(BOXES, 400), {"removed": 3, "added": 3}),  # no overlap left
        ([[], [], []], {"removed": 3}),
        ([[(0, 0, 100, 100, 0.9, 2), (200, 0, 300, 100, 0.8, 1)], BOXES[1], [(5, 5, 50, 50, 0.3, 0)]], None),
    ],
    ids=["identical", "shifted-10px", "shifted-50px", "shifted-away", "emptied", "reclassified-and-added"],
)
def test_diff_counts(tmp_path, b_frames, expected):
    a = write_run(tmp_path / "a.jsonl", BOXES)
    b = write_run(tmp_path / "b.jsonl", b_frames)
    diff = diff_runs(a, b, iou=0.5)
    counts = {k: v for k, v in diff.total().items() if v}
    if expected is None:
        expected = {"same": 2, "reclassified": 1, "added": 1}
    assert counts == expected
    union = sum(diff.total().values())
    assert diff.changed_share == pytest.approx((union - diff.total()["same"]) / union)
    assert len(diff.per_frame) == 3 and [f["frame"] for f in diff.per_frame] == [0, 1, 2]


def test_diff_exit_codes_and_json(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", BOXES)
    empty = write_run(tmp_path / "b.jsonl", [[], [], []])
    same = run_cli(capsys, "diff", a, a)
    assert same.returncode == 0 and "changed 0 of 3 boxes (0.0%)" in same.stdout
    gone = run_cli(capsys, "diff", a, empty, "--json", tmp_path / "d.json")
    assert gone.returncode == 1 and "removed 3" in gone.stdout and "exit 1" in gone.stdout
    saved = json.loads((tmp_path / "d.json").read_text())
    assert saved["changed_share"] == 1.0 and saved["per_frame"][0]["removed"] == 2
    assert run_cli(capsys, "diff", a, empty, "--max-changed", "1").returncode == 0
    half = write_run(tmp_path / "c.jsonl", [BOXES[0], [], []])  # 1 of 3 boxes removed
    assert run_cli(capsys, "diff", a, half, "--max-changed", "0.3").returncode == 1
    assert run_cli(capsys, "diff", a, half, "--max-changed", "0.34").returncode == 0


@needs_shared
def test_diff_on_real_runs(tud_run, tmp_path, capsys):
    """TUD-Campus detections against themselves, nudged 2 px, and with every box gone."""
    _, out = tud_run
    records = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    for r in records:  # what `detector video` would have written at its default confidence
        r["detections"] = [d for d in r["detections"] if d["confidence"] > 0.25]
    boxes = sum(len(r["detections"]) for r in records)
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps(r) + "\n" for r in records))
    nudged = tmp_path / "nudged.jsonl"
    for r in records:
        for d in r["detections"]:
            d["xyxy"] = [v + 2 for v in d["xyxy"]]
    nudged.write_text("".join(json.dumps(r) + "\n" for r in records))
    emptied = tmp_path / "emptied.jsonl"
    emptied.write_text("".join(json.dumps({**r, "detections": []}) + "\n" for r in records))

    assert run_cli(capsys, "diff", a, a).returncode == 0
    result = run_cli(capsys, "diff", a, nudged)
    assert result.returncode == 0 and f"same {boxes}," in result.stdout
    result = run_cli(capsys, "diff", a, emptied)
    assert result.returncode == 1 and f"removed {boxes}," in result.stdout and "(100.0%)" in result.stdout


# --- bad input ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=5)


@pytest.mark.parametrize(
    "content,words",
    [
        ("1,1,10,20,30,40\n2,1,10,20,30,40\nhello,world\n", ["gt.txt line 3", "not a MOT row"]),
        ("1,1,10,20,30\n", ["line 1", "frame,id,x,y,w,h"]),
        ("1,1,10,20,-30,40\n", ["line 1", "positive width"]),
        ("1.5,1,10,20,30,40\n", ["line 1", "whole frame number"]),
        ("1,1,10,20,30,40\n9,1,10,20,30,40\n", ["line 2", "frame 9 is out of range", "5 frames"]),
        ("0,1,10,20,30,40\n", ["line 1", "frame 0 is out of range", "1..5"]),
    ],
    ids=["text", "short-row", "negative-size", "fractional-frame", "frame-beyond-video", "frame-zero"],
)
def test_bad_mot_file(content, words, clip, tmp_path, capsys):
    gt = tmp_path / "gt.txt"
    gt.write_text(content)
    assert_bad_input(run_cli(capsys, "eval-video", clip, "--gt", gt, "--out", tmp_path / "o"), *words)
    assert not (tmp_path / "o").exists()  # stopped before the model ran


def test_mot_sequence_of_another_length(clip, tmp_path, capsys):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "gt.txt").write_text("1,1,10,20,30,40\n")
    (tmp_path / "seqinfo.ini").write_text("[Sequence]\nseqLength=71\n")
    result = run_cli(capsys, "eval-video", clip, "--gt", tmp_path / "gt" / "gt.txt")
    assert_bad_input(result, "gt.txt", "71 frames", "seqinfo.ini", "video has 5")


def test_bad_yolo_labels(clip, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    for i in range(4):
        (labels / f"{i + 1:06d}.txt").write_text("0 0.5 0.5 0.2 0.3\n")
    assert_bad_input(run_cli(capsys, "eval-video", clip, "--gt", labels), "4 .txt files", "5 frames")
    (labels / "000005.txt").write_text("0 0.5 0.5 0.2 0.3\n0 0.5 1.5 0.2 0.3\n")
    assert_bad_input(run_cli(capsys, "eval-video", clip, "--gt", labels), "000005.txt line 2", "normalised")
    (labels / "000005.txt").write_text("person 0.5 0.5 0.2 0.3\n")
    assert_bad_input(run_cli(capsys, "eval-video", clip, "--gt", labels, "--gt-format", "yolo"), "000005.txt line 1")


def test_missing_ground_truth(clip, tmp_path, capsys):
    assert_bad_input(run_cli(capsys, "eval-video", clip, "--gt", tmp_path / "nope.txt"), "nope.txt", "not found")


@pytest.mark.parametrize(
    "mapping,words",
    [
        ("walker=person", ["--class-map 'walker=person'", "'walker' is not a class", "pedestrian"]),
        ("pedestrian=unicorn", ["--class-map 'pedestrian=unicorn'", "'unicorn' is not one of the model's"]),
        ("pedestrian", ["--class-map 'pedestrian'", "GT=MODEL"]),
    ],
)
def test_bad_class_map(mapping, words, clip, tmp_path, capsys):
    gt = tmp_path / "gt.txt"
    gt.write_text("1,1,10,20,30,40\n")
    result = run_cli(capsys, "eval-video", clip, "--gt", gt, "--class-map", mapping, "--out", tmp_path / "o")
    assert_bad_input(result, *words)


def test_class_map_for_yolo_labels_takes_ids():
    yolo = GroundTruth(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0), {}, 1, "labels/ (YOLO labels)")
    with pytest.raises(DetectorError, match=re.escape("'person' is not a class of labels/ (YOLO labels) (YOLO")):
        resolve_class_map(["person=person"], yolo, COCO_NAMES)


def test_diff_of_different_videos(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", BOXES)
    longer = write_run(tmp_path / "b.jsonl", [*BOXES, []])
    assert_bad_input(run_cli(capsys, "diff", a, longer), "frame 3 is only in", "b.jsonl", "same video")
    other_rate = write_run(tmp_path / "c.jsonl", BOXES, fps=10)
    assert_bad_input(run_cli(capsys, "diff", a, other_rate), "frame 1", "different videos")


@pytest.mark.parametrize(
    "line,words",
    [
        ("not json", ["line 2"]),
        ('{"frame": 1, "time_s": 0.04}', ["line 2", "no 'detections'"]),
        ('{"frame": 0, "time_s": 0.04, "detections": []}', ["line 2", "not a new frame"]),
        (
            '{"frame": 1, "time_s": 0.04, "detections": [{"xyxy": [1, 2, 3], "confidence": 0.5, "class_id": 0, '
            '"class_name": "person"}]}',
            ["line 2"],
        ),
    ],
    ids=["not-json", "no-detections", "repeated-frame", "three-numbers-box"],
)
def test_diff_of_malformed_jsonl(line, words, tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", BOXES)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(a.read_text().splitlines()[0] + "\n" + line + "\n")
    assert_bad_input(run_cli(capsys, "diff", a, bad), "bad.jsonl", *words)


def test_diff_of_missing_file_and_bad_tolerance(tmp_path, capsys):
    a = write_run(tmp_path / "a.jsonl", BOXES)
    assert_bad_input(run_cli(capsys, "diff", a, tmp_path / "gone.jsonl"), "gone.jsonl", "not found")
    assert_bad_input(run_cli(capsys, "diff", a, a, "--max-changed", "5"), "--max-changed")
    assert_bad_input(run_cli(capsys, "diff", a, a, "--iou", "0"), "--iou")


@needs_shared
def test_tud_campus_realtime_scores_every_frame(tmp_path):
    result = detector("eval-video", str(TUD_VIDEO), "--gt", str(TUD_GT), "--realtime", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["per_frame"]) == 71  # dropped frames are scored too, with the boxes last shown
    lines = [json.loads(line) for line in (tmp_path / "detections.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(71))
    assert all(line["shown_from"] <= line["frame"] for line in lines)
    # each frame is scored with the boxes on screen while it was: none before the first result, and the
    # counts of a frame are those of its shown boxes (how many frames the model sees depends on the CPU:
    # recall 0.81 on the machine of docs/video-and-scoring.md, 0.46 on a 2-core AVX2 one)
    for line, frame in zip(lines, report["per_frame"]):
        shown_people = [d for d in line["detections"] if d["class_name"] == "person" and d["confidence"] > 0.25]
        assert frame["tp"] + frame["fp"] == len(shown_people)
        if line["shown_from"] < 0:
            assert frame["tp"] == 0
    assert 0 < report["recall"] <= 1 and "dropped" in result.stdout
