"""Our detection loss against ultralytics.utils.loss.v8DetectionLoss / E2ELoss on the same batch.

Same predictions, same targets (Ultralytics' batch format for theirs, padded pixel boxes for ours): the total,
each part and the gradients with respect to the head's outputs agree within 1e-4 relative. Batches: real
coco8 images with their labels through a random-init and a pretrained (recovered) YOLO11n, fresh random head
outputs and targets, images without labels, a batch without any, and YOLO26's end-to-end head.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, SHARED, needs_shared
from ultralytics.cfg import DEFAULT_CFG_DICT
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import IterableSimpleNamespace
from ultralytics.utils.loss import E2ELoss, v8DetectionLoss

from detector.preprocess import letterbox_shape, preprocess
from detector.train.loss import DetectionLoss, EndToEndLoss

RTOL = 1e-4


def seeds(n: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence().generate_state(n)]


def make_model(cfg: str = "yolo11n.yaml") -> DetectionModel:
    model = DetectionModel(cfg, verbose=False).train()
    model.args = IterableSimpleNamespace(**DEFAULT_CFG_DICT)  # Ultralytics' loss reads its gains from here
    return model


def padded_targets(batch: dict[str, torch.Tensor], batch_size: int, hw: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Ultralytics' batch (image index, class, normalised cx cy w h) -> targets ``[B, T, 5]`` in input pixels and
    ``valid [B, T]``, each image's boxes in their order (what our collate will produce)."""
    index = batch["batch_idx"].long()  # [N]
    counts = torch.bincount(index, minlength=batch_size)  # [B]
    t = int(counts.max()) if len(index) else 0
    slot = torch.arange(len(index)) - (counts.cumsum(0) - counts)[index]  # [N] position within its image
    h, w = hw
    cxcywh = batch["bboxes"] * torch.tensor([w, h, w, h], dtype=torch.float32)  # [N, 4] pixels
    xyxy = torch.cat((cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2), 1)
    targets = torch.zeros(batch_size, t, 5)
    targets[index, slot] = torch.cat((batch["cls"].view(-1, 1), xyxy), 1)
    valid = torch.zeros(batch_size, t, dtype=torch.bool)
    valid[index, slot] = True
    return targets, valid


def coco8_batch() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The 8 coco8 images letterboxed to 640x640 and their labels in Ultralytics' batch format."""
    images, rows = [], []
    for i, path in enumerate(sorted((SHARED / "coco8" / "images").glob("*/*.jpg"))):
        frame = cv2.imread(str(path))
        images.append(frame)
        (new_w, new_h), (top, _, left, _) = letterbox_shape(frame.shape[:2], (640, 640), 32, auto=False)
        label_file = path.parent.parent.parent / "labels" / path.parent.name / f"{path.stem}.txt"
        labels = np.loadtxt(label_file, ndmin=2)  # [n, 5] class cx cy w h, normalised to the frame
        xywh = labels[:, 1:] * [new_w, new_h, new_w, new_h] + [left, top, 0, 0]  # letterboxed input pixels
        rows += [[i, c, *(box / 640)] for c, box in zip(labels[:, 0], xywh)]
    rows = torch.tensor(rows, dtype=torch.float32)
    batch = {"batch_idx": rows[:, 0], "cls": rows[:, 1:2], "bboxes": rows[:, 2:]}
    return preprocess(images, (640, 640), 32, auto=False), batch


def random_head_outputs(batch_size: int, imgsz: int, reg_max: int, rng: np.random.Generator) -> dict:
    """Fresh random raw head outputs for a 3-level, 80-class head: box logits, class logits, feature maps."""
    sizes = [imgsz // s for s in (8, 16, 32)]
    anchors = sum(s * s for s in sizes)
    boxes = torch.from_numpy(rng.normal(0.0, 2.0, (batch_size, 4 * reg_max, anchors))).float()
    scores = torch.from_numpy(rng.normal(-3.0, 2.0, (batch_size, 80, anchors))).float()
    feats = [torch.zeros(batch_size, 1, s, s) for s in sizes]
    return {"boxes": boxes.requires_grad_(), "scores": scores.requires_grad_(), "feats": feats}


def random_labels(batch_size: int, max_targets: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    counts = rng.integers(0, max_targets + 1, size=batch_size)
    counts[0] = max(counts[0], 1)
    n = int(counts.sum())
    centre = rng.uniform(0.05, 0.95, (n, 2))
    size = np.exp(rng.uniform(np.log(0.005), np.log(0.8), (n, 2)))
    return {
        "batch_idx": torch.from_numpy(np.repeat(np.arange(batch_size), counts)).float(),
        "cls": torch.from_numpy(rng.integers(0, 80, (n, 1))).float(),
        "bboxes": torch.from_numpy(np.concatenate([centre, size], 1)).float(),
    }


def assert_same_loss(ours, theirs, leaves: list[torch.Tensor], what: str) -> None:
    """Totals, parts and gradients with respect to the head outputs ``leaves``, within RTOL."""
    (total, parts), (their_parts, their_items) = ours, theirs
    their_total = their_parts.sum()
    torch.testing.assert_close(total, their_total, rtol=RTOL, atol=0, msg=f"{what}: total")
    torch.testing.assert_close(parts, torch.stack(list(their_items.values())), rtol=RTOL, atol=1e-7, msg=what)
    ours_grad = torch.autograd.grad(total, leaves, retain_graph=True)
    their_grad = torch.autograd.grad(their_total, leaves, retain_graph=True)
    for i, (g, tg) in enumerate(zip(ours_grad, their_grad)):
        atol = RTOL * float(tg.abs().max())  # gradients near zero: relative to the largest one
        torch.testing.assert_close(g, tg, rtol=RTOL, atol=atol, msg=f"{what}: gradients of output {i}")


def compare_v8(model, preds: dict, batch: dict, batch_size: int, imgsz: int, what: str) -> tuple:
    targets, valid = padded_targets(batch, batch_size, (imgsz, imgsz))
    ours = DetectionLoss(model)(preds, targets, valid)
    theirs = v8DetectionLoss(model)(preds, batch)
    assert_same_loss(ours, theirs, [preds["boxes"], preds["scores"]], what)
    return ours


@needs_shared
@pytest.mark.parametrize("weights", ["random", "pretrained"])
def test_coco8_batch(weights):
    model = make_model()
    if weights == "pretrained":
        from ultralytics.nn.tasks import load_checkpoint

        model.load_state_dict(load_checkpoint(REPO / "weights" / "yolo11n.pt")[0].state_dict())
    x, batch = coco8_batch()
    preds = model(x)  # training mode: the raw head dict
    total, parts = compare_v8(model, preds, batch, len(x), 640, f"coco8, {weights} weights")
    assert (parts > 0).all(), f"a loss part is zero: {parts}"


def test_random_batches():
    model = make_model()  # only its head's settings are used: nc 80, reg_max 16, strides 8 16 32
    box_loss = 0.0
    for seed in seeds(3):
        rng = np.random.default_rng(seed)
        for batch_size, imgsz, max_targets in ((1, 320, 3), (4, 640, 25), (8, 320, 60)):
            preds = random_head_outputs(batch_size, imgsz, 16, rng)
            batch = random_labels(batch_size, max_targets, rng)
            what = f"random batch {batch_size} at {imgsz}, seed {seed}"
            box_loss += float(compare_v8(model, preds, batch, batch_size, imgsz, what)[1][0])
    assert box_loss > 0, "no foreground anchor in any batch: nothing compared"


def test_batch_without_labels():
    model = make_model()
    preds = random_head_outputs(2, 320, 16, np.random.default_rng(seeds(1)[0]))
    empty = {"batch_idx": torch.zeros(0), "cls": torch.zeros(0, 1), "bboxes": torch.zeros(0, 4)}
    _, parts = compare_v8(model, preds, empty, 2, 320, "no labels")
    assert parts[0] == 0 and parts[2] == 0 and parts[1] > 0


def test_yolo26_end_to_end_head():
    model = make_model("yolo26n.yaml")
    model.args.epochs = 10
    theirs_fn, ours_fn = E2ELoss(model), EndToEndLoss(model, epochs=10)
    x = torch.rand(2, 3, 320, 320)
    preds = model(x)  # {"one2many": {...}, "one2one": {...}}, reg_max 1: an L1 distance loss, no DFL
    assert model.model[-1].reg_max == 1
    (seed,) = seeds(1)
    batch = random_labels(2, 20, np.random.default_rng(seed))
    targets, valid = padded_targets(batch, 2, (320, 320))
    leaves = [preds[head][out] for head in ("one2many", "one2one") for out in ("boxes", "scores")]
    for epoch in (0, 4, 9):  # the one-to-many weight moves from 0.8 to 0.1
        theirs_fn.updates = epoch - 1
        theirs_fn.update()
        ours_fn.epoch = epoch
        ours = ours_fn(preds, targets, valid)
        assert_same_loss(ours, theirs_fn(preds, batch), leaves, f"yolo26 end-to-end, epoch {epoch}, seed {seed}")
        assert ours[1][0] > 0, f"epoch {epoch}, seed {seed}: no foreground anchor"
    assert ours_fn.one_to_many_weight == pytest.approx(0.1)
