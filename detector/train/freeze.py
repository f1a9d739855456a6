"""Backbone freezing, BatchNorm modes, backbone gradient scaling and the freeze audit.

An Ultralytics model is a ``Sequential`` of numbered modules (``model.model[i]``); the first
``len(model.yaml["backbone"])`` of them are the backbone (11 for YOLO11n), the rest the neck and the head.

- Hard freeze (``--freeze backbone`` or ``--freeze N``): ``requires_grad=False`` on every parameter of those
  modules, so they get no gradient, no optimizer state and no update (the optimizer only holds trainable
  parameters, so weight decay cannot touch them either).
- BatchNorm modes (``set_train_mode``, called at the start of every epoch because validation switches the
  model to eval): a BatchNorm in train mode normalises with the batch's statistics and moves its running
  statistics even when its parameters are frozen, so frozen modules keep theirs in eval mode: their function
  and their buffers stay bit for bit what the checkpoint had. Trainable modules keep BatchNorm in eval mode
  too by default (``bn_train=False``): the weights recovered from the INT8 export (``recover.py``) carry each
  BatchNorm as identity + bias, exact only with those running statistics, and batches of 16 on a CPU give noisy
  statistics anyway. Their affine weight and bias still train. ``bn_train=True`` lets trainable modules
  normalise with batch statistics as Ultralytics' trainer does (sensible from an official checkpoint with real
  statistics and large batches).
- Soft alternative (``--backbone-grad-scale F``): the backbone trains, its gradients multiplied by ``F``
  (``p.grad *= F``) between backward and the optimizer step: a smaller effective learning rate for the
  pretrained features than for the new head.
- The DFL layer's convolution holds the fixed bins 0 .. R - 1 that decode box distributions; it never trains
  (as in Ultralytics).
"""

from __future__ import annotations

import torch

from detector.errors import DetectorError


def backbone_depth(model: torch.nn.Module) -> int:
    """Number of backbone modules of an Ultralytics model (from its yaml)."""
    return len(model.yaml["backbone"])


def frozen_indices(model: torch.nn.Module, freeze: str) -> list[int]:
    """``--freeze`` (``backbone``, ``none`` or a count N) -> indices of the modules to freeze."""
    depth = len(model.model)
    if freeze == "none":
        return []
    if freeze == "backbone":
        return list(range(backbone_depth(model)))
    if not freeze.isdigit() or int(freeze) >= depth:
        raise DetectorError(
            f"--freeze {freeze}: this model has {depth} modules (backbone {backbone_depth(model)}); "
            f"give backbone, none or a count from 0 to {depth - 1}"
        )
    return list(range(int(freeze)))


def apply_freeze(model: torch.nn.Module, frozen: list[int]) -> None:
    """``requires_grad`` False on the frozen modules' parameters and the DFL bins, True everywhere else."""
    for i, module in enumerate(model.model):
        for name, p in module.named_parameters():
            p.requires_grad_(i not in frozen and ".dfl." not in f".{name}")


def set_train_mode(model: torch.nn.Module, frozen: list[int], bn_train: bool) -> None:
    """Train mode, with BatchNorm in eval mode in frozen modules (always) and in the others unless ``bn_train``."""
    model.train()
    for i, module in enumerate(model.model):
        if i in frozen or not bn_train:
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()


def scale_backbone_grads(model: torch.nn.Module, factor: float) -> None:
    """Multiply the backbone's gradients by ``factor`` in place (a no-op at 1 and for frozen parameters)."""
    if factor == 1.0:
        return
    for module in model.model[: backbone_depth(model)]:
        for p in module.parameters():
            if p.grad is not None:
                p.grad.mul_(factor)


def freeze_audit(model: torch.nn.Module, frozen: list[int], grad_scale: float, bn_train: bool) -> list[str]:
    """One line per module: index, part, type, parameters, trainable parameters, BatchNorm mode; then totals."""
    depth = backbone_depth(model)
    lines = [f"{'#':>3}  {'part':<8} {'module':<12} {'params':>9} {'trainable':>9}  batchnorm"]
    total = trainable = 0
    for i, module in enumerate(model.model):
        n = sum(p.numel() for p in module.parameters())
        t = sum(p.numel() for p in module.parameters() if p.requires_grad)
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules())
        bn = "-" if not has_bn else "batch stats" if bn_train and i not in frozen else "running stats (eval)"
        part = "backbone" if i < depth else "head" if i == len(model.model) - 1 else "neck"
        lines.append(f"{i:>3}  {part:<8} {type(module).__name__:<12} {n:>9,} {t:>9,}  {bn}")
        total, trainable = total + n, trainable + t
    note = f"; backbone gradients x{grad_scale:g}" if grad_scale != 1.0 else ""
    lines.append(f"trainable {trainable:,} of {total:,} parameters ({trainable / max(total, 1):.0%}){note}")
    return lines
