"""Freezing: which modules, requires_grad, BatchNorm modes, backbone gradient scaling, the audit; and a run
where frozen modules stay bit for bit while trainable BatchNorms use batch statistics (``bn_train``)."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, SHARED, needs_shared

from detector.errors import DetectorError
from detector.train.finetune import finetune
from detector.train.freeze import (
    apply_freeze,
    backbone_depth,
    freeze_audit,
    frozen_indices,
    scale_backbone_grads,
    set_train_mode,
)

PRETRAINED = REPO / "weights" / "yolo11n.pt"


@pytest.fixture
def model():
    from ultralytics.nn.tasks import load_checkpoint

    return load_checkpoint(str(PRETRAINED))[0]


def batchnorms(module: torch.nn.Module) -> list[torch.nn.BatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_which_modules(model):
    assert backbone_depth(model) == 11 and len(model.model) == 24
    assert frozen_indices(model, "backbone") == list(range(11))
    assert frozen_indices(model, "3") == [0, 1, 2]
    assert frozen_indices(model, "none") == [] == frozen_indices(model, "0")
    assert frozen_indices(model, "23") == list(range(23))
    for bad in ("24", "99", "-1", "neck"):
        with pytest.raises(DetectorError, match=f"--freeze {bad}: this model has 24 modules"):
            frozen_indices(model, bad)


def test_requires_grad_and_batchnorm_modes(model):
    frozen = frozen_indices(model, "backbone")
    apply_freeze(model, frozen)
    for i, module in enumerate(model.model):
        for name, p in module.named_parameters():
            assert p.requires_grad == (i >= 11 and "dfl" not in name), f"model.{i}.{name}"
    set_train_mode(model, frozen, bn_train=True)
    assert model.training
    for i, module in enumerate(model.model):
        assert all(bn.training == (i >= 11) for bn in batchnorms(module)), f"module {i}"
    set_train_mode(model, frozen, bn_train=False)
    assert model.model[16].training and not any(bn.training for bn in batchnorms(model))


def test_backbone_grad_scale(model):
    apply_freeze(model, [])
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    scale_backbone_grads(model, 0.1)
    for i, module in enumerate(model.model):
        for p in module.parameters():
            if p.requires_grad:
                assert torch.allclose(p.grad, torch.full_like(p, 0.1 if i < 11 else 1.0)), f"module {i}"


def test_audit_counts_trainable_parameters(model):
    frozen = frozen_indices(model, "backbone")
    apply_freeze(model, frozen)
    lines = freeze_audit(model, frozen, grad_scale=1.0, bn_train=False)
    assert len(lines) == 1 + 24 + 1
    assert "backbone" in lines[1] and "running stats" in lines[1] and "head" in lines[24]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert lines[-1].startswith(f"trainable {trainable:,} of {total:,}")
    assert lines[1].split()[4] == "0", "a frozen module has no trainable parameters"


@needs_shared
def test_frozen_modules_stay_bit_identical_while_trainable_batchnorms_move(tmp_path):
    out = tmp_path / "run"
    finetune(
        str(SHARED / "coco8" / "data.yaml"),
        str(PRETRAINED),
        out,
        epochs=1,
        imgsz=160,
        batch=2,
        freeze="4",
        bn_train=True,
        workers=0,
        warmup_epochs=0,
        progress=False,
    )
    before = torch.load(PRETRAINED, map_location="cpu", weights_only=False)["model"].state_dict()
    after = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["train_model"]
    for k, v in before.items():
        index = int(k.split(".")[1])
        if index < 4:
            assert torch.equal(after[k], v), f"frozen {k} changed"
        elif k.endswith("running_mean") or (k.endswith(".weight") and "dfl" not in k):
            assert not torch.equal(after[k], v), f"trainable {k} did not change"
