"""The disk cache stays within its size cap: least recently used entries out, a load touches its entry."""
from __future__ import annotations

import os
import time

import pytest
import torch

from interp import diskcache

MB = 2**20


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("INTERP_CACHE_MAX_MB", raising=False)
    return tmp_path / "cache"


def _key(i: int) -> str:
    return diskcache.make_key("model", {"i": i})


def _put(namespace: str, i: int, age_s: float, mb: float = 0.25):
    """An entry of about ``mb`` MiB whose last use was ``age_s`` seconds ago."""
    path = diskcache.save(namespace, _key(i), {"x": torch.full((int(mb * MB) // 4,), float(i))})
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _total(root) -> int:
    return sum(p.stat().st_size for p in root.glob("*/*.safetensors"))


def test_default_cap_and_environment(monkeypatch):
    monkeypatch.delenv("INTERP_CACHE_MAX_MB", raising=False)
    assert diskcache.max_bytes() == 1024 * MB
    monkeypatch.setenv("INTERP_CACHE_MAX_MB", "2.5")
    assert diskcache.max_bytes() == int(2.5 * MB)
    monkeypatch.setenv("INTERP_CACHE_MAX_MB", "0")
    assert diskcache.max_bytes() == 0
    for bad in ("lots", "-3", "nan", "inf"):
        monkeypatch.setenv("INTERP_CACHE_MAX_MB", bad)
        with pytest.warns(RuntimeWarning, match="INTERP_CACHE_MAX_MB"):
            assert diskcache.max_bytes() == 1024 * MB


def test_least_recently_used_entries_go_first(cache, monkeypatch):
    # four entries of ~0.25 MiB in two namespaces, used 400, 300, 200, 100 s ago; the cap counts them all
    paths = [_put("ganspace" if i % 2 else "sefa", i, age) for i, age in enumerate((400, 300, 200, 100))]
    assert all(p.is_file() for p in paths)
    assert diskcache.load("sefa", _key(0)) is not None        # a load makes #0 the most recently used
    monkeypatch.setenv("INTERP_CACHE_MAX_MB", "0.9")          # room for three of the five entries
    new = _put("sefa", 4, 0)                                  # saving enforces the cap
    assert new.is_file() and paths[0].is_file()               # the new entry and the one just loaded stay
    assert not paths[1].exists() and not paths[2].exists()    # the two least recently used went
    assert paths[3].is_file()
    assert _total(cache) <= 0.9 * MB
    assert diskcache.load("ganspace", _key(1)) is None        # an evicted entry is a miss ...
    calls = []
    out = diskcache.cached("ganspace", _key(1), lambda: calls.append(1) or {"x": torch.ones(2)})
    assert calls == [1] and torch.equal(out["x"], torch.ones(2))   # ... recomputed and saved again


def test_many_new_parameters_never_exceed_the_cap(cache, monkeypatch):
    """A visitor asking for ever new parameters (custom layer ranges x counts): the disk use stays bounded."""
    monkeypatch.setenv("INTERP_CACHE_MAX_MB", "1")
    for i in range(12):
        diskcache.cached("ganspace", _key(i), lambda: {"x": torch.zeros(int(0.3 * MB) // 4)})
        assert _total(cache) <= 1 * MB
    kept = sorted(cache.glob("*/*.safetensors"))
    assert 1 <= len(kept) <= 3
    assert (cache / "ganspace" / f"{_key(11)}.safetensors") in kept          # the newest survives


def test_an_entry_bigger_than_the_cap_is_not_kept(cache, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_MAX_MB", "0.1")
    small = _put("sefa", 0, 10, mb=0.05)
    calls = []
    value = diskcache.cached("sefa", _key(1), lambda: calls.append(1) or {"x": torch.zeros(int(0.5 * MB) // 4)})
    assert value["x"].numel() == int(0.5 * MB) // 4                       # the caller still gets its result
    assert not (cache / "sefa" / f"{_key(1)}.safetensors").exists()
    assert small.is_file()                                               # and evicts nothing for it
    monkeypatch.setenv("INTERP_CACHE_MAX_MB", "0")
    diskcache.enforce_cap()
    assert list(cache.glob("*/*.safetensors")) == []                     # 0 keeps nothing


def test_leftover_temporary_files_are_removed(cache):
    _put("sefa", 0, 0)
    stale = cache / "sefa" / ".tmp-crashed.safetensors"
    fresh = cache / "sefa" / ".tmp-writing.safetensors"
    for path, age in ((stale, 2 * diskcache.STALE_TMP_S), (fresh, 1)):
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - age, time.time() - age))
    diskcache.enforce_cap()
    assert not stale.exists() and fresh.exists()                         # a write in progress is left alone
