"""`detector export`: a ``.pt`` detector to ONNX or OpenVINO through Ultralytics' exporter.

The exported model is written beside the weights (``best.onnx``, ``best_openvino_model/``) and loads in
``Detector`` and in ``detector video/live --weights`` like the ``.pt``. ``--half`` stores float16 weights;
``--int8`` (OpenVINO) quantises with NNCF, calibrated on ``--data``'s val images. The graph is exported
with the raw head output (no NMS inside), so ``postprocess.py`` treats it as it treats the ``.pt``.
``--dynamic`` leaves the input's height and width open: the app compiles such a model for each source's own
letterboxed shape (384x640 for a 16:9 frame at 640) instead of padding every frame to a square.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from detector import environment
from detector.errors import DetectorError

FORMATS = ("onnx", "openvino")


def export_model(
    weights: str,
    fmt: str,
    imgsz: int = 640,
    half: bool = False,
    int8: bool = False,
    data: str | None = None,
    dynamic: bool = False,
) -> Path:
    """Export ``weights`` (a ``.pt`` detector; a pickle, load only weights you trust) -> the exported path."""
    from detector.backends import load_torch_model, resolve_weights
    from detector.pipeline import check_imgsz

    if fmt not in FORMATS:
        raise DetectorError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if half and int8:
        raise DetectorError("--half and --int8 exclude each other: pick one")
    if int8 and fmt != "openvino":
        raise DetectorError("--int8 is for --format openvino (NNCF); ONNX exports are float32 or --half")
    if int8 and importlib.util.find_spec("nncf") is None:
        raise DetectorError("--int8 needs NNCF, which is not installed: pip install nncf")
    if int8 and not data:
        raise DetectorError("--int8 needs --data data.yaml: its val images calibrate the quantisation")
    path = resolve_weights(weights)
    if not path.endswith(".pt"):
        raise DetectorError(f"weights '{weights}': export takes a .pt checkpoint")
    load_torch_model(path)  # refuses files that are not detection models, in one line
    size = max(check_imgsz(imgsz, 32))
    from ultralytics import YOLO

    quantize = 16 if half else 8 if int8 else 32
    options = {"format": fmt, "imgsz": size, "quantize": quantize, "dynamic": dynamic, "device": "cpu"}
    if fmt == "onnx":
        options["simplify"] = False  # onnxslim is not a dependency; the graph runs the same unsimplified
    if int8:
        options["data"] = data
        import nncf  # noqa: F401  (its logger prints every quantizer it places at INFO)

        logging.getLogger("nncf").setLevel(logging.WARNING)
    try:
        with environment.no_downloads():
            out = YOLO(path, task="detect").export(**options, verbose=False)
    except Exception as e:  # the exporter raises many types; all mean the export failed
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise DetectorError(f"export of '{weights}' to {fmt} failed: {reason}") from None
    return Path(out)
