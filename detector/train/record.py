"""What a fine-tuning run writes about itself in ``--out``: results.csv, TensorBoard events, PNG plots.

results.csv has one row per epoch (``COLUMNS``), a resumed run continuing it: the mean loss parts of the
epoch's training batches (``box_loss``, ``cls_loss``, ``dfl_loss``, with their gains), the EMA model's
``precision``, ``recall`` (at the max-F1 confidence), ``mAP50`` and ``mAP50-95`` on val, ``lr`` at the epoch's
last batch, ``grad_norm`` (the mean norm before clipping over the epoch's optimizer steps), ``data_wait`` (the
share of the training pass spent waiting for batches), ``img_per_s`` (training images per second) and
``skipped_steps`` (batches skipped so far in this run for a non-finite loss or gradient). TensorBoard gets the same
numbers (``tensorboard --logdir DIR``). The plots are redrawn from results.csv after every epoch:
``losses.png`` (box, cls, dfl), ``map.png`` (precision, recall, mAP50, mAP50-95) and ``pr_curve.png`` (the last
validation's precision against recall at IoU 0.5, every class's detections pooled).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch

COLUMNS = [
    "epoch",
    "box_loss",
    "cls_loss",
    "dfl_loss",
    "precision",
    "recall",
    "mAP50",
    "mAP50-95",
    "lr",
    "grad_norm",
    "data_wait",
    "img_per_s",
    "skipped_steps",
]


class RunRecord:
    """``RunRecord(out, start_epoch).log(row)`` once per epoch; ``plot_pr(tp, conf, targets)`` after validation.

    results.csv keeps the rows of the first ``start_epoch`` epochs (those a resumed run continues from; none
    for a new run): an epoch logged by a run that stopped before its checkpoint was saved is run again, and
    logged once."""

    def __init__(self, out: Path, start_epoch: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.out = out
        self.csv = out / "results.csv"
        if self.csv.exists():  # rewritten beside and renamed over: a crash here loses no row
            kept = [row for row in self.rows() if row["epoch"] <= start_epoch]
            tmp = self.csv.with_suffix(".csv.tmp")
            self._write(tmp, kept, "w")
            os.replace(tmp, self.csv)
        self.tensorboard = SummaryWriter(str(out))

    def rows(self) -> list[dict[str, float]]:
        if not self.csv.exists():
            return []
        with self.csv.open() as f:
            return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]

    @staticmethod
    def _write(path: Path, rows: list[dict[str, float]], mode: str) -> None:
        header = mode == "w" or not path.exists()
        with path.open(mode, newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            if header:
                writer.writeheader()
            writer.writerows({k: f"{row[k]:.6g}" for k in COLUMNS} for row in rows)

    def log(self, row: dict[str, float]) -> None:
        self._write(self.csv, [row], "a")
        for k in COLUMNS[1:]:
            self.tensorboard.add_scalar(k, row[k], int(row["epoch"]))
        self.tensorboard.flush()
        self.plot_epochs()

    def plot_epochs(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        epochs = [r["epoch"] for r in rows]
        for name, keys in (("losses", COLUMNS[1:4]), ("map", COLUMNS[4:8])):
            fig, ax = plt.subplots(figsize=(6, 4))
            for k in keys:
                ax.plot(epochs, [r[k] for r in rows], marker="o", label=k)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
            fig.tight_layout()
            fig.savefig(self.out / f"{name}.png", dpi=100)
            plt.close(fig)

    def plot_pr(self, tp: torch.Tensor, conf: torch.Tensor, num_targets: int) -> None:
        """Precision against recall at IoU 0.5 over detections ``tp [N, T]``, ``conf [N]`` of all classes."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        hits = tp[conf.argsort(descending=True), 0].double().cumsum(0)  # [N] TPs among the best k
        precision = hits / torch.arange(1, len(hits) + 1)
        recall = hits / max(num_targets, 1)
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot(recall.numpy(), precision.numpy())
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR curve, IoU 0.5, all classes")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "pr_curve.png", dpi=100)
        plt.close(fig)

    def close(self) -> None:
        self.tensorboard.close()
