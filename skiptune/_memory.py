"""Telling an allocation failure from any other error, wherever the model runs."""

from __future__ import annotations

import torch

__all__ = ["is_out_of_memory"]

_OUT_OF_MEMORY_PHRASES = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure: CUDA's and MPS's, or the CPU allocator's.

    ``torch.OutOfMemoryError`` (CUDA) is a RuntimeError too; the CPU allocator raises a plain
    RuntimeError ("DefaultCPUAllocator: can't allocate memory"), so the message decides.
    """
    if isinstance(error, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(p in text for p in _OUT_OF_MEMORY_PHRASES)
