"""What this machine is, as far as the speed of decoding goes: the CPU, the instruction-set flags that
decide which kernels win (int8 products need VNNI to beat float; AVX-512 against AVX2), the library
versions and the thread count.  Recorded with every speed figure (``benchmarks/``) and part of the key
of the load-time choices measured on it (:mod:`textgen.runtime_choice`)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path
from typing import Any

import torch

CPUINFO = Path("/proc/cpuinfo")

#: Environment variables that narrow the instruction sets the kernels use below what the CPU has:
#: torch's own vectorised kernels, oneDNN (int8 products, recurrent layers) and MKL (float products).
#: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` makes an AVX-512
#: host decode as an AVX2-only one does.
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")

#: The CPU flags that change which decoding kernels are fastest: x86 vector widths, int8 dot products
#: (VNNI), bfloat16 and AMX tiles; on ARM, SIMD, SVE and int8 matrix products.
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
                "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp", "sve", "i8mm")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    """(model name, the kernel flags present) from /proc/cpuinfo; the platform's processor elsewhere."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), ()
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    model = fields.get("model name") or fields.get("Model") or fields.get("CPU part") or platform.machine()
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, tuple(flag for flag in KERNEL_FLAGS if flag in present)


def cpu_flags() -> list[str]:
    """The kernel flags (:data:`KERNEL_FLAGS`) this CPU has."""
    return list(_cpuinfo()[1])


def cpu_capability() -> dict[str, Any]:
    """The CPU model, its kernel flags, torch's vector capability, any narrowing of the instruction sets
    (:data:`ISA_LIMITS`), library versions and threads."""
    import onnxruntime  # imported here: only the decoding side needs it

    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "flags": list(flags),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_limits": {name: os.environ[name] for name in ISA_LIMITS if os.environ.get(name)},
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "threads": torch.get_num_threads(),
    }


def describe(capability: dict[str, Any]) -> str:
    """One line: ``AMD EPYC (avx2 fma avx512f ...), torch 2.13.0 AVX512, onnxruntime 1.x, 2 threads``."""
    flags = " ".join(capability["flags"]) or "no vector flags"
    limits = "".join(f", {name}={value}" for name, value in capability.get("isa_limits", {}).items())
    return (f"{capability['cpu']} ({flags}{limits}), torch {capability['torch']} {capability['torch_capability']}, "
            f"onnxruntime {capability['onnxruntime']}, {capability['threads']} thread(s)")


__all__ = ["ISA_LIMITS", "KERNEL_FLAGS", "cpu_capability", "cpu_flags", "describe"]
