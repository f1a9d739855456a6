"""Model backends: Ultralytics' AutoBackend loads the weights; we take over at the raw head output.

``Backend(weights)(x)`` maps a batch ``[B, 3, H, W]`` (RGB, float in [0, 1]) to the head's raw output:

- NMS heads (YOLOv8, YOLO11, YOLO26 by default): ``[B, 4 + nc, A]``, boxes as cx cy w h in input pixels,
  class scores after the sigmoid, one column per anchor.
- End-to-end heads (YOLO26 with ``end2end=True``): ``[B, A, 4 + nc]`` with boxes as x1 y1 x2 y2 for
  PyTorch models (we switch off the head's own top-k so that ``postprocess`` does it), or the
  already top-k'd ``[B, K, 6]`` that ONNX/OpenVINO exports of such heads produce.

``.pt`` files are Python pickles: loading one runs code from it. Only load weights you trust.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from detector import environment
from detector.errors import DetectorError

T = TypeVar("T")
WEIGHT_SUFFIXES = (".pt", ".yaml", ".yml", ".onnx", "_openvino_model", ".xml")


def resolve_weights(weights: str | Path) -> str:
    """A local path for ``weights``, downloading official Ultralytics names when the network is allowed."""
    path = Path(weights)
    if path.exists():
        return str(path)
    if path.suffix in {".yaml", ".yml"}:  # Ultralytics' own model configs, e.g. yolo11n.yaml
        return str(weights)
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    if path.name not in GITHUB_ASSETS_NAMES or path.parent != Path("."):
        raise DetectorError(
            f"weights '{weights}' not found: pass a .pt, .onnx, model .yaml or *_openvino_model path "
            "(default: the bundled weights/yolo11n_int8_openvino_model)"
        )
    with environment.network_allowed() as allowed:
        if not allowed:
            raise DetectorError(
                f"weights '{weights}' are not on disk and YOLO_OFFLINE is set: download {path.name} from "
                "https://github.com/ultralytics/assets/releases on a machine with internet and pass its path"
            )
        try:
            return attempt_download_asset(path.name, retry=1)
        except Exception as e:  # network errors come in many types; all mean the same to the user
            raise DetectorError(
                f"weights '{weights}' could not be downloaded ({type(e).__name__}): download {path.name} from "
                "https://github.com/ultralytics/assets/releases and pass its path"
            ) from None


def load_torch_model(weights: str) -> torch.nn.Module:
    """An Ultralytics detection model from a ``.pt`` checkpoint or a model ``.yaml`` (random init)."""
    from ultralytics.nn.tasks import load_checkpoint

    try:
        if weights.endswith((".yaml", ".yml")):
            from ultralytics import YOLO

            model = YOLO(weights, task="detect").model
        else:
            with environment.no_downloads():
                model = load_checkpoint(weights)[0]
    except DetectorError:
        raise
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DetectorError(f"weights '{weights}' could not be loaded as an Ultralytics model: {reason}") from None
    check_detection_model(model, weights)
    return model


def check_detection_model(model: torch.nn.Module, name: str) -> None:
    """Refuse classifiers, segmenters, pose and OBB models: this app draws plain boxes."""
    from ultralytics.nn.modules.head import Detect

    head = model.model[-1] if hasattr(model, "model") and isinstance(model.model, torch.nn.Sequential) else None
    if type(head) is not Detect:  # Segment, Pose, OBB subclass Detect; Classify does not
        kind = type(head).__name__ if head is not None else type(model).__name__
        raise DetectorError(
            f"weights '{name}' are a {kind} model, not an object detector: use a detection model (e.g. yolo11n.pt)"
        )


def _openvino_xml(name: str) -> str:
    path = Path(name)
    return str(path if path.suffix == ".xml" else next(path.glob("*.xml")))


class Backend:
    """Weights behind one call: ``backend(x [B, 3, H, W]) -> raw head output``."""

    def __init__(
        self,
        weights: str | Path | torch.nn.Module,
        device: str = "cpu",
        end2end: bool | None = None,
        half: bool = False,
    ) -> None:
        from ultralytics.nn.autobackend import AutoBackend
        from ultralytics.utils.torch_utils import select_device

        try:
            device = select_device(device, verbose=False)
        except Exception as e:
            raise DetectorError(f"device '{device}' is not available ({e}); use --device cpu") from None
        if isinstance(weights, torch.nn.Module):
            check_detection_model(weights, type(weights).__name__)
            model, name = copy.deepcopy(weights), type(weights).__name__  # fusing must not touch the caller's
        else:
            name = resolve_weights(weights)
            is_torch = name.endswith((".pt", ".yaml", ".yml"))
            model = load_torch_model(name) if is_torch else name
            if not is_torch and not name.rstrip("/").endswith(WEIGHT_SUFFIXES[3:]):
                raise DetectorError(
                    f"weights '{weights}': unknown format; pass a .pt, .onnx, model .yaml or *_openvino_model path"
                )
        try:
            self.model = AutoBackend(model, device=device, fp16=half, fuse=True, verbose=False, end2end=end2end)
        except DetectorError:
            raise
        except Exception as e:
            reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise DetectorError(f"weights '{name}' could not be loaded: {reason}") from None
        self.model.eval()
        task = getattr(self.model, "task", "detect") or "detect"
        if task != "detect":
            raise DetectorError(f"weights '{name}' are a {task} model, not an object detector: use a detection model")

        self.format: str = self.model.format
        self.names: dict[int, str] = dict(self.model.names)
        self.stride: int = int(self.model.stride)
        self.device = self.model.device
        self.half = bool(self.model.fp16)
        # static exports take one input size: the one they were exported at
        dynamic = self.format == "pt" or bool(getattr(self.model, "dynamic", False))
        self.fixed_imgsz: tuple[int, int] | None = None if dynamic else tuple(self.model.imgsz)
        self.end2end = bool(self.model.end2end) or bool(self.model.metadata.get("end2end", False))
        if self.format == "pt" and self.end2end:
            # The end-to-end head would pick its top-k inside forward(); keep its raw one-to-one output
            # [B, A, 4 + nc] instead, so that postprocess.py owns the top-k and the masks.
            head = self.model.model.model[-1]
            head.postprocess = lambda preds: preds
        self.topk_in_graph = self.end2end and self.format != "pt"
        self._openvino_xml = _openvino_xml(name) if self.format == "openvino" else None

    def resize(self, imgsz: tuple[int, int]) -> bool:
        """Give a static export another input size; True where the format allows it (OpenVINO)."""
        if self._openvino_xml is None or self.fixed_imgsz == imgsz:
            return self.fixed_imgsz == imgsz
        # A static OpenVINO IR can often be reshaped and recompiled (not when its graph holds constant
        # shapes, as attention blocks do); Ultralytics' backend then runs our compiled model.
        try:
            self.model.backend.ov_compiled_model = self._compile_openvino(imgsz, "LATENCY")
        except RuntimeError:
            return False
        self.fixed_imgsz = imgsz
        return True

    def _compile_openvino(self, imgsz: tuple[int, int], hint: str):
        import openvino as ov

        model = ov.Core().read_model(self._openvino_xml)
        model.reshape([1, 3, *imgsz])
        return ov.Core().compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})

    def stream(self, items: Iterable[tuple[torch.Tensor, T]]) -> Iterator[tuple[torch.Tensor, T]]:
        """``(x, payload)`` pairs -> ``(raw, payload)`` pairs, in order, as fast as the backend goes.

        Throughput mode for files: OpenVINO runs its THROUGHPUT configuration with several requests in
        flight (one per CPU stream), so one frame's inference overlaps the next one's; other backends
        run one call at a time.
        """
        if self._openvino_xml is None or self.device.type != "cpu":
            for x, payload in items:
                yield self(x), payload
            return
        import openvino as ov

        compiled = self._compile_openvino(self.fixed_imgsz, "THROUGHPUT")
        requests = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        done: dict[int, np.ndarray] = {}
        requests.set_callback(lambda request, i: done.__setitem__(i, request.get_output_tensor(0).data.copy()))
        waiting: deque[tuple[int, T]] = deque()
        for i, (x, payload) in enumerate(items):
            requests.start_async({0: x.numpy()}, userdata=i)  # blocks while every request is busy
            waiting.append((i, payload))
            while waiting and waiting[0][0] in done:
                j, first = waiting.popleft()
                yield torch.from_numpy(done.pop(j)), first
        requests.wait_all()
        for j, payload in waiting:
            yield torch.from_numpy(done.pop(j)), payload

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x.to(self.device, torch.float16 if self.half else torch.float32))
        y = y[0] if isinstance(y, (list, tuple)) else y
        return y.float()
