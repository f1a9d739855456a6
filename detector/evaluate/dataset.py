"""A detector scored on a YOLO-format dataset through the inference path (``Detector``, any weights format).

Each image goes through ``Detector`` as an app user's image would (its own letterboxed shape, our
postprocess) at Ultralytics' val settings (confidence 0.001, NMS IoU 0.7, at most 300 boxes); detections and
labels meet in image pixels. Matching and AP are ``detector/metrics.py``, as in fine-tuning's validation.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from detector.evaluate.runs import by_confidence
from detector.metrics import ap_per_class, match_predictions
from detector.pipeline import Detector
from detector.sources import read_image
from detector.train.data import load_data_yaml, load_dataset, to_pixels


@dataclass(frozen=True)
class DatasetScore:
    images: int
    map50: float
    map50_95: float


def score_dataset(detector: Detector, data_yaml: str | Path, split: str = "val") -> DatasetScore:
    """mAP50 and mAP50-95 of ``detector`` (its conf, iou and max_det as set) on a split of ``data_yaml``."""
    items, _ = load_dataset(load_data_yaml(data_yaml), split)
    tps, confs, pred_classes, target_classes = [], [], [], []
    for item in items:
        image = read_image(item.image)
        dets = by_confidence(detector([image])[0])  # best first, as match_predictions wants
        gt = torch.from_numpy(to_pixels(item.labels, image.shape[1], image.shape[0]))  # [M, 5] class x1 y1 x2 y2
        tps.append(match_predictions(dets.xyxy, dets.class_id, gt[:, 1:], gt[:, 0].long()))
        confs.append(dets.confidence)
        pred_classes.append(dets.class_id)
        target_classes.append(gt[:, 0].long())
    scores = ap_per_class(*(torch.cat(x) for x in (tps, confs, pred_classes, target_classes)))
    return DatasetScore(len(items), float(scores.ap50.mean()), float(scores.ap50_95.mean()))


def writable_view(data_yaml: str | Path, folder: Path) -> Path:
    """A dataset on a read-only disk seen from ``folder`` (links to its image and label folders, a copy of its
    yaml), for Ultralytics, which writes its label cache beside the labels. For a data.yaml whose splits are
    relative to its own folder, as ../shared/data/coco128's are."""
    root = Path(data_yaml).parent
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True)
        for split in (root / sub).iterdir():
            (folder / sub / split.name).symlink_to(split.resolve())
    shutil.copy(data_yaml, folder / "data.yaml")
    return folder / "data.yaml"
