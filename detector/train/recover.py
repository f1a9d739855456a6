"""Recover a trainable Ultralytics ``.pt`` from an OpenVINO IR export, offline (the bundled YOLO11n INT8 model).

Freezing a backbone only means something with pretrained weights, and no official ``yolo11n.pt`` can be
downloaded here; the bundled IR holds them. Every convolution of the exported model is an IR Convolution
(GroupConvolution for depthwise ones) whose friendly name starts with ``__module.<torch module path>/``. Its
weight is a small constant subgraph (int8 Constant -> Convert -> Multiply by a per-channel scale), evaluated
here with numpy; its bias is the constant input of the Add that follows.

The export folded each BatchNorm into its convolution, which cannot be undone, so each BatchNorm is restored
as an identity that carries the conv's bias: weight 1, bias b, running mean 0, running variance 1 - eps,
giving BN(x) = x + b exactly in eval mode. The model stays unfused (its BatchNorm layers are there to train).
In train mode a BatchNorm normalises by batch statistics instead, which these layers were not calibrated for;
frozen layers keep BatchNorm in eval mode, where the recovered function is exact.

The result is saved in Ultralytics' checkpoint layout. ``.pt`` files are Python pickles: loading one runs
code from it. Only load weights you trust.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from detector.errors import DetectorError
from detector.train.checkpoint import save_checkpoint

# Ops allowed in a weight's constant subgraph: dequantisation is (int8 -> float) * scale, minus a zero point
_ELEMENTWISE = {"Multiply": np.multiply, "Subtract": np.subtract}


def _evaluate(output) -> np.ndarray:
    """Fold the constant subgraph that produces an IR node ``output`` into one numpy array."""
    node = output.get_node()
    kind = node.get_type_name()
    if kind == "Constant":
        return node.get_data().copy()  # writable, as torch.from_numpy wants
    inputs = [_evaluate(i.get_source_output()) for i in node.inputs()]
    if kind == "Convert":
        return inputs[0].astype(np.float32)
    if kind in _ELEMENTWISE:
        return _ELEMENTWISE[kind](*inputs).astype(np.float32)
    raise DetectorError(f"IR node '{node.get_friendly_name()}': cannot evaluate a '{kind}' in a weight subgraph")


def ir_convolutions(xml: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Torch module path -> (weight [out, in / groups, kh, kw], bias [out] or None) of every IR convolution."""
    from detector.backends import openvino_core

    convs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for node in openvino_core().read_model(str(xml)).get_ordered_ops():
        if node.get_type_name() not in ("Convolution", "GroupConvolution"):
            continue
        path = node.get_friendly_name().split("/")[0].removeprefix("__module.")
        weight = _evaluate(node.input(1).get_source_output())
        # GroupConvolution weights are [groups, out / groups, in / groups, kh, kw]; torch wants them flat
        weight = weight.reshape(-1, *weight.shape[-3:])
        bias = None
        for target in node.output(0).get_target_inputs():
            add = target.get_node()
            if add.get_type_name() == "Add":
                other = add.input(1 - target.get_index()).get_source_output()
                bias = _evaluate(other).reshape(-1)  # [1, out, 1, 1] -> [out]
        convs[path] = (weight, bias)
    return convs


def _restore_bias(model: torch.nn.Module, path: str, conv: torch.nn.Conv2d, bias: np.ndarray | None) -> None:
    """Put the folded bias where the module keeps it: its own ``bias``, or its BatchNorm as identity + bias."""
    parent = model.get_submodule(path.rpartition(".")[0])
    bn = getattr(parent, "bn", None)
    if isinstance(bn, torch.nn.BatchNorm2d):
        if bias is None:
            raise DetectorError(f"IR convolution '{path}' has no bias for its BatchNorm")
        bn.weight.data.fill_(1.0)
        bn.bias.data.copy_(torch.from_numpy(bias))
        bn.running_mean.zero_()
        # float32(1 - 1e-3) + 1e-3 == 1 exactly, so BN's 1 / sqrt(var + eps) is exactly 1
        bn.running_var.fill_(1.0 - bn.eps)
    elif conv.bias is not None:
        if bias is None:
            raise DetectorError(f"IR convolution '{path}' has no bias")
        conv.bias.data.copy_(torch.from_numpy(bias))
    elif bias is not None:
        raise DetectorError(f"IR convolution '{path}' has a bias that the model has no place for")


def fill_from_ir(model: torch.nn.Module, convs: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
    """Copy the IR's convolutions into ``model`` (same architecture, unfused), BatchNorms as identity + bias."""
    torch_convs = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    if torch_convs.keys() != convs.keys():
        missing = sorted(torch_convs.keys() - convs.keys()) + sorted(convs.keys() - torch_convs.keys())
        raise DetectorError(f"the IR does not match the model: convolutions {missing[:4]} are not in both")
    for path, conv in torch_convs.items():
        weight, bias = convs[path]
        if tuple(conv.weight.shape) != weight.shape:
            raise DetectorError(
                f"IR convolution '{path}' has shape {weight.shape}, the model {tuple(conv.weight.shape)}"
            )
        conv.weight.data.copy_(torch.from_numpy(weight))
        _restore_bias(model, path, conv, bias)


def recover_weights(ir_path: str | Path, out_path: str | Path, cfg: str = "yolo11n.yaml") -> Path:
    """Rebuild ``cfg`` from an OpenVINO IR (``*_openvino_model`` folder or its ``.xml``) as a ``.pt`` at ``out_path``.

    The checkpoint loads in ``ultralytics.YOLO(out_path)`` and trains; it is written atomically.
    """
    import yaml
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    ir_path = Path(ir_path)
    xml = ir_path if ir_path.suffix == ".xml" else next(iter(sorted(ir_path.glob("*.xml"))), None)
    if xml is None or not xml.exists() or not (xml.parent / "metadata.yaml").exists():
        raise DetectorError(
            f"OpenVINO IR '{ir_path}' not found: pass an Ultralytics *_openvino_model folder (xml, bin, metadata.yaml)"
        )
    metadata = yaml.safe_load((xml.parent / "metadata.yaml").read_text())
    names = {int(k): str(v) for k, v in metadata["names"].items()}
    try:
        model = DetectionModel(cfg, nc=len(names), verbose=False)
    except Exception as e:  # Ultralytics raises several types for a bad config; all mean the same here
        raise DetectorError(
            f"model config '{cfg}' could not be built ({type(e).__name__}): use e.g. yolo11n.yaml"
        ) from None
    fill_from_ir(model, ir_convolutions(xml))
    model.names = names
    model.args = {**DEFAULT_CFG_DICT, "model": cfg, "task": "detect", "imgsz": max(metadata.get("imgsz", [640]))}
    return save_checkpoint(model, out_path, source=f"recovered by `detector recover-weights` from {xml.name}")
