"""The bounds every analysis checks its arguments against, and the memory check before large runs.

The same rules hold for the Python API, the CLI and the server (whose request limits, in
:mod:`whyllm.server.schemas`, are tighter still). See docs/reliability.md.
"""

from __future__ import annotations

import math
import os

import torch

from whyllm.errors import InputError

__all__ = [
    "MAX_SAMPLES", "MAX_SEED", "MAX_STEPS", "MAX_TEMPERATURE", "MIN_TEMPERATURE", "available_memory",
    "check_finite", "check_seed", "require_memory",
]

MAX_SEED = 2**63 - 2**20  # room for ``seed + row`` of every sample
MAX_STEPS = 4096  # integrated gradients' quadrature points (or gradient evaluations with steps="auto")
MAX_SAMPLES = 65536  # random ablations, noise draws or samples drawn in one call
MAX_TEMPERATURE = 1e4
MIN_TEMPERATURE = 1e-4  # below it, logits / temperature overflow float32 (use 0 for greedy)
_SHARE = 0.8  # of the available memory one run may plan to use


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` if it is an integer in ``0..MAX_SEED``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{what} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
    return seed


def check_finite(value: object, what: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False) -> float:
    """``value`` as a float if it is finite and within ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"<= {high:g}"
        bounds = " and ".join(b for b in (lo, hi) if b) or "finite"
        raise InputError(f"{what} must be a finite number {bounds}, got {value!r}")
    return float(value)


def available_memory(device: torch.device | None = None) -> int:
    """Bytes a run can still allocate: free GPU memory, or the machine's available RAM."""
    if device is not None and device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not on Linux: do not refuse on a guess
        return 2**62


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def require_memory(nbytes: float, what: str, shrink: str, device: torch.device | None = None) -> None:
    """Refuse a run whose estimate ``nbytes`` exceeds what the machine can give, saying how to shrink it."""
    avail = available_memory(device)
    if nbytes > _SHARE * avail:
        raise InputError(f"{what} needs about {_size(nbytes)} of memory but {_size(avail)} is available; "
                         f"{shrink}")
