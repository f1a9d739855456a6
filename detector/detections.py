"""`Detections`: the one result type every stage after the model passes around."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Detections:
    """Boxes found in one frame, in that frame's pixels.

    Index it like a tensor to filter: ``dets[dets.confidence > 0.5]``, ``dets[dets.class_id == 0]``.
    """

    xyxy: torch.Tensor  # [N, 4] float32, x1 y1 x2 y2 in frame pixels
    confidence: torch.Tensor  # [N] float32
    class_id: torch.Tensor  # [N] int64
    names: Mapping[int, str]  # every class the model knows, id -> name
    # [N] int64 track IDs from detector.track (-1: not a confirmed track); None when tracking is off
    track_id: torch.Tensor | None = None

    @classmethod
    def empty(cls, names: Mapping[int, str]) -> Detections:
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), names)

    @classmethod
    def from_rows(cls, rows: torch.Tensor, names: Mapping[int, str]) -> Detections:
        """From postprocess rows ``[N, 6]``: x1 y1 x2 y2 confidence class."""
        rows = rows.detach().float().cpu()
        return cls(rows[:, :4].contiguous(), rows[:, 4].contiguous(), rows[:, 5].long(), names)

    def __len__(self) -> int:
        return self.xyxy.shape[0]

    def __getitem__(self, index: torch.Tensor | slice | int) -> Detections:
        if isinstance(index, int):
            index = slice(index, index + 1 or None)
        track_id = None if self.track_id is None else self.track_id[index]
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index], self.names, track_id)

    @property
    def class_name(self) -> list[str]:
        return [self.names.get(int(k), str(int(k))) for k in self.class_id]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"detections": [{"xyxy", "confidence", "class_id", "class_name"}, ...]}``, each with
        ``"track_id"`` (int, or None where not a confirmed track) only when tracking is on: lines of runs
        without tracking stay as they were."""
        boxes = [[round(v, 2) for v in box] for box in self.xyxy.tolist()]
        scores = [round(s, 5) for s in self.confidence.tolist()]
        records = [
            {"xyxy": b, "confidence": s, "class_id": int(k), "class_name": n}
            for b, s, k, n in zip(boxes, scores, self.class_id.tolist(), self.class_name)
        ]
        if self.track_id is not None:
            for record, t in zip(records, self.track_id.tolist()):
                record["track_id"] = t if t >= 0 else None
        return {"detections": records}
