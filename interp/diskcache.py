"""On-disk cache of expensive precomputations, keyed by model content hash and parameters.

Entries are safetensors files (tensors + string metadata; never pickles) under
``$INTERP_CACHE_DIR`` or ``~/.cache/interp``, one sub-folder per namespace::

    from interp import diskcache
    key = diskcache.make_key(diskcache.model_hash(G), {"n_samples": 10000, "seed": 0})
    tensors = diskcache.cached("ganspace", key, lambda: {"directions": ...})

Writes are atomic (temporary file + rename), so concurrent processes never read half a file.
An unreadable entry (truncated, corrupted, foreign) counts as a miss and is replaced.

The cache has a size cap, ``$INTERP_CACHE_MAX_MB`` (default 1024 MiB, 0: keep nothing): after every
save the least recently used entries (a load touches its entry) are deleted until the total fits,
so visitors choosing ever new parameters cannot fill the disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

__all__ = ["cache_dir", "cached", "enforce_cap", "load", "make_key", "max_bytes", "model_hash", "save"]

FORMAT_TAG = "interp.diskcache/1"
_NAMESPACE_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_KEY_RE = re.compile(r"[0-9a-f]{16,64}")
DEFAULT_MAX_MB = 1024
STALE_TMP_S = 3600               # a temporary file this old is left over from a crashed write


def cache_dir() -> Path:
    """The cache root: ``$INTERP_CACHE_DIR`` if set, else ``~/.cache/interp`` (read at call time)."""
    root = os.environ.get("INTERP_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "interp"


# Model hashes, memoised per module object. A tensor's `_version` grows with every in-place change,
# so a generator whose weights were modified after hashing gets a fresh hash.
_HASHES: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[int, str]]" = weakref.WeakKeyDictionary()
_HASH_LOCK = threading.Lock()


def _weights_version(module: torch.nn.Module) -> int:
    return sum(t._version for t in module.state_dict(keep_vars=True).values())


def model_hash(G: torch.nn.Module) -> str:
    """``G.content_hash()``, memoised until the weights change in place."""
    if not hasattr(G, "content_hash"):
        raise TypeError(f"model_hash needs a model with content_hash(), got {type(G).__name__}")
    version = _weights_version(G)
    with _HASH_LOCK:
        hit = _HASHES.get(G)
        if hit is not None and hit[0] == version:
            return hit[1]
    value = G.content_hash()
    with _HASH_LOCK:
        _HASHES[G] = (version, value)
    return value


def make_key(model_hash: str, params: Mapping[str, Any]) -> str:
    """A 32-hex-digit key from the model hash and JSON-able parameters (order does not matter)."""
    try:
        blob = json.dumps({"model": model_hash, "params": dict(params)}, sort_keys=True)
    except TypeError as exc:
        raise TypeError(f"cache parameters must be JSON-serialisable (numbers, strings, lists): {exc}") from None
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(namespace: str, key: str) -> Path:
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise ValueError(f"cache namespace {namespace!r} must be lowercase letters, digits, '_', '.' or '-'")
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"cache key {key!r} must be 16 to 64 hex digits (use make_key)")
    return cache_dir() / namespace / f"{key}.safetensors"


def max_bytes() -> int:
    """The cap in bytes: ``$INTERP_CACHE_MAX_MB`` MiB (read at call time; default 1024, 0 keeps nothing)."""
    raw = os.environ.get("INTERP_CACHE_MAX_MB", "").strip()
    if not raw:
        return DEFAULT_MAX_MB * 2**20
    try:
        mb = float(raw)
        if not mb >= 0 or mb == float("inf"):
            raise ValueError
    except ValueError:
        warnings.warn(f"INTERP_CACHE_MAX_MB={raw!r} is not a number of MiB >= 0; using {DEFAULT_MAX_MB}",
                      RuntimeWarning, stacklevel=2)
        return DEFAULT_MAX_MB * 2**20
    return int(mb * 2**20)


def _touch(path: Path) -> None:
    """Mark an entry as used now (its mtime is the "last used" time of the LRU order)."""
    try:
        os.utime(path)
    except OSError:  # a read-only cache still serves hits
        pass


def enforce_cap(limit: int | None = None) -> list[Path]:
    """Delete the least recently used entries until the cache holds at most ``limit`` bytes (default
    :func:`max_bytes`); returns the deleted paths. Leftover temporary files older than an hour go too."""
    limit = max_bytes() if limit is None else int(limit)
    root = cache_dir()
    if not root.is_dir():
        return []
    entries, total, removed = [], 0, []
    now = time.time()
    for path in root.glob("*/*.safetensors"):
        try:
            st = path.stat()
        except OSError:                     # removed meanwhile by another process
            continue
        if path.name.startswith(".tmp-"):
            if now - st.st_mtime > STALE_TMP_S:
                path.unlink(missing_ok=True)
            continue
        entries.append((st.st_mtime, path, st.st_size))
        total += st.st_size
    for _, path, size in sorted(entries, key=lambda e: (e[0], str(e[1]))):   # least recently used first
        if total <= limit:
            break
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:                     # e.g. open elsewhere on Windows: keep it, try the next
            continue
        total -= size
        removed.append(path)
    return removed


def load(namespace: str, key: str) -> tuple[dict[str, Tensor], dict[str, str]] | None:
    """``(tensors, metadata)`` of an entry, or None when it is missing or unreadable. A hit touches the entry."""
    from safetensors import safe_open

    path = _path(namespace, key)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            if meta.pop("_format", None) != FORMAT_TAG:
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # noqa: BLE001 - a damaged entry is a miss; it is rewritten by the next save
        return None
    _touch(path)
    return tensors, meta


def save(namespace: str, key: str, tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Write an entry atomically, then keep the cache within its cap (:func:`enforce_cap`); returns its path.

    The new entry is the most recently used one, so older entries go first; an entry bigger than the
    whole cap is not kept (and evicts nothing).
    """
    from safetensors.torch import save_file

    path = _path(namespace, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta["_format"] = FORMAT_TAG
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file(data, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    limit = max_bytes()
    if path.stat().st_size > limit:
        path.unlink(missing_ok=True)
        return path
    _touch(path)
    enforce_cap(limit)
    return path


def cached(namespace: str, key: str, compute: Callable[[], Mapping[str, Tensor]],
           metadata: Mapping[str, str] | None = None, enabled: bool = True) -> dict[str, Tensor]:
    """The entry's tensors if present, else ``compute()`` (saved when ``enabled``)."""
    if enabled:
        hit = load(namespace, key)
        if hit is not None:
            return hit[0]
    tensors = dict(compute())
    if enabled:
        try:
            save(namespace, key, tensors, metadata)
        except OSError:  # a read-only or full disk must not break the computation
            pass
    return tensors
