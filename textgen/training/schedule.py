"""Learning-rate schedules that know the run's budget (steps and/or wall time)."""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def _warmup_then(
    optimizer: Optimizer,
    progress: Callable[[int], float],
    warmup_steps: int,
    min_lr_ratio: float,
    fall: Callable[[float], float],
) -> LambdaLR:
    """Linear warmup, then ``min_lr_ratio + (1 - min_lr_ratio) * fall(done)``, ``fall`` going from 1 to 0."""
    if warmup_steps < 0 or not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        done = min(max(progress(step), 0.0), 1.0)
        return min_lr_ratio + (1.0 - min_lr_ratio) * fall(done)

    return LambdaLR(optimizer, factor)


def warmup_cosine(
    optimizer: Optimizer,
    progress: Callable[[int], float],
    warmup_steps: int = 100,
    min_lr_ratio: float = 0.1,
) -> LambdaLR:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` of the peak.

    ``progress(step)`` says how much of the run's budget is used (0..1): the larger of the share
    of ``max_steps`` and the share of ``max_time``, so a time-limited run still ends its decay.
    """
    return _warmup_then(optimizer, progress, warmup_steps, min_lr_ratio,
                        lambda done: 0.5 * (1.0 + math.cos(math.pi * done)))


def warmup_linear(
    optimizer: Optimizer,
    progress: Callable[[int], float],
    warmup_steps: int = 100,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Linear warmup over ``warmup_steps``, then the straight line that runs from the peak at the
    start of the budget to ``min_lr_ratio`` of it at the end (``progress`` as in :func:`warmup_cosine`).

    Against cosine, the rate is lower in the first half of the run and higher in the second.
    """
    return _warmup_then(optimizer, progress, warmup_steps, min_lr_ratio, lambda done: 1.0 - done)
