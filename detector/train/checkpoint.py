"""Checkpoints in Ultralytics' ``.pt`` layout, written atomically, so ``ultralytics.YOLO(path)`` loads ours.

``.pt`` files are Python pickles: loading one runs code from it. Only load checkpoints you trust.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from detector.errors import DetectorError


def save_checkpoint(model: torch.nn.Module, path: str | Path, **fields: Any) -> Path:
    """Save ``model`` (an Ultralytics ``DetectionModel`` with ``args`` and ``names``) as a checkpoint at ``path``.

    The defaults are those of a finished, stripped Ultralytics checkpoint (no optimizer, no EMA, epoch -1);
    ``fields`` add keys or override them (``epoch``, ``optimizer``, ``ema``, ...). The file is written to a
    temporary name beside ``path`` and renamed over it: a crash or a full disk never leaves half a checkpoint,
    and the previous file at ``path`` survives until the new one is complete.
    """
    import ultralytics

    ckpt = {
        "date": datetime.now().astimezone().isoformat(),
        "version": ultralytics.__version__,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": -1,
        "best_fitness": None,
        "model": model,
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": dict(model.args),
        **fields,
    }
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise DetectorError(f"checkpoint '{path}' cannot be written ({e.strerror}); choose another path") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(ckpt, f)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is readable like any file torch.save writes
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DetectorError(
                f"checkpoint '{path}' could not be written ({e.strerror}); nothing was changed"
            ) from None
        raise
    return path
