"""Letterbox and box scaling against Ultralytics' own, on fresh random frame sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ultralytics.data.augment import LetterBox
from ultralytics.utils.ops import scale_boxes as ultralytics_scale_boxes

from detector.pipeline import check_imgsz
from detector.preprocess import preprocess, scale_boxes


def ultralytics_preprocess(frames, imgsz, stride, auto):
    """What Ultralytics' predictor does: LetterBox each frame, stack, BGR->RGB, /255."""
    auto = auto and len({f.shape for f in frames}) == 1
    boxed = np.stack([LetterBox(imgsz, auto=auto, stride=stride)(image=f) for f in frames])
    x = torch.from_numpy(boxed).permute(0, 3, 1, 2).flip(1)
    return x.float() / 255


@pytest.mark.parametrize("auto", [True, False])
@pytest.mark.parametrize("imgsz", [(640, 640), (320, 320), (480, 640)])
def test_letterbox_equals_ultralytics(auto, imgsz):
    rng = np.random.default_rng()
    for _ in range(5):
        h, w = rng.integers(20, 1400, size=2)
        frame = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        ours = preprocess([frame], imgsz, 32, auto)
        theirs = ultralytics_preprocess([frame], imgsz, 32, auto)
        assert ours.shape == theirs.shape, f"frame {h}x{w}"
        assert torch.equal(ours, theirs), f"frame {h}x{w}"


def test_batch_of_mixed_sizes_uses_the_full_size(bus, zidane):
    ours = preprocess([bus, zidane], (640, 640), 32, auto=True)
    assert ours.shape == (2, 3, 640, 640)  # auto only when every frame has one shape
    assert torch.equal(ours, ultralytics_preprocess([bus, zidane], (640, 640), 32, auto=True))
    assert ours.dtype == torch.float32 and 0 <= ours.min() and ours.max() <= 1


def test_rgb_order_and_pad_value():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[..., 0] = 255  # pure blue in BGR
    x = preprocess([frame], (256, 256), 32, auto=False)[0]
    assert x[2, 128, 128] == 1 and x[0, 128, 128] == 0  # blue is channel 2 in RGB
    assert torch.allclose(x[:, 0, 0], torch.full((3,), 114 / 255))  # grey padding, top-left corner


def test_scale_boxes_equals_ultralytics():
    rng = np.random.default_rng()
    for _ in range(20):
        frame_hw = tuple(int(v) for v in rng.integers(50, 2000, size=2))
        input_hw = tuple(int(v) * 32 for v in rng.integers(5, 21, size=2))
        boxes = torch.from_numpy(rng.uniform(-20, 700, size=(50, 4)).astype(np.float32))
        boxes[:, 2:] = boxes[:, :2] + boxes[:, 2:].abs() / 3
        theirs = ultralytics_scale_boxes(input_hw, boxes.clone(), frame_hw)
        assert torch.allclose(scale_boxes(boxes, input_hw, frame_hw), theirs, atol=1e-3), (frame_hw, input_hw)


def test_imgsz_rounds_up_to_stride(capsys):
    assert check_imgsz(640, 32) == (640, 640)
    assert check_imgsz([500], 32) == (512, 512)
    assert "not a multiple of 32" in capsys.readouterr().err
    assert check_imgsz([300, 500], 32) == (320, 512)
