"""The one device parser of the project: ``--device`` values, ``Zoo.load_generator(device=...)``.

    from interp.devices import resolve_device
    resolve_device("auto")      # 'cuda' when a GPU is usable, else 'cpu'
    resolve_device("cuda:1")    # 'cuda:1', or ValueError if this machine has no second GPU
    resolve_device("tpu")       # ValueError: ... use one of auto, cpu, cuda, cuda:N, mps

The result is a string that ``torch.device`` accepts and that is usable on this machine.
"""
from __future__ import annotations

import torch

__all__ = ["DEVICE_CHOICES", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_ALLOWED = ", ".join(DEVICE_CHOICES)


def resolve_device(spec: str | torch.device) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; any other value is checked and returned normalised.

    Raises ValueError naming the allowed values when ``spec`` is not a device, is of an
    unsupported type, or is not available on this machine.
    """
    if isinstance(spec, str):
        spec = spec.strip().lower()
        if spec == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {str(spec)!r} is not valid; use one of {_ALLOWED}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {str(spec)!r} is not supported; use one of {_ALLOWED}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(spec)!r} was requested but CUDA is not available here; use 'cpu'")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(spec)!r}: this machine has {count} CUDA device(s), "
                             f"use cuda:0 to cuda:{count - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(spec)!r} was requested but MPS is not available here; use 'cpu'")
    return str(dev)
