"""`detector finetune` on YOLO26's end-to-end head: the run lowers the loss with the one-to-many / one-to-one
weights moving, validates through the one-to-one head as Ultralytics' code scores it, writes checkpoints that
Ultralytics loads and that predict as ours, remaps the one-to-one class branch for new classes, resumes.

No pretrained YOLO26 weights are on disk: runs start from a random-init ``yolo26n.yaml`` (coco8, imgsz 160).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED, needs_shared
from test_parity import compare
from ultralytics import YOLO
from ultralytics.nn.tasks import DetectionModel, load_checkpoint

from detector.train.checkpoint import save_checkpoint
from detector.train.data import YoloDataset, collate, load_data_yaml, load_dataset
from detector.train.finetune import finetune
from detector.train.freeze import set_train_mode
from detector.train.loss import EndToEndLoss
from detector.train.new_classes import class_convs
from detector.train.prefetch import DevicePrefetcher, make_loader
from detector.train.validate import VAL_CONF, validate

pytestmark = needs_shared

COCO8 = SHARED / "coco8" / "data.yaml"
IMGSZ = 160
QUICK = dict(imgsz=IMGSZ, batch=4, workers=0, lr0=1e-2, warmup_epochs=0, progress=False)
BACKBONE = 11  # yolo26n.yaml's backbone modules, as YOLO11n's


def load_pt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)  # our own test checkpoints


class WeightLog:
    """Records the one-to-many weight of every EndToEndLoss call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.weights: list[float] = []
        real = EndToEndLoss.__call__

        def logged(loss, *args):
            self.weights.append(loss.one_to_many_weight)
            return real(loss, *args)

        monkeypatch.setattr(EndToEndLoss, "__call__", logged)


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> Path:
    """A random-init YOLO26n with coco8's classes, woken up so that validation has detections to score, some of
    them hits: class biases from the prior (sigmoid ~1e-4, below the val confidence 0.001) to sigmoid(-6) ~ 0.0025,
    person's (the most common class) to sigmoid(-3); box weights x10, else every box is the same 4 strides square."""
    torch.manual_seed(0)
    model = DetectionModel("yolo26n.yaml", verbose=False)
    model.names, model.args = load_data_yaml(COCO8).names, {}
    head = model.model[-1]
    with torch.no_grad():
        for conv in class_convs(model):  # both branches: one-to-many and one-to-one
            conv.bias.fill_(-6.0)
            conv.bias[0] = -3.0
        for branch in (*head.cv2, *head.one2one_cv2):
            branch[-1].weight.mul_(10.0)
    return save_checkpoint(model, tmp_path_factory.mktemp("yolo26") / "yolo26n-start.pt")


@pytest.fixture(scope="module")
def run(start, tmp_path_factory) -> tuple[Path, list[float]]:
    """Three epochs on coco8, backbone frozen; and the one-to-many weight of each loss call."""
    out = tmp_path_factory.mktemp("finetune26") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        log = WeightLog(monkeypatch)
        rows = finetune(str(COCO8), str(start), out, epochs=3, **QUICK)
    assert len(rows) == 3
    return out, log.weights


def val_batches() -> DevicePrefetcher:
    items, _ = load_dataset(load_data_yaml(COCO8), "val")
    cpu = torch.device("cpu")
    return DevicePrefetcher(make_loader(YoloDataset(items, IMGSZ, False), 4, 0, cpu), cpu)


def e2e_loss_of(model: torch.nn.Module) -> float:
    """The end-to-end loss (last epoch's weights) on coco8's train images, letterboxed without augmentation."""
    items, _ = load_dataset(load_data_yaml(COCO8), "train")
    dataset = YoloDataset(items, IMGSZ, augment=False)
    images, targets, valid = collate([dataset[i] for i in range(len(dataset))])
    set_train_mode(model, [], bn_train=False)  # the training-mode head output: both branches' raw dicts
    loss = EndToEndLoss(model, epochs=3)
    loss.set_epoch(2)
    with torch.no_grad():
        return float(loss(model(images.float() / 255), targets, valid)[0])


def test_run_lowers_the_loss_moves_the_weights_and_keeps_the_backbone(run, start):
    out, weights = run
    for name in ("best.pt", "last.pt", "results.csv"):
        assert (out / name).stat().st_size > 0, name
    assert weights == pytest.approx([0.8, 0.45, 0.1]), "the one-to-many weight did not move 0.8 -> 0.1 by epoch"

    before = e2e_loss_of(load_checkpoint(str(start))[0])
    model = load_checkpoint(str(start))[0]
    model.load_state_dict(load_pt(out / "last.pt")["train_model"])
    after = e2e_loss_of(model)
    assert after < 0.95 * before, f"loss {before:.3f} -> {after:.3f}: training did not lower it"

    pretrained, trained = load_pt(start)["model"].state_dict(), load_pt(out / "last.pt")["train_model"]
    for k in pretrained:
        if int(k.split(".")[1]) < BACKBONE:
            assert torch.equal(trained[k], pretrained[k]), f"frozen {k} changed"
    one2one = [k for k in pretrained if ".one2one_cv" in k and k.endswith("weight")]
    assert one2one and all(not torch.equal(trained[k], pretrained[k]) for k in one2one), "one-to-one head untrained"


def test_validation_is_the_one_to_one_head_scored_by_ultralytics(run, tmp_path):
    """Reference: the head's own top-k (Ultralytics' end-to-end inference), Ultralytics' matching and AP."""
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class

    out, _ = run
    model = load_checkpoint(str(out / "best.pt"))[0]
    head = model.model[-1]
    result = validate(model, val_batches())
    assert not head.end2end and "postprocess" not in vars(head), "validate left the head changed"
    assert len(result.conf) > 100, "too few detections to compare"

    head.end2end = True  # Ultralytics' one-to-one inference: top-k rows [B, max_det, 6]
    validator = DetectionValidator(save_dir=tmp_path)
    stats = {"tp": [], "conf": [], "cls": [], "target_cls": []}
    with torch.no_grad():
        for images, targets, valid in val_batches():
            for rows, t, v in zip(model.eval()(images)[0], targets, valid):  # [300, 6]: x1 y1 x2 y2 conf class
                rows, gt = rows[rows[:, 4] > VAL_CONF], t[v]
                preds, truth = {"bboxes": rows[:, :4], "cls": rows[:, 5]}, {"bboxes": gt[:, 1:], "cls": gt[:, 0]}
                stats["tp"].append(validator._process_batch(preds, truth)["tp"])
                stats["conf"].append(rows[:, 4].numpy())
                stats["cls"].append(rows[:, 5].numpy())
                stats["target_cls"].append(gt[:, 0].numpy())
    tp, conf, cls, target_cls = (np.concatenate(stats[k]) for k in ("tp", "conf", "cls", "target_cls"))
    assert np.array_equal(conf, result.conf.numpy()) and np.array_equal(cls, result.pred_cls.numpy())
    assert np.array_equal(tp, result.tp.numpy()) and tp.any(), "other hits, or none: a comparison of misses"
    p, r, ap = (ap_per_class(tp, conf, cls, target_cls)[i] for i in (2, 3, 5))  # tp, fp, p, r, f1, ap, ...
    assert abs(result.map50 - ap[:, 0].mean()) < 1e-4 and abs(result.map50_95 - ap.mean()) < 1e-4
    assert abs(result.precision - p.mean()) < 1e-4 and abs(result.recall - r.mean()) < 1e-4
    with (out / "results.csv").open() as f:
        best = max(csv.DictReader(f), key=lambda row: float(row["mAP50-95"]))
    assert abs(float(best["mAP50-95"]) - result.map50_95) < 1e-5, "best.pt is not the best epoch's model"


@pytest.mark.parametrize("end2end", [True, None], ids=["one-to-one", "default"])
def test_checkpoint_loads_in_ultralytics_and_predicts_as_ours(run, end2end, bus, zidane):
    out, _ = run
    yolo = YOLO(str(out / "best.pt"))
    assert yolo.task == "detect" and yolo.names[0] == "person"
    compare(str(out / "best.pt"), yolo, [bus, zidane], min_boxes=20, imgsz=IMGSZ, conf=0.02, end2end=end2end)


def test_new_classes_remap_the_one_to_one_head_and_train(start, tmp_path):
    names = {i: n if n in ("person", "car", "dog") else f"thing{i}" for i, n in load_data_yaml(COCO8).names.items()}
    data = tmp_path / "data.yaml"
    root = SHARED / "coco8" / "images"
    data.write_text(f"train: {root / 'train'}\nval: {root / 'val'}\nnames: {list(names.values())}\n")
    finetune(str(data), str(start), tmp_path / "run", epochs=1, **QUICK)

    last = load_pt(tmp_path / "run" / "last.pt")
    assert last["model"].names == names
    old, new = load_pt(start)["model"].model[-1].one2one_cv3, last["train_model"]
    for level, branch in enumerate(old):
        weight = new[f"model.23.one2one_cv3.{level}.2.weight"]  # [80, C, 1, 1] after one step
        start_weight = branch[2].weight  # [80, C, 1, 1]
        assert (weight[0] - start_weight[0]).abs().max() < 0.05, "person's row was not kept"
        assert (weight[1] - start_weight[1]).abs().max() > 0.5 * start_weight[1].abs().max(), "thing1 kept a row"
        assert weight[1].abs().max() < 0.05, "a renamed class did not start from zero weights"
        assert weight[1].abs().max() > 0, "a new class's row never trained"


def test_resume_continues_with_the_weights_of_its_epoch(run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(run[0], out)
    first = load_pt(out / "last.pt")
    log = WeightLog(monkeypatch)
    rows = finetune(str(COCO8), "not-needed-when-resuming.pt", out, epochs=4, resume=True, **QUICK)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert log.weights == pytest.approx([0.1]), "the resumed epoch's loss weights restarted"
    last = load_pt(out / "last.pt")
    assert last["epoch"] == 3 and last["updates"] == first["updates"] + 1
    assert last["optimizer"]["state"][0]["step"] == first["optimizer"]["state"][0]["step"] + 1, "optimizer restarted"
