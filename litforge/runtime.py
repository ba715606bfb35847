"""Process-level settings for training on CPU.

`keep_freed_memory` is applied by `LitforgeModule.setup` when the trainer runs on CPU. Set the environment variable
`LITFORGE_MALLOC=system` to keep the C library's defaults (`keep`, the default, applies the setting).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, so their pages stay mapped once touched
TRIM_THRESHOLD = (1 << 31) - 1  # never give the heap's free top back to the kernel

_applied: bool | None = None


def malloc_choice() -> str:
    """`LITFORGE_MALLOC`: "keep" (the default) or "system"; any other value raises ValueError."""
    choice = os.environ.get("LITFORGE_MALLOC", "").strip().lower() or "keep"
    if choice not in ("keep", "system"):
        raise ValueError(f"environment variable LITFORGE_MALLOC={os.environ['LITFORGE_MALLOC']!r}: expected 'keep' "
                         "(the default: reuse freed memory) or 'system' (glibc's own settings)")
    return choice


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory PyTorch frees, so the next training step reuses it.

    A training step allocates and frees the same activations every step. With glibc's defaults, large blocks are
    mapped fresh from the kernel (and the heap is trimmed after a free), so each step touches new pages, which the
    kernel zeroes on first touch: 15k-140k page faults a step on `benchmarks/dpo_vs_trl.py`, 15-20 % of its wall
    time. With a high mmap threshold and no trimming, freed blocks go back to the heap and are reused. Peak memory
    stays the same (the same blocks are live at the worst moment); what changes is that the process's resident size
    no longer drops between steps.

    Once per process; Linux with glibc only. Returns whether the setting is in effect.
    """
    global _applied
    if _applied is not None:
        return _applied
    choice = malloc_choice()
    _applied = False
    if choice == "system" or not sys.platform.startswith("linux"):
        return _applied
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (musl and other C libraries lack it, and ignore these settings)
    except (OSError, AttributeError):
        return _applied
    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
