"""Ground truth for `detector eval-video`: a MOT ``gt.txt`` or a folder of YOLO label files, checked line by
line, and the class map that ties its classes to the model's.

MOT ``gt.txt``: ``frame,id,x,y,w,h,...`` in pixels, 1-based frames. YOLO labels: one file per frame,
``class cx cy w h`` normalised, in frame order by name. By default MOT's pedestrians are COCO's ``person``
and YOLO ids are the model's ids.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detector.errors import DetectorError
from detector.pipeline import resolve_classes
from detector.sources import VideoFile
from detector.track.mot import read_mot

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
    """A text file, or a one-line error naming it (also for the JSON lines of runs.py)."""
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
    table = read_mot(path, frames)  # [K, 10], NaN where a row ends
    mot17 = np.isnan(table[:, 9]) & ~np.isnan(table[:, 8])  # 9 columns: MOT16/17's flag and class
    keep = ~(mot17 & (table[:, 6] == 0))  # flag 0: a row to leave out
    frame, (x, y, w, h) = table[keep, 0] - 1, table[keep, 2:6].T
    cls = np.where(mot17[keep], table[keep, 7], 1)
    rows = np.stack((frame, x, y, x + w, y + h, cls), 1).tolist()  # [M, 6]
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
