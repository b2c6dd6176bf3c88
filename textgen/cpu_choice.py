"""Load-time choices that exist on CPU only (int8 weights, the onnxruntime encoder): one rule for
what ``auto`` means and for refusing the CPU-only value on another device."""

from __future__ import annotations

import torch


def resolve_cpu_choice(option: str, mode: str, *, cpu_only: str, elsewhere: str,
                       error: type[ValueError], device: str | torch.device) -> str:
    """``mode`` of ``option`` (one of ``elsewhere``, ``cpu_only``, ``auto``) as it applies on ``device``:
    ``auto`` is ``cpu_only`` on CPU and ``elsewhere`` on any other device.  Raises ``error`` naming
    ``option`` for an unknown value, or for ``cpu_only`` off the CPU."""
    modes = (elsewhere, cpu_only, "auto")
    if mode not in modes:
        raise error(f"`{option}` must be one of {', '.join(modes)}, got {mode!r}")
    cpu = torch.device(device).type == "cpu"
    if mode == "auto":
        return cpu_only if cpu else elsewhere
    if mode == cpu_only and not cpu:
        raise error(f"`{option}={cpu_only}` runs on CPU only, not on device {str(device)!r}; use {elsewhere}")
    return mode
