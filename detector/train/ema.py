"""EMA weights: an exponential moving average of the model, the copy that is validated and saved.

Ultralytics' schedule: ``decay = 0.9999 * (1 - exp(-updates / 2000))``, so the average follows the model
closely in the first updates and smooths more and more. Floating-point parameters and buffers (BatchNorm
statistics) are averaged with ``lerp_``, which leaves a value that did not change bit for bit unchanged
(``v * d + v * (1 - d)``, Ultralytics' form, can round): frozen layers stay exactly the pretrained ones in
the saved checkpoint.
"""

from __future__ import annotations

import copy
import math

import torch


class EMA:
    """``EMA(model)``; ``update(model)`` after every optimizer step; ``ema.model`` is the averaged copy."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        current = model.state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.lerp_(current[name].detach(), 1 - d)
