"""Scoring tracks: a MOTChallenge results file (``tracks.txt``) against MOT ground truth, with MOTChallenge's
own metrics code, TrackEval (HOTA, CLEAR: MOTA, ID switches, MT, ML, fragmentations; Identity: IDF1, IDP,
IDR).

What is scored, as MOTChallenge scores it:

- ground-truth rows with 0 in column 7 are left out (MOTChallenge's flag); in MOT16/17's 9-column rows
  only pedestrians (class 1) are scored, and a tracked box that matches (IoU >= 0.5, one to one) a person on
  a vehicle, a static person, a distractor or a reflection is removed first rather than counted as false;
- ground-truth and tracked boxes reaching out of the frame are clipped to it, as eval-video clips the ground
  truth of detections (detector/evaluate/ground_truth.py);
- a tracked box matches a ground-truth box at IoU >= 0.5 (CLEAR and Identity); HOTA averages over IoU
  0.05..0.95 by its definition.

Here TrackEval's metric classes are fed directly (its file readers, configuration and printing are not
used): the boxes are read, checked and clipped here, and each frame's IoU matrix is computed once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from detector.errors import DetectorError
from detector.track.mot import read_mot

PEDESTRIAN = 1
# MOT16/17 classes whose matched tracks are not false positives: person_on_vehicle, static_person,
# distractor, reflection (TrackEval's MotChallenge2DBox)
DISTRACTORS = (2, 7, 8, 12)
IOU = 0.5
KEYS = ("MOTA", "IDF1", "HOTA", "IDP", "IDR", "ID_switches", "MT", "ML", "fragmentations")


def clipped_xyxy(rows: np.ndarray, frame_wh: tuple[int, int]) -> np.ndarray:
    """MOT rows ``[K, >=6]`` (x, y, w, h in columns 3-6) -> ``[K, 4]`` x1 y1 x2 y2 clipped to the frame."""
    w, h = frame_wh
    xyxy = np.concatenate((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]), axis=1)
    return np.clip(xyxy, 0, np.array([w, h, w, h], dtype=np.float64))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``[M, 4]`` and ``[N, 4]`` xyxy boxes -> ``[M, N]`` float64 (0 where both are empty)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], axis=1), np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _check_unique(frames: np.ndarray, ids: np.ndarray, path: Path) -> None:
    pairs, counts = np.unique(np.stack((frames, ids), axis=1), axis=0, return_counts=True)
    if (counts > 1).any():
        frame, track = pairs[np.argmax(counts > 1)]
        raise DetectorError(f"{path}: id {track:g} appears twice in frame {frame:g}; give each id once per frame")


def sequence_data(tracks_txt: str | Path, gt_txt: str | Path, frame_wh: tuple[int, int]) -> dict[str, Any]:
    """The tracks and the scored ground truth as TrackEval's metrics take a sequence: per frame the ground-truth
    ids, the tracked ids (both renumbered 0..n-1) and their IoU matrix."""
    tracks_txt, gt_txt = Path(tracks_txt), Path(gt_txt)
    gt, tracks = read_mot(gt_txt), read_mot(tracks_txt)
    _check_unique(gt[:, 0], gt[:, 1], gt_txt)
    _check_unique(tracks[:, 0], tracks[:, 1], tracks_txt)
    gt_box, track_box = clipped_xyxy(gt, frame_wh), clipped_xyxy(tracks, frame_wh)
    mot17 = ~np.isnan(gt[:, 8]) & np.isnan(gt[:, 9])  # 9-column rows: column 8 is the class
    scored = (gt[:, 6] != 0) & (~mot17 | (gt[:, 7] == PEDESTRIAN))
    distractor = mot17 & np.isin(gt[:, 7], DISTRACTORS)
    if not scored.any():
        raise DetectorError(f"ground truth '{gt_txt}' has no boxes to score (every row flagged 0 or not a pedestrian)")

    frames = int(max(gt[:, 0].max(), tracks[:, 0].max(initial=0)))
    gt_ids, gt_index = np.unique(gt[scored, 1], return_inverse=True)
    track_ids, track_index = np.unique(tracks[:, 1], return_inverse=True)
    gt_index_all = np.full(len(gt), -1)
    gt_index_all[scored] = gt_index
    data: dict[str, Any] = {"gt_ids": [], "tracker_ids": [], "similarity_scores": []}
    for frame in range(1, frames + 1):
        g, t = np.flatnonzero(gt[:, 0] == frame), np.flatnonzero(tracks[:, 0] == frame)
        if distractor[g].any() and len(t):
            # MOTChallenge's preprocessing: tracked boxes matched to distractors are removed, not counted
            iou = box_iou(gt_box[g], track_box[t])
            rows, cols = linear_sum_assignment(np.where(iou >= IOU - np.finfo(float).eps, -iou, 0))
            matched = iou[rows, cols] >= IOU - np.finfo(float).eps
            t = np.delete(t, cols[matched & distractor[g][rows]])
        g = g[scored[g]]
        data["gt_ids"].append(gt_index_all[g])
        data["tracker_ids"].append(track_index[t])
        data["similarity_scores"].append(box_iou(gt_box[g], track_box[t]))
    # tracked ids that only ever matched distractors are gone: renumber what is left
    kept = np.unique(np.concatenate(data["tracker_ids"])) if frames else np.zeros(0, dtype=np.int64)
    renumber = np.full(len(track_ids), -1)
    renumber[kept] = np.arange(len(kept))
    data["tracker_ids"] = [renumber[t] for t in data["tracker_ids"]]
    data.update(
        num_timesteps=frames,
        num_gt_ids=len(gt_ids),
        num_tracker_ids=len(kept),
        num_gt_dets=sum(len(g) for g in data["gt_ids"]),
        num_tracker_dets=sum(len(t) for t in data["tracker_ids"]),
    )
    return data


def score_tracks(tracks_txt: str | Path, gt_txt: str | Path, frame_wh: tuple[int, int]) -> dict[str, float | int]:
    """MOT scores of ``tracks_txt`` (MOTChallenge results: ``frame,id,x,y,w,h,conf,...``) against ``gt_txt``
    (MOT ground truth) on frames of ``frame_wh`` (width, height): ``{"MOTA", "IDF1", "HOTA", "IDP", "IDR"}``
    as fractions (MOTA can go below 0: more errors than ground-truth boxes), ``{"ID_switches", "MT", "ML",
    "fragmentations"}`` as counts (MT/ML: ground-truth tracks covered for more than 80% / less than 20% of
    their frames)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    data = sequence_data(tracks_txt, gt_txt, frame_wh)
    config = {"THRESHOLD": IOU, "PRINT_CONFIG": False}
    clear = CLEAR(config).eval_sequence(data)
    identity = Identity(config).eval_sequence(data)
    hota = HOTA().eval_sequence(data)
    return {
        "MOTA": float(clear["MOTA"]),
        "IDF1": float(identity["IDF1"]),
        "HOTA": float(np.mean(hota["HOTA"])),
        "IDP": float(identity["IDP"]),
        "IDR": float(identity["IDR"]),
        "ID_switches": int(clear["IDSW"]),
        "MT": int(clear["MT"]),
        "ML": int(clear["ML"]),
        "fragmentations": int(clear["Frag"]),
    }
