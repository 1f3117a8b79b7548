"""interp: interpretable GAN methods for interactive content creation (pure torch backend).

`load_generator(source)` loads a zoo id, a local checkpoint or an `hf://owner/repo/file` URL.
"""
from __future__ import annotations

__version__ = "0.1.0"


def load_generator(source: str, device: str = "cpu"):
    """Load a generator by zoo id, local path or hf:// URL (see `interp.zoo.load_generator`)."""
    from interp.zoo import load_generator as _load

    return _load(source, device=device)
