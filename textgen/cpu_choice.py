"""Load-time choices whose best value depends on the CPU (int8 weights, the onnxruntime encoder, the
fused decoding step): one rule for what each value means on a device, and for refusing a CPU-only
value elsewhere.  ``auto`` on CPU stays ``auto``: :func:`textgen.export.load_export` then times the
candidates on this machine (:mod:`textgen.runtime_choice`)."""

from __future__ import annotations

import torch

AUTO = "auto"


def resolve_cpu_choice(option: str, mode: str, *, candidates: tuple[str, ...], elsewhere: str,
                       error: type[ValueError], device: str | torch.device,
                       cpu_only: tuple[str, ...] = ()) -> str:
    """``mode`` of ``option`` (one of ``candidates`` or ``auto``) as it applies on ``device``: ``auto`` is
    kept on CPU (to be measured) and is ``elsewhere`` on any other device.  Raises ``error`` naming
    ``option`` for an unknown value, or for a value of ``cpu_only`` off the CPU."""
    modes = (*candidates, AUTO)
    if mode not in modes:
        raise error(f"`{option}` must be one of {', '.join(modes)}, got {mode!r}")
    cpu = torch.device(device).type == "cpu"
    if mode == AUTO:
        return AUTO if cpu else elsewhere
    if mode in cpu_only and not cpu:
        raise error(f"`{option}={mode}` runs on CPU only, not on device {str(device)!r}; use {elsewhere}")
    return mode
