"""`detector finetune`: fine-tune a pretrained detector on a YOLO-format dataset, the loop in plain sight.

Read ``finetune()`` top to bottom: set up (data, model, freezing, optimizer, EMA, resume), then per epoch the
training pass (forward, loss, backward, gradient scaling, clipping, optimizer step, EMA) and validation, then
the outputs. Each technique lives in its own module under ``detector/train/``:

    data.py        data.yaml, label checks, augmentation, collate -> padded targets [B, T, 5] + valid [B, T]
    prefetch.py    DataLoader settings and the device prefetcher (data_wait)
    assign.py      task-aligned assignment with torch.gather (gathered target indexing)
    loss.py        CIoU box + DFL + BCE class loss; YOLO26: one-to-many + one-to-one heads
    freeze.py      backbone freezing, BatchNorm modes, backbone gradient scaling, the freeze audit
    new_classes.py a head for the dataset's classes, matching rows kept
    ema.py         EMA weights
    validate.py    mAP50, mAP50-95 with detector/metrics.py (YOLO26: through the one-to-one head)
    record.py      results.csv, TensorBoard, plots
    checkpoint.py  best.pt / last.pt in Ultralytics' layout, written atomically

The optimizer and schedule are those Ultralytics' trainer picks for a short fine-tune (``optimizer=auto``):
AdamW with ``lr0 = 0.002 * 5 / (4 + nc)``, betas (0.9, 0.999), weight decay 5e-4 (scaled to the nominal
batch) on convolution weights only; a linear warm-up over ``min(warmup_epochs, epochs - 1)`` epochs, then
the learning rate falls linearly (or along a cosine) to ``lrf = 0.01`` of ``lr0`` by the last epoch.

``.pt`` files are Python pickles: loading one runs code from it. Only load weights you trust.
"""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path

import numpy as np
import torch

from detector.errors import DetectorError
from detector.pipeline import check_imgsz
from detector.train import distributed
from detector.train.checkpoint import save_checkpoint
from detector.train.data import MosaicSampler, YoloDataset, load_data_yaml, load_dataset
from detector.train.ema import EMA
from detector.train.freeze import (
    apply_freeze,
    freeze_audit,
    frozen_indices,
    scale_backbone_grads,
    set_train_mode,
)
from detector.train.loss import make_loss
from detector.train.new_classes import adapt_head
from detector.train.prefetch import DevicePrefetcher, make_loader
from detector.train.record import RunRecord
from detector.train.validate import validate

NOMINAL_BATCH = 64  # gradients are accumulated over batches until about this many images, then one step
WEIGHT_DECAY, LRF = 5e-4, 0.01


def load_model(weights: str, names: dict[int, str], resume: Path | None) -> tuple[torch.nn.Module, dict | None]:
    """The model to train (a head for the data's classes) and, when resuming, ``last.pt``'s training state."""
    from detector.backends import load_torch_model, resolve_weights

    if resume is None:
        return adapt_head(load_torch_model(resolve_weights(weights)), names), None

    def read() -> dict:
        if not resume.exists():
            raise DetectorError(f"--resume: no {resume} to continue from; run without --resume first")
        return torch.load(resume, map_location="cpu", weights_only=False)  # a pickle: our own run's last.pt

    ckpt = distributed.from_rank_0(read)  # the other ranks get rank 0's copy: no shared disk needed
    if not isinstance(ckpt, dict) or "train_model" not in ckpt:
        raise DetectorError(f"--resume: {resume} is not a `detector finetune` last.pt (no training state)")
    model = copy.deepcopy(ckpt["model"]).float()
    model.load_state_dict(ckpt["train_model"])
    if dict(model.names) != names:
        raise DetectorError(f"--resume: {resume} was trained on other classes than --data's; use a new --out")
    return model, ckpt


def param_groups(model: torch.nn.Module, decay: float) -> list[dict]:
    """Trainable parameters in Ultralytics' three groups: conv weights (decayed), norm weights, biases."""
    groups: list[list[torch.nn.Parameter]] = [[], [], []]
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                norm = isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
                groups[2 if name == "bias" else 1 if norm else 0].append(p)
    return [{"params": groups[0], "weight_decay": decay}, {"params": groups[1]}, {"params": groups[2]}]


def lr_at(step: int, epoch: int, lr0: float, epochs: int, warmup_steps: int, cosine: bool) -> float:
    """Learning rate of batch ``step`` (counted over the whole run) in ``epoch``: warm-up, then linear or cosine."""
    progress = epoch / epochs
    factor = (1 - math.cos(progress * math.pi)) / 2 * (LRF - 1) + 1 if cosine else (1 - progress) * (1 - LRF) + LRF
    warm = min(step / warmup_steps, 1.0) if warmup_steps else 1.0
    return lr0 * factor * warm


def save_run(path: Path, ema: EMA, epoch: int, best: float, train_state: dict | None) -> None:
    """``best.pt`` (``train_state=None``: weights only) or ``last.pt`` (+ what ``--resume`` needs).

    The saved model is the EMA copy: what Ultralytics' ``YOLO(path)`` and ``Detector(path)`` load."""
    model = copy.deepcopy(ema.model).cpu()
    save_checkpoint(model, path, epoch=epoch, best_fitness=best, updates=ema.updates, **(train_state or {}))


def finetune(
    data: str,
    weights: str,
    out: str | Path,
    epochs: int = 10,
    imgsz: int = 640,
    batch: int = 16,
    freeze: str = "backbone",
    backbone_grad_scale: float = 1.0,
    clip_norm: float = 10.0,
    workers: int = 2,
    device: str = "cpu",
    resume: bool = False,
    lr0: float | None = None,
    cos_lr: bool = False,
    warmup_epochs: float = 3.0,
    close_mosaic: int = 10,
    augment: bool = True,
    bn_train: bool = False,
    sync_bn: bool = False,
    max_bad_steps: int = 5,
    seed: int = 0,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Fine-tune; writes best.pt, last.pt, results.csv, TensorBoard events and plots into ``out``.

    Started by torchrun, each process trains its share of every global batch (``distributed.py``).
    Returns results.csv's rows, one per epoch (of earlier runs too when resuming)."""
    ranks, device = distributed.start(device, sync_bn)  # this process: rank 0 of 1 without torchrun
    try:
        return _finetune(**locals())  # every argument above, with this rank's device and place
    finally:
        distributed.stop()


def _finetune(
    data: str,
    weights: str,
    out: str | Path,
    epochs: int,
    imgsz: int,
    batch: int,
    freeze: str,
    backbone_grad_scale: float,
    clip_norm: float,
    workers: int,
    device: torch.device,
    resume: bool,
    lr0: float | None,
    cos_lr: bool,
    warmup_epochs: float,
    close_mosaic: int,
    augment: bool,
    bn_train: bool,
    sync_bn: bool,
    max_bad_steps: int,
    seed: int,
    progress: bool,
    ranks: distributed.Ranks,
) -> list[dict[str, float]]:
    from tqdm import tqdm

    # --- setup -----------------------------------------------------------------------------------------------
    out = Path(out)
    say = print if ranks.main else lambda *_: None  # rank 0 speaks for all
    torch.manual_seed(seed)  # the same start model on every rank (DDP also broadcasts rank 0's)
    if epochs < 1 or batch < 1 or clip_norm <= 0 or backbone_grad_scale < 0:
        raise DetectorError("--epochs and --batch must be at least 1, --clip-norm above 0, --backbone-grad-scale >= 0")
    if batch % ranks.world:
        raise DetectorError(f"--batch {batch} is the global batch: it must divide by the {ranks.world} processes")
    imgsz = max(check_imgsz(imgsz, 32))
    cfg = load_data_yaml(data)
    train_items, train_report = load_dataset(cfg, "train")
    val_items, val_report = load_dataset(cfg, "val")
    say(f"data: {cfg.yaml}, {len(cfg.names)} classes\n  {train_report.line()}\n  {val_report.line()}")
    if batch > len(train_items):
        raise DetectorError(f"--batch {batch} is larger than the {len(train_items)} usable training images")
    if ranks.world > 1:
        say(f"{ranks.world} processes, {batch // ranks.world} images each per batch of {batch}")

    resume = resume or distributed.from_rank_0(lambda: distributed.restarted() and (out / "last.pt").exists())
    model, ckpt = load_model(weights, cfg.names, out / "last.pt" if resume else None)
    bn_train = bn_train or sync_bn
    frozen = frozen_indices(model, freeze)
    apply_freeze(model, frozen)
    model.to(device)
    say("\n".join(freeze_audit(model, frozen, backbone_grad_scale, bn_train)))
    ema = EMA(model)  # before --sync-bn: the averaged copy, the one saved, keeps ordinary BatchNorms
    net = distributed.wrap(model, ranks, device, sync_bn)  # what the loop calls: DDP with several ranks

    random.seed(seed + ranks.rank)  # augmentation differs between ranks; loader workers are seeded from torch's
    np.random.seed(seed + ranks.rank)
    torch.manual_seed(seed + ranks.rank)
    sampler = MosaicSampler(len(train_items), batch, epochs, close_mosaic, seed, ranks)
    train_batches = DevicePrefetcher(
        make_loader(YoloDataset(train_items, imgsz, augment), batch, workers, device, sampler), device
    )
    val_shard = distributed.rank_share(torch.arange(len(val_items)), ranks).tolist()  # no image twice
    val_sampler = torch.utils.data.BatchSampler(val_shard, max(batch // ranks.world, 1), drop_last=False)
    val_batches = DevicePrefetcher(
        make_loader(YoloDataset(val_items, imgsz, augment=False), batch, workers, device, val_sampler), device
    )
    steps_per_epoch = len(train_batches)
    accumulate = max(round(NOMINAL_BATCH / batch), 1)  # counts the global batch
    lr0 = lr0 or round(0.002 * 5 / (4 + len(cfg.names)), 6)
    warmup_steps = round(min(warmup_epochs, max(epochs - 1, 0)) * steps_per_epoch)
    optimizer = torch.optim.AdamW(
        param_groups(model, WEIGHT_DECAY * batch * accumulate / NOMINAL_BATCH),
        lr=lr0,
        betas=(0.9, 0.999),
        weight_decay=0,
    )
    amp = device.type == "cuda"  # float16 autocast; the GradScaler keeps small gradients from underflowing
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loss_fn = make_loss(model, epochs)
    trainable = [p for p in model.parameters() if p.requires_grad]
    start_epoch, best_fitness = 0, -1.0
    if ckpt is not None:
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError:
            raise DetectorError(
                "--resume: --freeze differs from the run being resumed; use the same --freeze"
            ) from None
        scaler.load_state_dict(ckpt["scaler"])
        ema.model.load_state_dict(ckpt["model"].state_dict())
        ema.updates, start_epoch, best_fitness = ckpt["updates"], ckpt["epoch"] + 1, ckpt["best_fitness"]
        if start_epoch >= epochs and not distributed.restarted():  # a restart after the last save: all done
            raise DetectorError(f"--resume: {out / 'last.pt'} already ran {start_epoch} epochs; pass a larger --epochs")
        say(f"resuming from {out / 'last.pt'} at epoch {start_epoch + 1}")
    else:
        ema.model.load_state_dict(model.state_dict())  # rank 0's weights, as DDP broadcast them
    record = RunRecord(out, start_epoch) if ranks.main else None  # rank 0 writes every file
    model.args = {**model.args, "data": str(cfg.yaml), "imgsz": imgsz, "epochs": epochs, "batch": batch}
    ema.model.args = model.args

    # --- the loop --------------------------------------------------------------------------------------------
    try:  # the record is closed on every way out: TensorBoard's writer thread ends, its last events flushed
        bad_in_a_row = skipped = 0
        for epoch in range(start_epoch, epochs):
            set_train_mode(model, frozen, bn_train)  # every epoch: validation left the model in eval mode
            sampler.set_epoch(epoch)
            loss_fn.set_epoch(epoch)  # YOLO26: the one-to-many / one-to-one weights move
            loss_sum, good, norms, images_seen = torch.zeros(3, device=device), 0, [], 0
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            bar = tqdm(train_batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not (progress and ranks.main))
            for i, (images, targets, valid) in enumerate(bar):  # [B/N, 3, S, S], [B/N, T, 5], [B/N, T]: this rank's
                lr = lr_at(epoch * steps_per_epoch + i, epoch, lr0, epochs, warmup_steps, cos_lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                stepping = (i + 1) % accumulate == 0 or i + 1 == steps_per_epoch  # one step per nominal batch
                with distributed.accumulating(net, stepping):  # DDP all-reduces gradients only when stepping
                    with torch.autocast(device.type, enabled=amp):
                        loss, parts = loss_fn(net(images), targets, valid)  # this rank's share of the batch's loss
                    scaler.scale(loss * ranks.world).backward()  # x world: DDP averages the ranks' gradients
                reported = distributed.sum_over_ranks(torch.cat((parts, loss.detach()[None])))  # [4] over the ranks
                parts = reported[:3]  # the global batch's loss parts (box, cls, dfl), the same on every rank
                if not torch.isfinite(reported).all():  # every rank skips the optimizer step this batch belongs to
                    bad_in_a_row, skipped = bad_in_a_row + 1, skipped + 1
                    optimizer.zero_grad(set_to_none=True)
                    if bad_in_a_row >= max_bad_steps:
                        raise DetectorError(
                            f"the loss was not finite {bad_in_a_row} batches in a row "
                            f"(epoch {epoch + 1}, batch {i + 1}); stopped, {out / 'last.pt'} holds the last good "
                            "epoch: lower --lr0 or check the labels"
                        )
                    continue
                bad_in_a_row = 0
                if stepping:
                    scaler.unscale_(optimizer)  # true gradients, for the scaling and the norm below
                    scale_backbone_grads(model, backbone_grad_scale)
                    norm = torch.nn.utils.clip_grad_norm_(trainable, clip_norm)  # returns the norm before clipping
                    finite = bool(torch.isfinite(norm))
                    if finite:
                        norms.append(float(norm))
                    if finite or amp:  # under AMP, scaler.step itself skips non-finite gradients (and lowers the scale)
                        scaler.step(optimizer)
                    else:
                        skipped += 1
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                    if bn_train and not sync_bn:
                        distributed.sync_buffers(model)  # each rank moved BatchNorm statistics on its own share
                    ema.update(model)
                loss_sum, good = loss_sum + parts, good + 1
                images_seen += len(images) * ranks.world  # about: shares differ by one image at most
                elapsed = time.perf_counter() - start
                box, cls, dfl = (loss_sum / max(good, 1)).tolist()
                bar.set_postfix_str(
                    f"box {box:.3f} cls {cls:.3f} dfl {dfl:.3f} | {images_seen / elapsed:.1f} img/s "
                    f"| data wait {train_batches.wait_s / elapsed:.0%}"
                )
            train_s = time.perf_counter() - start
            distributed.check_same_weights(model, ema.model)

            result = validate(ema.model, val_batches)  # every rank its share, statistics gathered
            if not ranks.main:
                continue
            row = dict(zip(("box_loss", "cls_loss", "dfl_loss"), (loss_sum / max(good, 1)).tolist()))
            row |= {
                "epoch": epoch + 1,
                "precision": result.precision,
                "recall": result.recall,
                "mAP50": result.map50,
                "mAP50-95": result.map50_95,
                "lr": lr,
                "grad_norm": sum(norms) / max(len(norms), 1),
                "data_wait": train_batches.wait_s / train_s,
                "img_per_s": len(train_items) / train_s,
                "skipped_steps": skipped,
            }
            record.log(row)
            record.plot_pr(result.tp, result.conf, len(result.target_cls))
            print(
                f"epoch {epoch + 1}/{epochs}: mAP50 {result.map50:.4f} mAP50-95 {result.map50_95:.4f} "
                f"P {result.precision:.3f} R {result.recall:.3f} | {row['img_per_s']:.1f} img/s, "
                f"data wait {row['data_wait']:.1%}, grad norm {row['grad_norm']:.2f}"
            )
            if result.map50_95 > best_fitness:
                best_fitness = result.map50_95
                save_run(out / "best.pt", ema, epoch, best_fitness, None)
            save_run(
                out / "last.pt",
                ema,
                epoch,
                best_fitness,
                {"train_model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()},
            )
    finally:
        if record is not None:
            record.close()
    return record.rows() if record is not None else []
