"""interp.devices.resolve_device: the one device parser of the project."""
from __future__ import annotations

import pytest
import torch

from interp.devices import resolve_device


def test_resolve_device():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == resolve_device(" CPU ") == resolve_device(torch.device("cpu")) == "cpu"
    for bad in ("tpu", "cuda:x", "", "gpu"):
        with pytest.raises(ValueError, match=r"is not valid; use one of auto, cpu, cuda, cuda:N, mps"):
            resolve_device(bad)
    with pytest.raises(ValueError, match="'meta' is not supported; use one of auto, cpu"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda:0")
    else:
        n = torch.cuda.device_count()
        assert resolve_device("cuda:0") == "cuda:0"
        with pytest.raises(ValueError, match=f"has {n} CUDA device"):
            resolve_device(f"cuda:{n}")
