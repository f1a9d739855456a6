"""Prefetching loaders: worker processes decode and augment ahead, a device prefetcher copies ahead.

- ``make_loader``: a ``DataLoader`` whose workers stay alive between epochs (``persistent_workers``: no
  process start-up and dataset pickling each epoch), each keeping ``prefetch_factor`` batches ready, with
  page-locked (``pin_memory``) batches on CUDA so that the copy to the GPU can run asynchronously.
- ``DevicePrefetcher``: while the model works on batch i, batch i + 1 is already being copied to the device
  on a CUDA stream of its own (``non_blocking``), then turned from uint8 into float in [0, 1] there (a uint8
  batch is a quarter of the bytes to copy). The compute stream waits for that copy only when it needs the batch.
  On CPU there is nothing to overlap: batches are converted as they come.
- Both measure what the training step cares about: ``wait_s``, the time the loop spent blocked waiting for
  the next batch. ``data_wait`` in results.csv is its share of the epoch's time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch

from detector.environment import CORES
from detector.train.data import collate

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # images [B, 3, S, S] float, targets [B, T, 5], valid [B, T]


def worker_count(requested: int) -> int:
    """Loader workers: as asked, but no more than the CPUs this process may use."""
    return max(0, min(requested, CORES))


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch: int,
    workers: int,
    device: torch.device,
    batches: torch.utils.data.Sampler | None = None,
    prefetch_factor: int = 4,
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` with the settings above: the dataset in order in batches of ``batch``, or the batches
    of keys that ``batches`` yields (a batch sampler); ``workers=0`` loads in the training process."""
    workers = worker_count(workers)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch if batches is None else 1,
        batch_sampler=batches,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        pin_memory=device.type == "cuda",
        collate_fn=collate,
    )


class DevicePrefetcher:
    """Iterate a loader's batches on ``device``, the next one's copy overlapping the current step (CUDA)."""

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.wait_s = 0.0  # time blocked waiting for batches, in the current pass over the loader

    def __len__(self) -> int:
        return len(self.loader)

    def _to_device(self, batch: tuple[torch.Tensor, ...]) -> Batch:
        images, targets, valid = (t.to(self.device, non_blocking=True) for t in batch)
        return images.float().div_(255), targets, valid  # [B, 3, S, S] in [0, 1]

    def _next(self, batches: Iterator) -> Batch | None:
        """The next batch, already on its way to the device (on the side stream), or None at the end."""
        start = time.perf_counter()
        batch = next(batches, None)
        self.wait_s += time.perf_counter() - start
        if batch is None:
            return None
        if self.stream is None:
            return self._to_device(batch)
        with torch.cuda.stream(self.stream):
            return self._to_device(batch)

    def __iter__(self) -> Iterator[Batch]:
        self.wait_s = 0.0
        batches = iter(self.loader)
        upcoming = self._next(batches)
        while upcoming is not None:
            current = upcoming
            if self.stream is not None:
                compute = torch.cuda.current_stream(self.device)
                compute.wait_stream(self.stream)  # the GPU waits for the copy; the host does not
                for t in current:
                    t.record_stream(compute)  # the side stream's memory is in use on the compute stream now
            upcoming = self._next(batches)  # the next copy is issued before the caller's step on this batch
            yield current
