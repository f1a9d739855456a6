"""detector/metrics.py against Ultralytics' validator on fresh random inputs, and on hand-made cases whose
answers are known. The real-detection comparison (TUD-Campus) is in test_evaluate.py."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ultralytics.engine.validator import BaseValidator
from ultralytics.utils import metrics as ultralytics_metrics

from detector.metrics import (
    IOU_THRESHOLDS,
    ap_per_class,
    box_iou,
    interp,
    match_boxes,
    match_predictions,
    matched_targets,
)

VALIDATOR = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))  # all match_predictions needs of a validator


def fresh_seed() -> int:
    return int(np.random.SeedSequence().entropy % 2**31)


def crowded_image(rng: np.random.Generator, num_classes: int = 3) -> tuple[torch.Tensor, ...]:
    """GT boxes and predictions jittered around them, several per target, so that predictions compete:
    (gt_boxes [M, 4], gt_cls [M], pred_boxes [N, 4] best first, pred_cls [N], conf [N])."""
    m, n = int(rng.integers(1, 12)), int(rng.integers(0, 50))
    xy = rng.random((m, 2)) * 500
    gt = np.concatenate((xy, xy + 20 + rng.random((m, 2)) * 150), 1)
    source = rng.integers(0, m, n)
    pred = gt[source] + rng.normal(0, 12, (n, 4))
    pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
    gt_cls = rng.integers(0, num_classes, m)
    pred_cls = np.where(rng.random(n) < 0.8, gt_cls[source], rng.integers(0, num_classes, n))
    conf = rng.random(n)
    order = np.argsort(-conf)
    return (
        torch.tensor(gt, dtype=torch.float32),
        torch.tensor(gt_cls),
        torch.tensor(pred[order], dtype=torch.float32),
        torch.tensor(pred_cls[order]),
        torch.tensor(conf[order], dtype=torch.float32),
    )


def ultralytics_match(pred_boxes, pred_cls, gt_boxes, gt_cls) -> np.ndarray:
    if len(gt_cls) == 0 or len(pred_cls) == 0:
        return np.zeros((len(pred_cls), 10), dtype=bool)
    iou = ultralytics_metrics.box_iou(gt_boxes, pred_boxes)
    return BaseValidator.match_predictions(VALIDATOR, pred_cls, gt_cls, iou).numpy()


def test_box_iou_equals_ultralytics():
    seed = fresh_seed()
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(300, 2, generator=g) * 600
    boxes = torch.cat((xy, xy + torch.rand(300, 2, generator=g) * 100), 1)
    boxes[:5, 2:] = boxes[:5, :2]  # zero-area boxes too
    a, b = boxes[:120], boxes[120:]
    assert torch.equal(box_iou(a, b), ultralytics_metrics.box_iou(a, b)), f"seed {seed}"


def test_interp_equals_numpy_on_repeated_points():
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    for _ in range(100):
        xp = np.sort(rng.choice(np.linspace(0, 1, 6), rng.integers(1, 15)))  # many repeated points
        fp = rng.random(len(xp))
        x = rng.choice(np.concatenate((np.linspace(-0.2, 1.2, 29), xp)), 40)  # on the points, between, outside
        for left in (None, 0.25):
            ours = interp(torch.tensor(x), torch.tensor(xp), torch.tensor(fp), left=left).numpy()
            assert np.array_equal(ours, np.interp(x, xp, fp, left=left)), f"seed {seed}: {xp} {fp} {x}"
    xp = torch.tensor([[0.0, 0.5, 0.5, 1.0], [0.0, 0.2, 0.4, 0.4]], dtype=torch.float64)  # batched rows
    fp = torch.tensor([[1.0, 0.8, 0.3, 0.0], [0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    x = torch.tensor([0.25, 0.5, 0.7], dtype=torch.float64)
    expected = [np.interp(x.numpy(), xp[i].numpy(), fp[i].numpy()) for i in range(2)]
    assert np.array_equal(interp(x, xp, fp).numpy(), np.stack(expected))


def test_match_predictions_equals_ultralytics():
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    contested = 0
    for i in range(200):
        gt, gt_cls, pred, pred_cls, _ = crowded_image(rng)
        theirs = ultralytics_match(pred, pred_cls, gt, gt_cls)
        ours = match_predictions(pred, pred_cls, gt, gt_cls)
        assert ours.dtype == torch.bool and ours.shape == (len(pred), 10)
        assert np.array_equal(ours.numpy(), theirs), f"seed {seed} image {i}"
        # predictions of the right class over IoU 0.5 that still lost: the greedy order decided
        iou = box_iou(gt, pred)
        contested += int((((iou >= 0.5) & (gt_cls[:, None] == pred_cls)).any(0) & ~ours[:, 0]).sum())
    assert contested > 50, f"seed {seed}: too few competing predictions for the comparison to mean much"


def test_ap_per_class_equals_ultralytics():
    seed = fresh_seed()
    rng = np.random.default_rng(seed)
    tp, conf, pred_cls, target_cls = [], [], [], []
    for _ in range(150):
        gt, gt_cls, pred, cls, scores = crowded_image(rng, num_classes=5)
        tp.append(match_predictions(pred, cls, gt, gt_cls))
        conf.append(scores)
        pred_cls.append(cls)
        target_cls.append(gt_cls)
    tp, conf, pred_cls, target_cls = (torch.cat(t) for t in (tp, conf, pred_cls, target_cls))
    target_cls = target_cls[target_cls != 4]  # class 4: predictions without targets, left out of the scores
    target_cls = torch.cat((target_cls, torch.tensor([7, 7])))  # class 7: targets without predictions
    theirs = ultralytics_metrics.ap_per_class(tp.numpy(), conf.numpy(), pred_cls.numpy(), target_cls.numpy())
    _, _, p, r, f1, ap, classes = theirs[:7]
    ours = ap_per_class(tp, conf, pred_cls, target_cls)
    assert ours.classes.tolist() == classes.tolist() == [0, 1, 2, 3, 7]
    for name, a, b in (("AP", ours.ap, ap), ("P", ours.precision, p), ("R", ours.recall, r), ("F1", ours.f1, f1)):
        assert np.allclose(a.numpy(), b, atol=1e-4, rtol=0), f"seed {seed}: {name} {a} vs {b}"
    assert ours.ap[-1].eq(0).all() and ours.ap50[:-1].gt(0.1).all(), f"seed {seed}: {ours.ap}"  # not all zeros
    assert torch.allclose(ours.ap50_95, ours.ap.mean(1)) and torch.equal(ours.ap50, ours.ap[:, 0])


def test_ap_per_class_without_predictions():
    tp = torch.zeros(0, 10, dtype=torch.bool)
    ours = ap_per_class(tp, torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.tensor([0, 0, 3]))
    theirs = ultralytics_metrics.ap_per_class(tp.numpy(), np.zeros(0), np.zeros(0), np.array([0, 0, 3]))
    assert ours.classes.tolist() == [0, 3] and ours.targets.tolist() == [2, 1]
    assert ours.ap.shape == (2, 10) and not ours.ap.any() and not ours.recall.any()
    assert np.array_equal(ours.ap.numpy(), theirs[5]) and np.array_equal(ours.precision.numpy(), theirs[2])


# --- hand-made cases ----------------------------------------------------------------------------------


def test_greedy_by_confidence_not_by_iou():
    """The more confident prediction takes the target even where a later one overlaps it better."""
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    pred = torch.tensor([[0.0, 0.0, 100.0, 62.0], [0.0, 0.0, 100.0, 90.0]])  # IoU 0.62, then 0.90
    tp = match_predictions(pred, torch.tensor([0, 0]), gt, torch.tensor([0]))
    # thresholds 0.50 0.55 0.60 | 0.65 ... 0.90 | 0.95
    assert tp[0].tolist() == [True] * 3 + [False] * 7
    assert tp[1].tolist() == [False] * 3 + [True] * 6 + [False]


def test_each_target_matched_once_and_classes_kept_apart():
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0], [200.0, 0.0, 300.0, 100.0]])
    pred = torch.tensor(
        [
            [0.0, 0.0, 100.0, 100.0],  # target 0, exactly
            [2.0, 0.0, 100.0, 100.0],  # target 0 again: a duplicate, so a false positive
            [200.0, 0.0, 300.0, 100.0],  # target 1's box, but the wrong class
            [500.0, 0.0, 600.0, 100.0],  # nothing there
        ]
    )
    index = matched_targets(pred, torch.tensor([0, 0, 0, 0]), gt, torch.tensor([0, 1]))
    assert index[:, 0].tolist() == [0, -1, -1, -1]
    assert index[:, -1].tolist() == [0, -1, -1, -1]  # IoU 1.0 passes 0.95 too


def test_a_later_prediction_waits_for_an_earlier_one_that_could_take_its_target():
    """Prediction 0 prefers A but could take B; prediction 1 can only take A; prediction 2 prefers B.
    Sequentially: 0 takes A, 1 gets nothing, 2 takes B."""
    iou = torch.tensor(
        [
            [0.9, 0.8, 0.0],  # A
            [0.7, 0.0, 0.8],  # B
        ]
    )
    allowed = torch.ones(2, 3, dtype=torch.bool)
    assert match_boxes(iou, allowed, torch.tensor([0.5]))[:, 0].tolist() == [0, -1, 1]
    assert match_boxes(iou, allowed, torch.tensor([0.85]))[:, 0].tolist() == [0, -1, -1]
    assert match_boxes(iou, ~allowed, torch.tensor([0.5]))[:, 0].tolist() == [-1, -1, -1]
    assert match_boxes(iou[:0], allowed[:0], IOU_THRESHOLDS).shape == (3, 10)


@pytest.mark.parametrize(
    "tp,conf,targets,expected",
    [
        ([True], [0.9], 1, 0.995),  # perfect: Ultralytics' curve ends at precision 0 on recall 1, hence not 1.0
        ([True], [0.9], 2, 0.495),  # half the targets found, all predictions right
        ([False, True], [0.9, 0.8], 1, 0.4975),  # a false positive ranked first halves the precision
        ([False], [0.9], 1, 0.0),
        # recall exactly 17/25 = 0.68 meets the grid point 0.68 (numpy's; torch.linspace has 0.6799999999999999)
        ([True] * 17, [0.9 - i / 100 for i in range(17)], 25, 0.675),
    ],
)
def test_ap_known_values(tp, conf, targets, expected):
    n = len(tp)
    tp_matrix = torch.tensor(tp)[:, None].repeat(1, 10)
    ours = ap_per_class(tp_matrix, torch.tensor(conf), torch.zeros(n, dtype=torch.long), torch.zeros(targets))
    assert ours.ap50.item() == pytest.approx(expected, abs=1e-9)
    assert ours.ap50_95.item() == pytest.approx(expected, abs=1e-9)
    assert ours.recall.item() == pytest.approx(sum(tp) / targets, abs=1e-3)
