"""Training data: data.yaml parsing, label checks with their report, augmentation geometry, the padded collate."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import SHARED, needs_shared

from detector.errors import DetectorError
from detector.preprocess import preprocess
from detector.train.data import (
    MosaicSampler,
    YoloDataset,
    collate,
    label_path,
    load_data_yaml,
    load_dataset,
    scan_split,
)
from detector.train.distributed import Ranks
from detector.train.prefetch import DevicePrefetcher, make_loader


def write_image(path: Path, h: int = 120, w: int = 160, rect: tuple[int, int, int, int] | None = None) -> Path:
    """A black image, with a white rectangle (x1, y1, x2, y2) when given."""
    image = np.zeros((h, w, 3), np.uint8)
    if rect:
        x1, y1, x2, y2 = rect
        image[y1:y2, x1:x2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


def write_labels(image: Path, text: str) -> None:
    lp = label_path(image)
    lp.parent.mkdir(parents=True, exist_ok=True)
    lp.write_text(text)


def test_data_yaml_paths_and_names(tmp_path):
    for split in ("train", "val"):
        write_image(tmp_path / "ds" / "images" / split / "a.jpg")
    (tmp_path / "ds" / "list.txt").write_text("images/val/a.jpg\n")
    # no path: -> relative to the yaml's folder; names as a list
    (tmp_path / "ds" / "data.yaml").write_text("train: images/train\nval: list.txt\nnames: [cat, dog]\n")
    cfg = load_data_yaml(tmp_path / "ds" / "data.yaml")
    assert cfg.train == [tmp_path / "ds" / "images" / "train" / "a.jpg"]
    assert cfg.val == [tmp_path / "ds" / "images" / "val" / "a.jpg"]
    assert cfg.names == {0: "cat", 1: "dog"}
    # path: relative to the yaml's folder when not a folder from here; names as a dict; val as a list
    (tmp_path / "other.yaml").write_text(
        "path: ds\ntrain: images/train\nval: [images/val, images/train]\nnames: {0: cat, 1: dog}\n"
    )
    cfg = load_data_yaml(tmp_path / "other.yaml")
    assert len(cfg.val) == 2 and cfg.names == {0: "cat", 1: "dog"}
    assert label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")


@pytest.mark.parametrize(
    "text, words",
    [
        ("train: a\nval: a\n", ["missing names"]),
        ("val: a\nnames: [x]\n", ["missing train"]),
        ("train: nowhere\nval: nowhere\nnames: [x]\n", ["points nowhere"]),
        ("train: .\nval: .\nnames: {a: x}\n", ["names"]),
    ],
)
def test_data_yaml_errors(tmp_path, text, words):
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DetectorError) as e:
        load_data_yaml(tmp_path / "data.yaml")
    for word in words:
        assert word in str(e.value)


def test_label_check_report_on_a_broken_dataset(tmp_path):
    images = tmp_path / "images" / "train"
    good = write_image(images / "good.jpg")
    write_labels(good, "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.05 0.05\n")
    write_image(images / "background.jpg")  # no label file: a background, not an error
    polygon = write_image(images / "polygon.jpg")
    write_labels(polygon, "1 0.1 0.2 0.3 0.2 0.3 0.6\n")  # a segment: read as its box
    bad_class = write_image(images / "bad_class.jpg")
    write_labels(bad_class, "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    bad_coords = write_image(images / "bad_coords.jpg")
    write_labels(bad_coords, "0 0.5 0.5 1.4 0.2\n")
    malformed = write_image(images / "malformed.jpg")
    write_labels(malformed, "0 0.5 0.5 0.2\n")
    not_numbers = write_image(images / "not_numbers.jpg")
    write_labels(not_numbers, "person 0.5 0.5 0.2 0.2\n")
    corrupt = images / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 this is not a jpeg at all" * 10)
    write_labels(corrupt, "0 0.5 0.5 0.2 0.2\n")
    write_labels(images / "orphan.jpg", "0 0.5 0.5 0.2 0.2\n")  # label without image
    listed = sorted(images.glob("*.jpg")) + [images / "missing.jpg"]

    items, report = scan_split(listed, 2, "train")
    assert sorted(i.image.name for i in items) == ["background.jpg", "good.jpg", "polygon.jpg"]
    assert report.images == 3 and report.backgrounds == 1 and report.orphan_labels == 1
    assert report.skipped == {
        "class id out of range": 1,
        "coordinates outside [0, 1]": 1,
        "malformed line": 2,
        "corrupt image": 1,
        "missing image": 1,
    }
    line = report.line()
    assert "3 images (1 backgrounds), 6 skipped" in line and "1 label files without an image" in line
    by_name = {i.image.name: i.labels for i in items}
    np.testing.assert_allclose(by_name["polygon.jpg"], [[1, 0.2, 0.4, 0.2, 0.4]], atol=1e-6)
    assert by_name["background.jpg"].shape == (0, 5)


def test_zero_usable_images_is_an_error(tmp_path):
    image = write_image(tmp_path / "images" / "a.jpg")
    write_labels(image, "5 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("train: images\nval: images\nnames: [a]\n")
    with pytest.raises(DetectorError, match="no usable images in 'train'.*class id out of range 1"):
        load_dataset(load_data_yaml(tmp_path / "data.yaml"), "train")


def test_collate_pads_targets_to_one_shape():
    images = [torch.full((3, 64, 64), i, dtype=torch.uint8) for i in range(3)]
    targets = [
        torch.tensor([[1.0, 1, 2, 3, 4], [2, 5, 6, 7, 8]]),
        torch.zeros(0, 5),
        torch.tensor([[3.0, 9, 9, 10, 10]]),
    ]
    batch, padded, valid = collate(list(zip(images, targets)))
    assert batch.shape == (3, 3, 64, 64) and batch.dtype == torch.uint8
    assert padded.shape == (3, 2, 5) and valid.shape == (3, 2)
    assert valid.tolist() == [[True, True], [False, False], [True, False]]
    assert torch.equal(padded[0], targets[0]) and torch.equal(padded[2, 0], targets[2][0])
    assert not padded[~valid].any(), "padding rows are zeros"
    _, empty, empty_valid = collate([(images[1], targets[1])] * 2)
    assert empty.shape == (2, 0, 5) and empty_valid.shape == (2, 0)


@needs_shared
def test_val_images_are_the_inference_letterbox():
    """Validation sees exactly what `Detector` feeds the model (same letterbox, same pixels)."""
    cfg = load_data_yaml(SHARED / "coco8" / "data.yaml")
    items, _ = load_dataset(cfg, "val")
    dataset = YoloDataset(items, 320, augment=False)
    for i, item in enumerate(items):
        image, targets = dataset[i]
        frame = cv2.imread(str(item.image))
        expected = preprocess([frame], (320, 320), 32, auto=False)[0]  # [3, 320, 320] float in [0, 1]
        assert torch.equal(image, (expected * 255).round().to(torch.uint8))
        h, w = frame.shape[:2]
        r = 320 / max(h, w)
        sizes = (targets[:, 3:] - targets[:, 1:3]) / r  # back to frame pixels
        np.testing.assert_allclose(sizes, item.labels[:, 3:] * [w, h], rtol=0.02, atol=1.0)


def box_mask(targets: torch.Tensor, size: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    for _, x1, y1, x2, y2 in targets.round().long().tolist():
        mask[y1:y2, x1:x2] = True
    return mask


@pytest.mark.parametrize("use_mosaic", [False, True])
def test_augmented_boxes_follow_the_pixels(tmp_path, monkeypatch, use_mosaic):
    """White rectangles on black: after scale, translation, mosaic and flips, the targets must cover the white
    pixels, and the grey padding and black background must stay outside them. (HSV jitter is switched off
    here: it moves the grey padding's brightness towards the white's; it does not move pixels.)"""
    monkeypatch.setattr("detector.train.data.hsv_jitter", lambda image: None)
    rect = (30, 20, 110, 90)  # on a 160 x 120 image
    image = write_image(tmp_path / "images" / "a.jpg", rect=rect)
    write_labels(image, f"0 {(rect[0] + rect[2]) / 320} {(rect[1] + rect[3]) / 240} {80 / 160} {70 / 120}\n")
    items, _ = scan_split([image], 1, "train")
    dataset = YoloDataset(items * 4, 256, augment=True)
    random.seed(0)
    np.random.seed(0)
    for _ in range(12):
        picture, targets = dataset[(0, use_mosaic)]
        bright = picture.float().mean(0).numpy() > 200  # white; padding is 114, background 0
        if bright.sum() < 50:  # scaled and shifted out of view
            continue
        boxes = box_mask(targets, 256)
        iou = (bright & boxes).sum() / (bright | boxes).sum()
        assert iou > 0.85, f"boxes do not follow the picture (IoU {iou:.2f})"


def keys_of(sampler: MosaicSampler) -> list[tuple[int, bool]]:
    return [key for batch in sampler for key in batch]


def test_mosaic_closes_for_the_last_epochs():
    sampler = MosaicSampler(6, batch=4, epochs=5, close_mosaic=2, seed=3)
    flags = []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        assert [len(b) for b in sampler] == [4, 2] and len(sampler) == 2
        keys = keys_of(sampler)
        assert sorted(i for i, _ in keys) == list(range(6))
        flags.append({m for _, m in keys})
    assert flags == [{True}, {True}, {True}, {False}, {False}]
    short = MosaicSampler(6, batch=4, epochs=3, close_mosaic=10)  # fewer epochs than close_mosaic: never mosaic
    assert not any(m for _, m in keys_of(short))
    sampler.set_epoch(1)
    again = MosaicSampler(6, batch=4, epochs=5, close_mosaic=2, seed=3)
    again.set_epoch(1)
    assert list(sampler) == list(again), "an epoch's order must not depend on what ran before (resume)"


@pytest.mark.parametrize(("size", "batch", "world"), [(16, 16, 2), (37, 8, 2), (33, 8, 4), (50, 12, 3), (17, 8, 2)])
def test_ranks_share_every_batch_and_see_each_image_once(size, batch, world):
    """Across the ranks: each image once per epoch, the single process's global batches (a last batch too
    small for every rank joins the one before), the same number of batches on every rank, a new order each
    epoch."""
    rng = np.random.default_rng()
    seed, epoch = (int(x) for x in rng.integers(0, 1000, 2))
    ranks = [Ranks(r, world) for r in range(world)]
    samplers = [MosaicSampler(size, batch, 3, 0, seed, ranks=r) for r in ranks]
    single = MosaicSampler(size, batch, 3, 0, seed)
    for s in [*samplers, single]:
        s.set_epoch(epoch)
    per_rank = [list(s) for s in samplers]  # [world][steps] batches of keys
    assert {len(batches) for batches in per_rank} == {len(samplers[0])}, "ranks must run the same number of steps"
    assert all(len(b) >= 1 for batches in per_rank for b in batches), "a rank without an image would stall DDP"
    seen = [i for batches in per_rank for b in batches for i, _ in b]
    assert sorted(seen) == list(range(size)), "every image exactly once per epoch across the ranks"
    merged = [sum((batches[k] for batches in per_rank), []) for k in range(len(samplers[0]))]  # global batches
    whole = list(single)
    if size % batch >= world or size % batch == 0:
        assert merged == whole, "N ranks must see the single process's batches, in order"
    else:  # the short last batch joined the one before
        assert merged[:-1] == whole[:-2] and merged[-1] == whole[-2] + whole[-1]
    for s in samplers:
        s.set_epoch(epoch + 1)
    assert [list(s) for s in samplers] != per_rank, "each epoch must be shuffled anew"


@needs_shared
@pytest.mark.parametrize("workers", [0, 1])
def test_prefetcher_gives_float_batches_and_measures_waiting(workers):
    cfg = load_data_yaml(SHARED / "coco8" / "data.yaml")
    items, _ = load_dataset(cfg, "val")
    dataset = YoloDataset(items, 160, augment=False)
    loader = make_loader(dataset, 2, workers, torch.device("cpu"))
    assert loader.persistent_workers == (workers > 0) and not loader.pin_memory
    batches = DevicePrefetcher(loader, torch.device("cpu"))
    seen = list(batches)
    assert len(seen) == 2 and batches.wait_s > 0
    images, targets, valid = seen[0]
    assert images.dtype == torch.float32 and images.shape == (2, 3, 160, 160)
    assert torch.equal(images, torch.stack([dataset[0][0], dataset[1][0]]).float() / 255)
    assert targets.shape[:2] == valid.shape and int(valid.sum()) == len(dataset[0][1]) + len(dataset[1][1])
