"""Fine-tuning across processes and machines with PyTorch's own engine: ``torch.distributed``, started by torchrun.

torchrun starts one process (a *rank*) per device and tells each its place through the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); ``start()`` joins them into one process
group: gloo on CPU, NCCL on CUDA with one device per local rank. With one process every helper here is a
no-op, so the loop in ``finetune.py`` reads the same either way. What makes N ranks train as one process:

- ``--batch`` is the global batch. Each epoch's shuffled order is cut into global batches, and each global
  batch into one contiguous share per rank (``rank_share``): every image once per epoch across the ranks,
  and the same number of batches on every rank, so no rank waits at an all-reduce that another never joins.
- The loss normaliser (the target-score sum) and the batch size are summed over the ranks
  (``sum_over_ranks``, in ``loss.py``), so each rank's loss is its share of the global batch's loss; DDP
  averages gradients over the ranks, so the loop multiplies each rank's loss by the world size.
- On accumulation batches DDP's all-reduce is skipped (``accumulating``): gradients add up locally, and are
  all-reduced once, at the batch that steps. Scaling and clipping then act on the all-reduced gradients.
- Validation is sharded without duplicates (``rank_share``) and its statistics gathered (``gather``), so every
  rank scores the whole split at once; only rank 0 writes files.
- ``check_same_weights`` compares a digest of every rank's weights and EMA after each epoch: ranks that
  drifted apart (they never should) stop the run instead of training on silently.

``launch()`` is ``detector finetune --nproc-per-node N``: torchrun started on this machine (a free port,
nothing written to disk), the same command run in each rank.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from detector.environment import CORES
from detector.errors import DetectorError

T = TypeVar("T")

# How long a rank waits at a collective for the others before it gives up. A dead rank is usually noticed
# at once (its sockets close, or torchrun's agent stops the group); this bounds the rest, e.g. a lost machine.
COLLECTIVE_TIMEOUT = timedelta(seconds=60)


@dataclass(frozen=True)
class Ranks:
    """This process's place: ``rank`` of ``world`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 prints, and writes checkpoints, results.csv, TensorBoard events and plots."""
        return self.rank == 0


ONE_PROCESS = Ranks()


def launched() -> bool:
    """Whether torchrun (or another launcher that sets ``WORLD_SIZE``) started this process."""
    return "WORLD_SIZE" in os.environ


def restarted() -> bool:
    """Whether torchrun restarted this job after a rank failed (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


def rank_device(name: str, ranks: Ranks, sync_bn: bool = False) -> torch.device:
    """``--device`` -> this rank's device (``cuda``: the local rank's GPU); one line for what cannot work."""
    if ranks.world > 1 and name.startswith("cuda:"):
        raise DetectorError(f"--device {name}: with several processes use --device cuda (one GPU per rank)")
    try:
        device = torch.device(f"cuda:{ranks.local_rank}" if name == "cuda" else name)
    except RuntimeError:
        raise DetectorError(f"--device {name}: not a device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DetectorError(f"--device {name}: CUDA is not available here; use --device cpu")
    if sync_bn and ranks.world > 1 and device.type != "cuda":
        raise DetectorError(
            "--sync-bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only); on CPU keep BatchNorm "
            "in eval mode (the default) or use --bn-train (statistics per rank)"
        )
    return device


def start(device_name: str, sync_bn: bool = False) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun set up (if any) -> this rank and its device."""
    env = os.environ
    ranks = Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    device = rank_device(device_name, ranks, sync_bn)
    if ranks.world > 1 and not dist.is_initialized():
        # Ultralytics' first import runs a barrier when a process group exists (its settings file, rank 0 first):
        # imported here, before the group, so that a rank importing it alone (unpickling last.pt) cannot hang
        import ultralytics  # noqa: F401

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            store=_store_of_this_attempt(ranks),
            rank=ranks.rank,
            world_size=ranks.world,
            timeout=COLLECTIVE_TIMEOUT,
            device_id=device if device.type == "cuda" else None,
        )
    return ranks, device


def _store_of_this_attempt(ranks: Ranks) -> dist.Store:
    """The key-value store the ranks meet through, with a prefix per torchrun attempt.

    torchrun keeps its store across restarts; without a prefix, a restarted rank could read the address a
    dead rank of the failed attempt published and fail to connect ("Connection refused"), as seen here in
    2 of 2 restarts."""
    env = os.environ
    agent_hosts_it = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"  # torchrun's agent serves the store
    store = dist.TCPStore(
        env.get("MASTER_ADDR", "127.0.0.1"),
        int(env.get("MASTER_PORT", "29500")),
        ranks.world,
        is_master=ranks.main and not agent_hosts_it,
        timeout=COLLECTIVE_TIMEOUT,
    )
    return dist.PrefixStore(f"detector/attempt_{env.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_share(keys: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous share of ``keys`` ``[K]``; shares differ in length by at most one."""
    return keys.tensor_split(ranks.world)[ranks.rank]


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over all ranks (in place; ``x`` itself with one process)."""
    if dist.is_initialized():
        dist.all_reduce(x)
    return x


def gather(x: torch.Tensor) -> torch.Tensor:
    """Every rank's ``x`` ``[N_r, ...]`` (lengths may differ), concatenated in rank order ``[sum N_r, ...]``."""
    if not dist.is_initialized():
        return x
    parts: list[torch.Tensor | None] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, x.cpu())
    return torch.cat(parts).to(x.device)


def from_rank_0(read: Callable[[], T]) -> T:
    """``read()`` on rank 0, its result sent to every rank (pickled): one answer, one file read, on rank 0's disk."""
    if not dist.is_initialized():
        return read()
    box = [read() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, 0)
    return box[0]


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """The module the loop calls: ``DistributedDataParallel(model)`` with several ranks, else ``model``.

    DDP broadcasts rank 0's weights to the others here, and later all-reduces gradients during backward.
    ``sync_bn``: trainable BatchNorms normalise with statistics over the global batch (CUDA only)."""
    if ranks.world == 1:
        return model
    if sync_bn:  # CUDA only: checked by rank_device
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the root module
    return torch.nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,  # gloo on CPU takes no device_ids
        forward_sync_buffers=False,  # BatchNorm statistics: frozen (equal), synced (equal) or see sync_buffers
    )


def accumulating(net: torch.nn.Module, stepping: bool) -> contextlib.AbstractContextManager:
    """Around forward and backward: DDP's ``no_sync()`` unless this batch ends an optimizer step."""
    if stepping or not isinstance(net, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return net.no_sync()


def sync_buffers(model: torch.nn.Module) -> None:
    """Rank 0's BatchNorm statistics to every rank (``--bn-train``: each rank moved them with its own share)."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


def check_same_weights(*models: torch.nn.Module) -> None:
    """Stop with one line unless every rank holds bit for bit the same parameters and buffers in ``models``."""
    if not dist.is_initialized():
        return
    digest = hashlib.blake2b(digest_size=16)
    for model in models:
        for value in model.state_dict().values():
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    digests: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(digests, digest.hexdigest())
    drifted = [r for r, d in enumerate(digests) if d != digests[0]]
    if drifted:
        raise DetectorError(f"the weights of rank(s) {drifted} differ from rank 0's; stopped (a bug: please report)")


def launch(argv: list[str], nproc: int, max_restarts: int) -> int:
    """Run ``python -m detector.finetune ARGV`` in ``nproc`` ranks on this machine under torchrun."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # torchrun would set 1 thread per rank with a warning; share this machine's cores between the ranks instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(CORES // nproc, 1)))
    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}", "-m", "detector.finetune"]
        + argv
    )
    try:
        run(args)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()  # the root cause; the others were stopped after it
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        print(
            f"detector: error: rank {rank} of {nproc} stopped ({how}) and the other ranks were stopped with it; "
            "run again with --resume to continue from the last finished epoch",
            file=sys.stderr,
        )
        return 1
    return 0
