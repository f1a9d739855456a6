"""`Detector`: weights + preprocess + backend + postprocess behind one call."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from detector.backends import Backend
from detector.detections import Detections
from detector.errors import DetectorError
from detector.postprocess import postprocess
from detector.preprocess import letterbox, scale_boxes

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "yolo11n_int8_openvino_model"


def check_imgsz(imgsz: int | Sequence[int], stride: int) -> tuple[int, int]:
    """``imgsz`` as ``(h, w)``, each rounded up to a multiple of the stride (with a note when it was)."""
    hw = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) <= 0:
        raise DetectorError(f"--imgsz {imgsz}: give one positive size (640) or two (480 640)")
    fixed = tuple(-(-int(s) // stride) * stride for s in hw)
    if fixed != hw:
        print(f"note: --imgsz {list(hw)} is not a multiple of {stride}; using {list(fixed)}", file=sys.stderr)
    return fixed


def resolve_classes(classes: Sequence[int | str] | None, names: dict[int, str]) -> list[int] | None:
    """Class names or ids -> ids the model has."""
    if classes is None:
        return None
    by_name = {n.lower(): i for i, n in names.items()}
    ids = []
    for c in classes:
        key = str(c).strip()
        if key.isdigit() and int(key) in names:
            ids.append(int(key))
        elif key.lower() in by_name:
            ids.append(by_name[key.lower()])
        else:
            sample = ", ".join(list(names.values())[:6])
            raise DetectorError(f"class '{key}' is not one of the model's {len(names)} classes ({sample}, ...)")
    return ids


class Detector:
    """``Detector(weights)(frames) -> list[Detections]``, frames being BGR uint8 arrays of any sizes.

    ``weights``: a ``.pt`` checkpoint, a model ``.yaml`` (random init), an ONNX file, an OpenVINO model
    folder, an official name such as ``yolo11n.pt`` (downloaded unless offline), or an ``nn.Module``.
    ``end2end``: for YOLO26, True picks the NMS-free one-to-one head; None keeps Ultralytics' default.
    """

    def __init__(
        self,
        weights: str | Path | torch.nn.Module = DEFAULT_WEIGHTS,
        imgsz: int | Sequence[int] | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        classes: Sequence[int | str] | None = None,
        max_det: int = 300,
        agnostic: bool = False,
        device: str = "cpu",
        end2end: bool | None = None,
        half: bool = False,
    ) -> None:
        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise DetectorError(f"--conf {conf} / --iou {iou}: both must lie between 0 and 1")
        if max_det < 1:
            raise DetectorError(f"--max-det {max_det}: must be at least 1")
        self.backend = Backend(weights, device=device, end2end=end2end, half=half)
        self.names = self.backend.names
        self.imgsz = self._input_size(imgsz)
        self.conf, self.iou, self.max_det, self.agnostic = conf, iou, max_det, agnostic
        self.classes = resolve_classes(classes, self.names)

    def _input_size(self, imgsz: int | Sequence[int] | None) -> tuple[int, int]:
        """Dynamic models take ``imgsz`` (default 640); static exports their own size, or ``imgsz`` where
        the format can be reshaped (OpenVINO)."""
        fixed = self.backend.fixed_imgsz
        if imgsz is None:
            return fixed or (640, 640)
        wanted = check_imgsz(imgsz, self.backend.stride)
        if fixed is None or self.backend.resize(wanted):
            return wanted
        print(f"note: this {self.backend.format} export takes {list(fixed)} only; --imgsz ignored", file=sys.stderr)
        return fixed

    def preprocess(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """Frames -> the letterboxed batch ``[B, H, W, 3]`` (BGR uint8) that ``backend`` takes."""
        return letterbox(frames, self.imgsz, self.backend.stride, auto=self.backend.fixed_imgsz is None)

    def postprocess(
        self, raw: torch.Tensor, input_hw: tuple[int, int], frames: Sequence[np.ndarray]
    ) -> list[Detections]:
        rows = postprocess(
            raw,
            self.backend.end2end,
            self.backend.topk_in_graph,
            self.conf,
            self.iou,
            self.classes,
            self.max_det,
            self.agnostic,
        )
        out = []
        for r, frame in zip(rows, frames):  # one iteration per image, not per box
            r = r.clone()
            r[:, :4] = scale_boxes(r[:, :4], input_hw, frame.shape[:2])
            out.append(Detections.from_rows(r, self.names))
        return out

    def __call__(
        self, frames: np.ndarray | Sequence[np.ndarray], letterboxed: np.ndarray | None = None
    ) -> list[Detections]:
        """``letterboxed``: ``preprocess(frames)``, where another thread already made it."""
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            frames = [frames]
        x = self.preprocess(frames) if letterboxed is None else letterboxed  # [B, H, W, 3]
        return self.postprocess(self.backend(x), x.shape[1:3], frames)
