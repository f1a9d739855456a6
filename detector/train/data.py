"""Training data: Ultralytics' YOLO format and ``data.yaml``, label checks, augmentation, the padded collate.

- ``load_data_yaml``: ``train``/``val`` (a folder of images, a ``.txt`` list of image paths, or a list of either)
  and ``names`` (a list, or a dict ``{id: name}``). Relative paths are resolved against ``path:`` when it is
  given (itself relative to the working directory, else to the yaml's folder), or against the yaml's folder.
  Labels sit beside the images with ``/images/`` replaced by ``/labels/`` and a ``.txt`` suffix.
- ``scan_split``: every image and label is checked once, before training. Bad items (class id out of range,
  coordinates outside [0, 1], malformed lines, corrupt or unreadable image) are skipped and counted, label
  files without an image are counted; ``ScanReport.line()`` says what was skipped and why. An image with one
  bad label line is skipped whole: training on it with the line dropped would teach that object as background.
- ``YoloDataset``: one item is a letterboxed RGB image ``[3, S, S]`` uint8 and its targets ``[n, 5]`` (class,
  x1, y1, x2, y2 in input pixels). With ``augment``: mosaic of four images (when the sampler says so), random
  scale and translation (one affine warp), HSV jitter and a horizontal flip, as Ultralytics' defaults.
- ``MosaicSampler``: shuffles, cuts the order into batches, and tells each item whether to mosaic; mosaic
  stops for the last ``close_mosaic`` epochs, so the model ends on whole, undistorted images (Ultralytics'
  ``close_mosaic``). The sampler runs in the main process, so the switch reaches persistent workers without
  restarting them. With several ranks it yields this rank's share of each global batch (``distributed.py``).
- ``collate``: targets padded to one shape ``[B, T, 5]`` with a validity mask ``[B, T]`` (``T`` = the most
  targets in any image of the batch): what the gathered assigner (``assign.py``) indexes into.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from detector.errors import DetectorError
from detector.preprocess import PAD_VALUE, letterbox_shape
from detector.train.distributed import ONE_PROCESS, Ranks, rank_share

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".dng", ".mpo", ".pfm", ".heic"}

# Ultralytics' default augmentation strengths (ultralytics/cfg/default.yaml)
HSV_GAINS = (0.015, 0.7, 0.4)  # hue, saturation, value
SCALE, TRANSLATE, FLIP_LR = 0.5, 0.1, 0.5
MIN_BOX_PX, MIN_AREA_KEPT = 2.0, 0.1  # boxes smaller than 2 px or cut to < 10% of their area are dropped


@dataclass(frozen=True)
class DataConfig:
    """A parsed ``data.yaml``: image files of each split and the class names."""

    yaml: Path
    train: list[Path]
    val: list[Path]
    names: dict[int, str]


def _names(raw, yaml_path: Path) -> dict[int, str]:
    if isinstance(raw, list):
        return {i: str(n) for i, n in enumerate(raw)}
    if isinstance(raw, dict):
        try:
            names = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            names = {}
        if sorted(names) == list(range(len(names))) and names:
            return names
    raise DetectorError(f"{yaml_path}: 'names' must be a list or a dict {{0: name, 1: name, ...}} of class names")


def _images(spec, root: Path, yaml_path: Path, key: str) -> list[Path]:
    """Image files of one split: folders (searched recursively), ``.txt`` lists of images, or image files."""
    files: list[Path] = []
    for item in spec if isinstance(spec, list) else [spec]:
        path = Path(str(item))
        path = path if path.is_absolute() else root / path
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix == ".txt" and path.is_file():
            lines = [s.strip() for s in path.read_text().splitlines() if s.strip()]
            files += [Path(s) if Path(s).is_absolute() else path.parent / s for s in lines]
        elif path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            files.append(path)
        else:
            raise DetectorError(f"{yaml_path}: '{key}: {item}' points nowhere ({path} is not a folder, list or image)")
    return files


def load_data_yaml(path: str | Path) -> DataConfig:
    """Parse an Ultralytics ``data.yaml``; see the module doc for how paths resolve."""
    import yaml

    yaml_path = Path(path)
    if not yaml_path.is_file():
        raise DetectorError(f"data '{path}' not found: pass a data.yaml with train, val and names")
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DetectorError(f"{yaml_path}: not valid YAML ({type(e).__name__})") from None
    missing = [k for k in ("train", "val", "names") if not isinstance(data, dict) or data.get(k) in (None, "", [])]
    if missing:
        raise DetectorError(f"{yaml_path}: missing {', '.join(missing)}; a data.yaml needs train, val and names")
    names = _names(data["names"], yaml_path)
    if "nc" in data and data["nc"] != len(names):
        raise DetectorError(f"{yaml_path}: nc is {data['nc']} but names has {len(names)} classes; make them agree")
    root = yaml_path.resolve().parent
    if data.get("path"):
        given = Path(str(data["path"]))
        root = given if given.is_absolute() or given.is_dir() else root / given
    return DataConfig(
        yaml_path,
        _images(data["train"], root, yaml_path, "train"),
        _images(data["val"], root, yaml_path, "val"),
        names,
    )


def label_path(image: Path) -> Path:
    """Ultralytics' convention: the last ``/images/`` of the path becomes ``/labels/``, the suffix ``.txt``."""
    parts = list(image.parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


@dataclass
class ScanReport:
    """What a split's check found: usable images, backgrounds, skipped items by reason."""

    split: str
    images: int = 0
    backgrounds: int = 0
    skipped: Counter = field(default_factory=Counter)
    orphan_labels: int = 0  # label files whose image is missing
    examples: list[str] = field(default_factory=list)  # the first few skipped items, "file: reason"

    def skip(self, path: Path, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < 3:
            self.examples.append(f"{path.name}: {detail}")

    def line(self) -> str:
        text = f"{self.split}: {self.images} images ({self.backgrounds} backgrounds)"
        if self.skipped:
            reasons = ", ".join(f"{reason} {n}" for reason, n in self.skipped.most_common())
            text += f", {sum(self.skipped.values())} skipped ({reasons}; e.g. {'; '.join(self.examples)})"
        if self.orphan_labels:
            text += f", {self.orphan_labels} label files without an image"
        return text


def parse_labels(text: str, num_classes: int) -> tuple[np.ndarray | None, str]:
    """Label file text -> ``[n, 5]`` float32 (class, cx, cy, w, h normalised), or ``(None, reason)``.

    Polygon lines (class x1 y1 x2 y2 ...: segmentation labels) are read as their bounding box.
    """
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            return None, f"malformed line|line {number}: '{line.strip()[:40]}' is not numbers"
        if len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0):
            return None, f"malformed line|line {number}: {len(values)} values, need class cx cy w h"
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            return None, f"class id out of range|line {number}: class {parts[0]}, the data has {num_classes}"
        coords = np.array(values[1:], dtype=np.float32)
        if not np.isfinite(coords).all() or coords.min() < 0 or coords.max() > 1:
            return None, f"coordinates outside [0, 1]|line {number}: {' '.join(parts[1:5])}"
        if len(coords) > 4:  # polygon -> its box, as cx cy w h
            xs, ys = coords[0::2], coords[1::2]
            coords = np.array([(xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2, np.ptp(xs), np.ptp(ys)])
        rows.append([cls, *coords])
    return np.array(rows, dtype=np.float32).reshape(-1, 5), ""


def image_size(path: Path) -> tuple[int, int] | None:
    """``(h, w)`` of a readable image, or None. PIL reads the header and checks the file's structure without
    decoding every pixel, so checking a dataset costs little."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
            w, h = im.size
        return (h, w) if min(h, w) >= 2 else None
    except Exception:  # PIL raises many types for broken files; all mean "corrupt" here
        return None


@dataclass(frozen=True)
class Item:
    image: Path
    labels: np.ndarray  # [n, 5] class, cx, cy, w, h normalised to the image


def scan_split(images: list[Path], num_classes: int, split: str) -> tuple[list[Item], ScanReport]:
    """Check every image and its labels; bad items are skipped and counted in the report, never raised."""
    report = ScanReport(split)
    items = []
    for image in images:
        if not image.is_file():
            report.skip(image, "missing image", "listed but not on disk")
            continue
        if image_size(image) is None:
            report.skip(image, "corrupt image", "cannot be read as an image")
            continue
        lp = label_path(image)
        try:
            text = lp.read_text() if lp.is_file() else ""
        except (OSError, UnicodeDecodeError) as e:
            report.skip(image, "malformed line", f"label file unreadable ({type(e).__name__})")
            continue
        labels, problem = parse_labels(text, num_classes)
        if labels is None:
            reason, detail = problem.split("|", 1)
            report.skip(image, reason, f"{lp.name} {detail}")
            continue
        report.backgrounds += len(labels) == 0
        items.append(Item(image, labels))
    folders = {label_path(i).parent for i in images}
    stems = {(label_path(i).parent, i.stem) for i in images}
    report.orphan_labels = sum(
        (folder, txt.stem) not in stems for folder in folders if folder.is_dir() for txt in folder.glob("*.txt")
    )
    report.images = len(items)
    return items, report


def load_dataset(cfg: DataConfig, split: str) -> tuple[list[Item], ScanReport]:
    """The checked items of a split; zero usable images is a one-line error."""
    items, report = scan_split(getattr(cfg, split), len(cfg.names), split)
    if not items:
        raise DetectorError(f"{cfg.yaml}: no usable images in '{split}' ({report.line()})")
    return items, report


# --- augmentation --------------------------------------------------------------------------------------------


def resize_long_side(image: np.ndarray, size: int) -> np.ndarray:
    """Scale so the longer side is ``size`` (Ultralytics' ``load_image``), keeping the aspect ratio."""
    h, w = image.shape[:2]
    r = size / max(h, w)
    if r == 1:
        return image
    return cv2.resize(image, (max(round(w * r), 1), max(round(h * r), 1)), interpolation=cv2.INTER_LINEAR)


def letterbox(image: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Square letterbox exactly as at inference (``preprocess.letterbox_shape``) -> image and targets ``[n, 5]``
    (class, x1 y1 x2 y2 in its pixels)."""
    (new_w, new_h), (top, bottom, left, right) = letterbox_shape(image.shape[:2], (size, size), 32, auto=False)
    if image.shape[:2] != (new_h, new_w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return padded, to_pixels(labels, new_w, new_h, left, top)


def to_pixels(labels: np.ndarray, w: float, h: float, left: float = 0.0, top: float = 0.0) -> np.ndarray:
    """Normalised ``[n, 5]`` class cx cy w h -> ``[n, 5]`` class x1 y1 x2 y2 in pixels of a ``w`` x ``h`` picture
    placed at ``(left, top)``."""
    cls, (cx, cy, bw, bh) = labels[:, :1], labels[:, 1:].T
    boxes = np.stack(
        ((cx - bw / 2) * w + left, (cy - bh / 2) * h + top, (cx + bw / 2) * w + left, (cy + bh / 2) * h + top), 1
    )
    return np.concatenate((cls, boxes), 1).astype(np.float32)


def random_affine(image: np.ndarray, targets: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Random scale (1 +- SCALE) about the centre and translation (+- TRANSLATE of ``size``) in one warp to
    ``size`` x ``size``; boxes follow, are clipped, and those left too small are dropped. (Ultralytics'
    ``RandomPerspective`` with its defaults: no rotation, shear or perspective.)"""
    h, w = image.shape[:2]
    s = random.uniform(1 - SCALE, 1 + SCALE)
    tx, ty = (random.uniform(0.5 - TRANSLATE, 0.5 + TRANSLATE) * size for _ in range(2))
    matrix = np.array([[s, 0, tx - s * w / 2], [0, s, ty - s * h / 2]], dtype=np.float32)  # centre -> (tx, ty)
    out = cv2.warpAffine(image, matrix, (size, size), borderValue=(PAD_VALUE,) * 3)
    boxes = targets[:, 1:] * s + np.array([tx - s * w / 2, ty - s * h / 2] * 2, dtype=np.float32)  # [n, 4]
    clipped = boxes.clip(0, size)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    bw, bh = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (bw > MIN_BOX_PX) & (bh > MIN_BOX_PX) & (bw * bh > MIN_AREA_KEPT * area)
    return out, np.concatenate((targets[keep, :1], clipped[keep]), 1)


def hsv_jitter(image: np.ndarray) -> None:
    """Random hue, saturation and value gains through lookup tables, in place (Ultralytics' ``RandomHSV``)."""
    gains = np.random.uniform(-1, 1, 3) * HSV_GAINS + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_hue = ((x * gains[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=image)


def mosaic(images: list[np.ndarray], labels: list[np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Four images (each scaled to a longer side of ``size``) around a random centre of a ``2 size`` canvas,
    as Ultralytics' ``Mosaic``: the first image's bottom-right corner at the centre, then clockwise."""
    canvas = np.full((2 * size, 2 * size, 3), PAD_VALUE, dtype=np.uint8)
    xc, yc = (int(random.uniform(size / 2, 3 * size / 2)) for _ in range(2))
    parts = []
    for k, (image, lab) in enumerate(zip(images, labels)):
        h, w = image.shape[:2]
        left = xc - w if k in (0, 2) else xc  # where the image's top-left corner goes (may be off the canvas)
        top = yc - h if k in (0, 1) else yc
        x1, y1, x2, y2 = max(left, 0), max(top, 0), min(left + w, 2 * size), min(top + h, 2 * size)
        canvas[y1:y2, x1:x2] = image[y1 - top : y2 - top, x1 - left : x2 - left]
        parts.append(to_pixels(lab, w, h, left, top))
    targets = np.concatenate(parts)
    targets[:, 1:] = targets[:, 1:].clip(0, 2 * size)
    return canvas, targets


class YoloDataset(torch.utils.data.Dataset):
    """Checked items -> ``(image [3, S, S] uint8 RGB, targets [n, 5] float32)``; see the module doc."""

    def __init__(self, items: list[Item], imgsz: int, augment: bool) -> None:
        self.items, self.imgsz, self.augment = items, imgsz, augment

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        item = self.items[index]
        image = cv2.imread(str(item.image))
        if image is None:  # checked at scan time; a file changed or vanished since is a user's error
            raise DetectorError(f"image '{item.image}' can no longer be read (it was readable when checked)")
        return image, item.labels

    def __getitem__(self, key: int | tuple[int, bool]) -> tuple[torch.Tensor, torch.Tensor]:
        index, use_mosaic = key if isinstance(key, tuple) else (key, False)
        size = self.imgsz
        if not self.augment:
            image, targets = letterbox(*self.load(index), size)
        else:
            if use_mosaic:
                picks = [index, *random.choices(range(len(self.items)), k=3)]
                loaded = [self.load(i) for i in picks]
                image, targets = mosaic(
                    [resize_long_side(im, size) for im, _ in loaded], [lb for _, lb in loaded], size
                )
            else:
                image, targets = letterbox(*self.load(index), size)
            image, targets = random_affine(image, targets, size)
            hsv_jitter(image)
            if random.random() < FLIP_LR:
                image = np.ascontiguousarray(image[:, ::-1])
                targets[:, [1, 3]] = size - targets[:, [3, 1]]
        rgb = torch.from_numpy(np.ascontiguousarray(image[..., ::-1])).permute(2, 0, 1).contiguous()  # [3, S, S]
        return rgb, torch.from_numpy(targets.reshape(-1, 5))


class MosaicSampler(torch.utils.data.Sampler):
    """Batches of ``(index, use_mosaic)`` keys: this rank's share of each global batch of ``batch`` images.

    The epoch's order is a permutation that depends only on ``seed`` and the epoch (so every rank, and a
    resumed run, cut the same one), cut into global batches of ``batch``, the last one shorter. Each rank
    takes its contiguous share of every global batch: every image once per epoch across the ranks, and the
    same number of batches on every rank. A last batch too small to give every rank an image joins the one
    before it. Mosaic until the last ``close_mosaic`` epochs; with ``epochs <= close_mosaic`` (short
    fine-tunes) it is off from the start, as in Ultralytics.
    """

    def __init__(
        self,
        size: int,
        batch: int,
        epochs: int,
        close_mosaic: int,
        seed: int = 0,
        ranks: Ranks = ONE_PROCESS,
    ) -> None:
        self.size, self.batch, self.seed, self.ranks = size, batch, seed, ranks
        self.mosaic_until = epochs - close_mosaic
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def mosaic(self) -> bool:
        return self.epoch < self.mosaic_until

    def global_batches(self) -> list[torch.Tensor]:
        """The epoch's global batches of image indices, ``[<= batch]`` each (the last may be longer, see above)."""
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        batches = list(order.split(self.batch))
        if len(batches) > 1 and len(batches[-1]) < self.ranks.world:
            batches[-2:] = [torch.cat(batches[-2:])]
        return batches

    def __len__(self) -> int:
        full, rest = divmod(self.size, self.batch)
        return full + (rest >= self.ranks.world) if full else 1

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        for keys in self.global_batches():
            yield [(i, self.mosaic) for i in rank_share(keys, self.ranks).tolist()]


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images -> ``[B, 3, S, S]`` uint8; targets padded to one shape ``[B, T, 5]`` with ``valid [B, T]``.

    ``T`` is the largest target count in the batch; padding rows are zeros and invalid. One tensor for the
    whole batch lets the assigner work on every image at once with ``torch.gather`` instead of a loop.
    """
    images = torch.stack([image for image, _ in batch])  # [B, 3, S, S]
    counts = torch.tensor([len(t) for _, t in batch])  # [B]
    width = int(counts.max()) if len(counts) else 0
    targets = torch.zeros(len(batch), width, 5)  # [B, T, 5]
    valid = torch.arange(width)[None] < counts[:, None]  # [B, T]
    if width:
        targets[valid] = torch.cat([t for _, t in batch])  # row-major mask order = image by image, in order
    return images, targets, valid
