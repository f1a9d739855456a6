"""`detector finetune`: the loop lowers the loss, keeps frozen layers bit for bit, resumes, survives a full disk,
writes checkpoints that Ultralytics loads and that predict as ours, scores as Ultralytics' metric code; new classes;
bad input through the command line; `detector export`.

Runs are short (coco8, imgsz 160-256, a few epochs) and start from the recovered weights/yolo11n.pt.
"""

from __future__ import annotations

import csv
import importlib.util
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED, needs_shared
from test_cli import assert_bad_input, detector
from test_parity import compare
from ultralytics import YOLO

from detector import Detector
from detector.errors import DetectorError
from detector.train.data import YoloDataset, collate, load_data_yaml, load_dataset
from detector.train.finetune import finetune
from detector.train.freeze import set_train_mode
from detector.train.loss import DetectionLoss
from detector.train.new_classes import adapt_head, class_convs
from detector.train.prefetch import DevicePrefetcher, make_loader
from detector.train.record import COLUMNS
from detector.train.validate import validate

PRETRAINED = REPO / "weights" / "yolo11n.pt"
COCO8 = SHARED / "coco8" / "data.yaml"
QUICK = dict(imgsz=192, batch=4, workers=0, lr0=5e-4, warmup_epochs=0, progress=False)


def load_pt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)  # our own test checkpoints


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Six epochs on coco8 from the recovered weights, backbone frozen, one loader worker."""
    out = tmp_path_factory.mktemp("finetune") / "run"
    rows = finetune(str(COCO8), str(PRETRAINED), out, epochs=6, **{**QUICK, "imgsz": 256, "workers": 1})
    assert len(rows) == 6
    return out


def clean_batch(imgsz: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """coco8's train images letterboxed without augmentation, as one batch."""
    items, _ = load_dataset(load_data_yaml(COCO8), "train")
    dataset = YoloDataset(items, imgsz, augment=False)
    images, targets, valid = collate([dataset[i] for i in range(len(dataset))])
    return images.float() / 255, targets, valid


def loss_of(model: torch.nn.Module, batch) -> float:
    set_train_mode(model, [], bn_train=False)  # training-mode head output, BatchNorm as in training
    images, targets, valid = batch
    with torch.no_grad():
        return float(DetectionLoss(model)(model(images), targets, valid)[0])


@needs_shared
def test_a_few_steps_lower_the_loss(run):
    from ultralytics.nn.tasks import load_checkpoint

    batch = clean_batch()
    before = loss_of(load_checkpoint(str(PRETRAINED))[0], batch)
    model = load_checkpoint(str(PRETRAINED))[0]
    model.load_state_dict(load_pt(run / "last.pt")["train_model"])
    after = loss_of(model, batch)
    assert after < 0.95 * before, f"loss {before:.3f} -> {after:.3f}: training did not lower it"


@needs_shared
def test_outputs(run):
    for name in ("best.pt", "last.pt", "results.csv", "losses.png", "map.png", "pr_curve.png"):
        assert (run / name).stat().st_size > 0, name
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    with (run / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS and [int(float(r["epoch"])) for r in rows] == list(range(1, 7))
    for r in rows:
        assert 0 <= float(r["data_wait"]) < 1 and float(r["grad_norm"]) > 0 and float(r["img_per_s"]) > 0
        assert float(r["mAP50"]) >= float(r["mAP50-95"]) > 0.1, "a pretrained model keeps scoring on coco8"
    last, best = load_pt(run / "last.pt"), load_pt(run / "best.pt")
    assert last["epoch"] == 5 and last["updates"] == 6 and "optimizer" in last and "train_model" in last
    assert "train_model" not in best, "best.pt carries weights only"
    assert abs(best["best_fitness"] - max(float(r["mAP50-95"]) for r in rows)) < 1e-5


@needs_shared
def test_frozen_layers_are_bit_identical_and_the_others_changed(run):
    pretrained = load_pt(PRETRAINED)["model"].state_dict()
    trained = load_pt(run / "last.pt")["train_model"]
    saved = load_pt(run / "best.pt")["model"].state_dict()  # the EMA copy users load
    backbone = [k for k in pretrained if int(k.split(".")[1]) < 11]
    assert any("running_var" in k for k in backbone) and any("num_batches_tracked" in k for k in backbone)
    for state in (trained, saved):
        for k in backbone:
            assert torch.equal(state[k], pretrained[k]), f"frozen {k} changed"
    head = [k for k in pretrained if int(k.split(".")[1]) >= 11 and "dfl" not in k and "weight" in k]
    changed = [k for k in head if not torch.equal(trained[k], pretrained[k])]
    assert len(changed) == len(head), f"{len(head) - len(changed)} trainable weights never changed"


@needs_shared
def test_checkpoint_loads_in_ultralytics_and_predicts_as_ours(run, bus, zidane):
    yolo = YOLO(str(run / "best.pt"))
    assert yolo.task == "detect" and yolo.names[0] == "person"
    compare(str(run / "best.pt"), yolo, [bus, zidane], min_boxes=2, imgsz=320)


@needs_shared
def test_validation_equals_ultralytics_metric_code(run):
    from ultralytics.nn.tasks import load_checkpoint
    from ultralytics.utils.metrics import ap_per_class

    model = load_checkpoint(str(run / "best.pt"))[0]
    items, _ = load_dataset(load_data_yaml(COCO8), "val")
    batches = DevicePrefetcher(
        make_loader(YoloDataset(items, 256, False), 4, 0, torch.device("cpu")), torch.device("cpu")
    )
    result = validate(model, batches)
    assert len(result.conf) > 100, "too few detections to compare"
    theirs = ap_per_class(
        result.tp.numpy(), result.conf.numpy(), result.pred_cls.numpy(), result.target_cls.numpy()
    )  # tp, fp, p, r, f1, ap, ...
    p, r, ap = theirs[2], theirs[3], theirs[5]
    assert abs(result.map50 - ap[:, 0].mean()) < 1e-4 and abs(result.map50_95 - ap.mean()) < 1e-4
    assert abs(result.precision - p.mean()) < 1e-4 and abs(result.recall - r.mean()) < 1e-4
    with (run / "results.csv").open() as f:
        best = max(csv.DictReader(f), key=lambda row: float(row["mAP50-95"]))
    assert abs(float(best["mAP50-95"]) - result.map50_95) < 1e-5, "best.pt is not the best epoch's model"


@needs_shared
def test_resume_continues_from_last(tmp_path):
    out = tmp_path / "run"
    finetune(str(COCO8), str(PRETRAINED), out, epochs=1, **QUICK)
    first = load_pt(out / "last.pt")
    rows = finetune(str(COCO8), "not-needed-when-resuming.pt", out, epochs=2, resume=True, **QUICK)
    assert [r["epoch"] for r in rows] == [1, 2]
    last = load_pt(out / "last.pt")
    assert last["epoch"] == 1 and last["updates"] == first["updates"] + 1
    assert last["optimizer"]["state"][0]["step"] == first["optimizer"]["state"][0]["step"] + 1, "optimizer restarted"
    with pytest.raises(DetectorError, match="already ran 2 epochs"):
        finetune(str(COCO8), str(PRETRAINED), out, epochs=2, resume=True, **QUICK)


@needs_shared
def test_non_finite_loss_is_skipped_then_stops_the_run(tmp_path, monkeypatch):
    real = DetectionLoss.__call__
    calls = []

    def first_nan(self, *args):
        calls.append(1)
        total, parts = real(self, *args)
        return (total * float("nan"), parts) if len(calls) == 1 else (total, parts)

    monkeypatch.setattr(DetectionLoss, "__call__", first_nan)
    rows = finetune(str(COCO8), str(PRETRAINED), tmp_path / "a", epochs=1, **{**QUICK, "batch": 1})
    assert rows[0]["skipped_steps"] == 1 and np.isfinite(rows[0]["box_loss"])

    def always_inf(self, *args):
        total, parts = real(self, *args)
        return total * float("inf"), parts

    monkeypatch.setattr(DetectionLoss, "__call__", always_inf)
    with pytest.raises(DetectorError, match="not finite 2 batches in a row"):
        finetune(str(COCO8), str(PRETRAINED), tmp_path / "b", epochs=1, max_bad_steps=2, **{**QUICK, "batch": 1})


@needs_shared
def test_full_disk_while_saving_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # epoch 1 writes best.pt and last.pt; epoch 2 finds the disk full
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(DetectorError, match="No space left on device"):
        finetune(str(COCO8), str(PRETRAINED), out, epochs=2, **QUICK)
    assert load_pt(out / "last.pt")["epoch"] == 0, "the last good checkpoint is gone"
    assert YOLO(str(out / "best.pt")).task == "detect"
    assert not list(out.glob(".*.tmp")), "a partial checkpoint was left behind"


def test_new_classes_keep_matching_rows(bus):
    from ultralytics.nn.tasks import load_checkpoint

    old = load_checkpoint(str(PRETRAINED))[0]
    new = adapt_head(old, {0: "zebra", 1: "Person", 2: "widget"})
    assert new.model[-1].nc == 3 and new.names == {0: "zebra", 1: "Person", 2: "widget"}
    assert adapt_head(old, dict(old.names)) is old, "same classes: the model is kept as it is"
    for src, dst in zip(class_convs(old), class_convs(new)):
        assert torch.equal(dst.weight[1], src.weight[0]) and torch.equal(dst.bias[0], src.bias[22])
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        old_out, new_out = old.eval()(x)[0], new.eval()(x)[0]  # [1, 4 + nc, A]
    torch.testing.assert_close(new_out[:, :4], old_out[:, :4], rtol=0, atol=1e-4)  # box branch kept
    torch.testing.assert_close(new_out[:, 4 + 1], old_out[:, 4 + 0], rtol=0, atol=1e-5)  # person kept
    torch.testing.assert_close(new_out[:, 4 + 0], old_out[:, 4 + 22], rtol=0, atol=1e-5)  # zebra kept
    assert new_out[:, 4 + 2].max() < 0.01, "a new class starts at its low prior"


@needs_shared
def test_bad_input_on_the_command_line(tmp_path):
    run = ["finetune", "--weights", str(PRETRAINED), "--imgsz", "160", "--batch", "2", "--workers", "0"]
    run += ["--out", str(tmp_path / "o")]
    (tmp_path / "keys.yaml").write_text("train: images\nnames: [a]\n")
    (tmp_path / "nowhere.yaml").write_text("train: nope\nval: nope\nnames: [a]\n")
    shutil.copytree(SHARED / "coco8", tmp_path / "c8")
    (tmp_path / "c8" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [person, car]\n")
    YOLO("yolo11n-seg.yaml").save(tmp_path / "segment.pt")
    torch.save({"weights": [1, 2, 3]}, tmp_path / "junk.pt")
    cases = [  # (arguments, words the one-line error must hold)
        ([*run, "--data", str(tmp_path / "keys.yaml")], ["missing val"]),
        ([*run, "--data", str(tmp_path / "nowhere.yaml")], ["points nowhere"]),
        ([*run, "--data", str(tmp_path / "c8" / "data.yaml")], ["no usable images", "class id"]),
        ([*run, "--data", str(COCO8), "--freeze", "99"], ["--freeze 99", "24 modules"]),
        ([*run, "--data", str(COCO8), "--batch", "100"], ["--batch 100", "4 usable"]),
        ([*run, "--data", str(COCO8), "--weights", str(tmp_path / "segment.pt")], ["not an object detector"]),
        ([*run, "--data", str(COCO8), "--weights", str(tmp_path / "junk.pt")], ["junk.pt"]),
        ([*run, "--data", str(COCO8), "--resume"], ["--resume", "last.pt"]),
    ]
    if importlib.util.find_spec("nncf") is None:
        cases.append((["export", str(PRETRAINED), "--format", "openvino", "--int8"], ["pip install nncf"]))
    with ThreadPoolExecutor(2) as pool:  # two processes at a time: most of each run is starting Python
        results = list(pool.map(lambda case: detector(*case[0]), cases))
    for (_, words), result in zip(cases, results):
        assert_bad_input(result, *words)


def test_module_entry_point_is_the_same_command():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "detector.finetune", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--backbone-grad-scale" in result.stdout and "--resume" in result.stdout


@needs_shared
@pytest.mark.parametrize("fmt, box_px, conf", [("onnx", 0.1, 1e-4), ("openvino", 2.0, 0.02)])
def test_export_gives_the_same_detections(run, tmp_path, fmt, box_px, conf, bus, zidane):
    """Square crops: the .pt's letterbox (smallest stride rectangle) and the static export's (320 x 320) are then
    the same picture, so the detections may differ only by the format's precision: ONNX Runtime computes in
    float32; OpenVINO's CPU plugin picks bf16 by itself where the CPU has it (measured here: 0.9 px, 0.008)."""
    weights = shutil.copy(run / "best.pt", tmp_path / "best.pt")
    result = detector("export", str(weights), "--format", fmt, "--imgsz", "320")
    assert result.returncode == 0, result.stderr[-800:]
    exported = tmp_path / ("best.onnx" if fmt == "onnx" else "best_openvino_model")
    assert exported.exists() and str(exported) in result.stdout
    pt, ex = Detector(str(weights), imgsz=320), Detector(str(exported), imgsz=320)
    total = 0
    for image in (bus[:810, :810], zidane[:, 280:1000]):
        a, b = pt(image)[0], ex(image)[0]
        assert len(a) == len(b) and torch.equal(a.class_id, b.class_id)
        assert (a.xyxy - b.xyxy).abs().max() < box_px and (a.confidence - b.confidence).abs().max() < conf
        total += len(a)
    assert total >= 4, "too few boxes to compare"


@needs_shared
def test_int8_dynamic_export_keeps_the_confident_detections(tmp_path, bus, zidane):
    """OpenVINO INT8 through NNCF, calibrated on coco8's val images, with a dynamic input (the way the bundled
    default is made): it runs each image at its own rect shape, as the .pt does, and the confident boxes of the
    float model come out with the same class at nearly the same place (quantisation moves scores and edges)."""
    from torchvision.ops import box_iou

    weights = shutil.copy(PRETRAINED, tmp_path / "yolo11n.pt")
    args = ["--format", "openvino", "--imgsz", "320", "--int8", "--dynamic", "--data", str(COCO8)]
    result = detector("export", str(weights), *args)
    assert result.returncode == 0, result.stderr[-800:]
    exported = tmp_path / "yolo11n_int8_openvino_model"
    pt, int8 = Detector(str(weights), imgsz=320), Detector(str(exported), imgsz=320)
    assert int8.backend.format == "openvino" and int8.backend.fixed_imgsz is None
    assert int8.preprocess([zidane]).shape[1:3] == pt.preprocess([zidane]).shape[1:3] == (192, 320)
    confident = 0
    for image in (bus, zidane):
        a, b = pt(image)[0], int8(image)[0]
        a = a[a.confidence > 0.5]
        iou = box_iou(a.xyxy, b.xyxy) * (a.class_id[:, None] == b.class_id[None])  # [A, B], same class only
        assert len(b) and (iou.max(1).values > 0.8).all(), "a confident box was lost or moved in INT8"
        confident += len(a)
    assert confident >= 3, "too few confident boxes to compare"
