"""Model backends: Ultralytics' AutoBackend loads the weights; we take over at the raw head output.

``Backend(weights)(x)`` maps a batch to the head's raw output. ``x`` is either the letterboxed frames as
``preprocess.letterbox`` gives them (``[B, H, W, 3]`` BGR uint8: OpenVINO converts them inside its graph,
PyTorch and ONNX through ``preprocess.to_tensor``) or the model's float input ``[B, 3, H, W]`` (RGB, [0, 1]).
The raw output:

- NMS heads (YOLOv8, YOLO11, YOLO26 by default): ``[B, 4 + nc, A]``, boxes as cx cy w h in input pixels,
  class scores after the sigmoid, one column per anchor.
- End-to-end heads (YOLO26 with ``end2end=True``): ``[B, A, 4 + nc]`` with boxes as x1 y1 x2 y2 for
  PyTorch models (we switch off the head's own top-k so that ``postprocess`` does it), or the
  already top-k'd ``[B, K, 6]`` that ONNX/OpenVINO exports of such heads produce.

``.pt`` files are Python pickles: loading one runs code from it. Only load weights you trust.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from detector import environment
from detector.errors import DetectorError
from detector.preprocess import to_tensor

T = TypeVar("T")
WEIGHT_SUFFIXES = (".pt", ".yaml", ".yml", ".onnx", "_openvino_model", ".xml")
MAX_SHAPES = 8  # input shapes an OpenVINO model stays compiled for at once (each holds its own buffers)


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


@functools.cache
def openvino_core():
    """One OpenVINO Core for the process, never destroyed: compiled models must not outlive their Core, and
    every further Core is one more plugin set in the process (Ultralytics' own CI died of a segmentation
    fault inside forward() after about 20 OpenVINO loads, each with its own Core: ultralytics#25864).

    Full precision for the layers the INT8 model keeps in float: on CPUs with AVX-512 BF16 or AMX, OpenVINO
    would run them in bfloat16 by default, moving boxes by pixels and reordering close scores, so the same
    model would give other detections (and other accuracy) on other machines."""
    import openvino as ov

    core = ov.Core()
    core.set_property("CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return core


@contextlib.contextmanager
def one_openvino_core() -> Iterator[None]:
    """Inside this block, ``ov.Core()`` is the process's one Core: Ultralytics' OpenVINO backend makes a new
    Core for every model it loads."""
    import openvino as ov

    core, make_core = openvino_core(), ov.Core
    ov.Core = lambda *args, **kwargs: core
    try:
        yield
    finally:
        ov.Core = make_core


class Backend:
    """Weights behind one call: ``backend(x) -> raw head output``, ``x`` letterboxed bytes or floats."""

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
            with one_openvino_core():
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
        # select_device leaves one core free for data loaders (cpu_count - 1 threads: half of a 2-core
        # machine); PyTorch inference takes them all. With another runtime, torch only postprocesses small
        # tensors: one thread, so that no idle OpenMP thread spins on a core the runtime's threads need
        torch.set_num_threads(environment.INFERENCE_THREADS if self.format == "pt" else 1)
        self.names: dict[int, str] = dict(self.model.names)
        self.stride: int = int(self.model.stride)
        self.device = self.model.device
        self.half = bool(self.model.fp16)
        self._openvino_xml = _openvino_xml(name) if self.format == "openvino" else None
        # static exports take one input size: the one they were exported at. Read from the IR itself for
        # OpenVINO: Ultralytics' backend calls dynamic INT8 IRs static on AMX CPUs (openvino#37577)
        if self._openvino_xml is not None:
            dynamic = openvino_core().read_model(self._openvino_xml).input(0).partial_shape[2].is_dynamic
        else:
            dynamic = self.format == "pt" or bool(getattr(self.model, "dynamic", False))
        self.fixed_imgsz: tuple[int, int] | None = None if dynamic else tuple(self.model.imgsz)
        self.end2end = bool(self.model.end2end) or bool(self.model.metadata.get("end2end", False))
        if self.format == "pt" and self.end2end:
            # The end-to-end head would pick its top-k inside forward(); keep its raw one-to-one output
            # [B, A, 4 + nc] instead, so that postprocess.py owns the top-k and the masks.
            head = self.model.model.model[-1]
            head.postprocess = lambda preds: preds
        self.topk_in_graph = self.end2end and self.format != "pt"
        # our OpenVINO models taking bytes, compiled for each input shape when it first comes: per shape,
        # one latency-mode request (one image at a time) and one throughput-mode model (files)
        self._latency: dict[tuple[int, int], tuple[object, object]] = {}  # input hw -> (compiled, request)
        self._throughput: dict[tuple[int, int], object] = {}  # input hw -> compiled

    def resize(self, imgsz: tuple[int, int]) -> bool:
        """Give a static export another input size; True where the format allows it (OpenVINO)."""
        if self._openvino_xml is None or self.fixed_imgsz == imgsz:
            return self.fixed_imgsz == imgsz
        # A static OpenVINO IR can often be reshaped and recompiled (not when its graph holds constant
        # shapes, as attention blocks do)
        try:  # Ultralytics' backend runs float tensors; ours (compiled on first use) the bytes
            self.model.backend.ov_compiled_model = self._compile_openvino(imgsz, "LATENCY", takes_bytes=False)
        except RuntimeError:
            return False
        self.fixed_imgsz = imgsz
        self._latency.clear()
        self._throughput.clear()
        return True

    @property
    def takes_bytes(self) -> bool:
        """Whether letterboxed uint8 frames go into the model as they are (OpenVINO on the CPU)."""
        return self._openvino_xml is not None and self.device.type == "cpu"

    def _compile_openvino(self, imgsz: tuple[int, int], hint: str, takes_bytes: bool = True, batch: int = 1):
        """The IR at ``imgsz`` and ``batch``; with ``takes_bytes`` it takes letterboxed BGR bytes ``[B, H, W, 3]``,
        the conversion to RGB floats in [0, 1] (what ``to_tensor`` does) running inside OpenVINO's graph.

        Always compiled for one static shape, dynamic IRs too: a static graph runs faster (the CPU plugin
        plans its memory and kernels once), and INT8 models with any dynamic dimension crash on Intel AMX
        CPUs (openvino#37577). RuntimeError where the IR cannot take that shape."""
        import openvino as ov
        from openvino.preprocess import ColorFormat, PrePostProcessor

        core = openvino_core()
        model = core.read_model(self._openvino_xml)
        shape = [batch, 3, *imgsz]
        if model.input(0).partial_shape != ov.PartialShape(shape):
            model.reshape(shape)
        if not takes_bytes:
            return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})
        ppp = PrePostProcessor(model)
        tensor = ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        tensor.set_color_format(ColorFormat.BGR)
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
        return core.compile_model(ppp.build(), "CPU", {"PERFORMANCE_HINT": hint})

    def _latency_request(self, imgsz: tuple[int, int]):
        """The latency-mode request for inputs of ``imgsz``, compiled the first time that shape comes."""
        if imgsz not in self._latency:
            if len(self._latency) == MAX_SHAPES:  # a folder of photos of many sizes: keep the newest shapes
                del self._latency[next(iter(self._latency))]
            compiled = self._compile_openvino(imgsz, "LATENCY")
            self._latency[imgsz] = (compiled, compiled.create_infer_request())
        return self._latency[imgsz][1]

    def _infer_bytes(self, batch: np.ndarray) -> torch.Tensor:
        request = self._latency_request(batch.shape[1:3])
        outputs = []
        for image in batch:  # one image per call: the latency model is compiled for batches of one
            request.infer({0: image[None]})
            outputs.append(request.get_output_tensor(0).data.copy())  # the request reuses its memory
        return torch.from_numpy(outputs[0] if len(outputs) == 1 else np.concatenate(outputs))

    def stream(self, items: Iterable[tuple[np.ndarray, T]]) -> Iterator[tuple[torch.Tensor, T]]:
        """``(x, payload)`` pairs -> ``(raw, payload)`` pairs, in order, as fast as the backend goes.

        Throughput mode for files: OpenVINO runs its THROUGHPUT configuration with several requests in
        flight (one per CPU stream), so one batch's inference overlaps the next one's; other backends
        run one call at a time. Items of ``prepare_stream`` frames; a shorter last one is fine.
        """
        if not self.takes_bytes:
            for x, payload in items:
                yield self(x), payload
            return
        import openvino as ov

        items = iter(items)
        first = next(items, None)
        if first is None:
            return
        input_hw = first[0].shape[1:3]
        if input_hw not in self._throughput:
            self.prepare_stream(input_hw)
        compiled = self._throughput[input_hw]
        batch = compiled.input(0).shape[0]  # compiled static: every request takes this many frames
        requests = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        done: dict[int, np.ndarray] = {}
        requests.set_callback(lambda request, i: done.__setitem__(i, request.get_output_tensor(0).data.copy()))
        waiting: deque[tuple[int, int, T]] = deque()
        try:
            for i, (x, payload) in enumerate(itertools.chain([first], items)):
                n = len(x)
                if n < batch:  # fill the last one up, keep n outputs
                    x = np.concatenate([x, np.repeat(x[-1:], batch - n, axis=0)])
                requests.start_async({0: x}, userdata=i)  # blocks while every request is busy
                waiting.append((i, n, payload))
                while waiting and waiting[0][0] in done:
                    j, n, first = waiting.popleft()
                    yield torch.from_numpy(done.pop(j)[:n]), first
        finally:
            # also when the consumer stops early: requests still running would call back into Python
            # after their queue, and the frames they read, are gone
            requests.wait_all()
        for j, n, payload in waiting:
            yield torch.from_numpy(done.pop(j)[:n]), payload

    def prepare_stream(self, input_hw: tuple[int, int]) -> int:
        """Get ``stream`` ready for inputs of ``input_hw`` (OpenVINO compiles its throughput model now, not
        while the first frames wait) and say how many frames each of its items should hold.

        Small inputs go in fours: yolo11n at 192x320 on 2 CPU cores takes 13-15 ms a frame in PyTorch one by
        one, 8-10 in fours; OpenVINO FP32 at 320x320 in throughput mode 5.7-6.2 ms, 5.5-5.7 in fours
        (benchmarks/bench_stages.py). No gain at 640. OpenVINO IRs that cannot take four (constant shapes
        inside, as static exports of YOLO11's attention block hold) stay at one."""
        small = input_hw[0] * input_hw[1] <= 320 * 320
        if not self.takes_bytes:
            return 4 if self.format == "pt" and (small or self.device.type == "cuda") else 1
        if input_hw not in self._throughput:
            self._throughput.clear()  # one file, one shape: the last file's model goes
            compiled = None
            if small:
                try:
                    compiled = self._compile_openvino(input_hw, "THROUGHPUT", batch=4)
                except RuntimeError:
                    pass
            self._throughput[input_hw] = compiled or self._compile_openvino(input_hw, "THROUGHPUT")
        return self._throughput[input_hw].input(0).shape[0]

    @torch.inference_mode()
    def __call__(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(x, np.ndarray):  # letterboxed bytes [B, H, W, 3]
            if self.takes_bytes:
                return self._infer_bytes(x)
            x = to_tensor(x)  # [B, 3, H, W]
        y = self.model(x.to(self.device, torch.float16 if self.half else torch.float32))
        y = y[0] if isinstance(y, (list, tuple)) else y
        return y.float()
