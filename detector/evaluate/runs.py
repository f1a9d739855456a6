"""The detections of a `detector video` run, read back from its JSON lines (eval-video's detections.jsonl
has the same format): what run.py scores and diff.py compares."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from detector.detections import Detections
from detector.errors import DetectorError
from detector.evaluate.ground_truth import read_text


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
