"""Hostile input through the public API: every case gets a clear message, and the server keeps serving.

Numbers (NaN, infinity, huge, negative, fractional, text where a number belongs) on every numeric
parameter of /generate, /use_sample, /explore_find_directions, /explore_render, /explore_apply and
/explore_grid; hostile files for /recipe_open and /explore_import_directions (another model's, wrong
shapes, NaN values, huge declared sizes in the safetensors header, unknown layers and units).
After each case the same session makes a normal request, which must succeed.

gradio_client (through httpx) refuses to write NaN or infinity into JSON; a hostile caller is not so
polite, so those cases are sent with httpx allowed to write them (the server's JSON parser reads them).
"""
from __future__ import annotations

import json
import math
import re
import struct

import pytest
from conftest import app_env, serve_demo
import torch
from safetensors import safe_open
from safetensors.torch import save_file

NAN, INF = math.nan, math.inf
ZEROS = [0.0] * 10
CLEAR = "must be|greater than maximum value|less than minimum value"   # ours, or Gradio's bounds check


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory, tiny_checkpoint):
    import app
    from interp.zoo import Zoo

    tmp = tmp_path_factory.mktemp("hostile")
    mp = app_env(tmp)
    zoo = Zoo.from_file(root=tmp)                   # no built-in weights there: only the tiny model is usable
    zoo.add_user_models(str(tiny_checkpoint))
    try:
        with serve_demo(app.build_demo(zoo, "cpu")) as url:   # show_error as app.py: unexpected errors show text
            yield url, tmp
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def session(hostile_app):
    """One visitor's session with a current image and directions (SeFa, 3 sliders)."""
    from gradio_client import Client

    url, tmp = hostile_app
    client = Client(url, verbose=False, download_files=str(tmp / "downloads"))
    client.predict("tiny32", 3, 0.7, 1, api_name="/generate")
    client.predict("tiny32", "SeFa", "all", 0, 0, 3, "", False, api_name="/explore_find_directions")
    return client


@pytest.fixture()
def nan_json(monkeypatch):
    """Let httpx write NaN and infinity into request bodies, as a hostile client could."""
    import httpx._content

    dumps = httpx._content.json_dumps
    monkeypatch.setattr(httpx._content, "json_dumps", lambda obj, **kw: dumps(obj, **{**kw, "allow_nan": True}))


def _refused(client, args, api_name: str, match: str) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    message = str(info.value)
    assert "Traceback" not in message and "/tmp/" not in message and len(message) < 1000, message
    assert re.search(match, message, re.IGNORECASE), message
    return message


def _still_serving(client) -> None:
    """A normal request in the same session works after the hostile one."""
    _, current, summary = client.predict("tiny32", 3, 0.7, 1, api_name="/generate")
    assert summary.startswith("Image: seed 3, psi 0.70 from model tiny32") and current


# ----------------------------------------------------------------------------------------------------
# Numbers


def _numbers(label: str, api_name: str, make, values) -> list:
    return [pytest.param(api_name, make(v), rf"{label} must be|{CLEAR}", id=f"{api_name[1:]}-{label}={v!r}")
            for v in values]


HOSTILE = [NAN, INF, "abc"]
NUMBER_CASES = (
    _numbers("Seed", "/generate", lambda v: ("tiny32", v, 0.7, 1), HOSTILE + [-INF, 1.5, 2**80])
    + _numbers("Truncation psi", "/generate", lambda v: ("tiny32", 0, v, 1), HOSTILE + [1e308, -0.5])
    + _numbers("Number of samples", "/generate", lambda v: ("tiny32", 0, 0.7, v), HOSTILE + [2.5, 10**9])
    + _numbers("Sample", "/use_sample", lambda v: ("tiny32", 0, 0.7, 2, v), HOSTILE + [1.5, 3])
    + _numbers("Number of directions", "/explore_find_directions",
               lambda v: ("tiny32", "SeFa", "all", 0, 0, v, "", False), HOSTILE + [0, 10**9])
    + _numbers("First ws row", "/explore_find_directions",
               lambda v: ("tiny32", "SeFa", "custom", v, 1, 2, "", False), HOSTILE + [0.5, 10**18])
    + _numbers("Slider #0", "/explore_render", lambda v: ("tiny32", v, *ZEROS[1:]), HOSTILE + [-INF, 1e308])
    + _numbers("Slider #9", "/explore_apply", lambda v: ("tiny32", *ZEROS[1:], v), HOSTILE)
    + _numbers("Direction", "/explore_grid", lambda v: ("tiny32", v, 2.0, 3, 1), HOSTILE + [0.5, 3])
    + _numbers("Largest strength", "/explore_grid", lambda v: ("tiny32", 0, v, 3, 1), HOSTILE + [1e6])
    + _numbers("Number of strengths", "/explore_grid", lambda v: ("tiny32", 0, 2.0, v, 1), [NAN, 10**9])
    + _numbers("Other samples", "/explore_grid", lambda v: ("tiny32", 0, 2.0, 3, v), [INF, -1])
)


@pytest.mark.parametrize("api_name, args, match", NUMBER_CASES)
def test_hostile_numbers(session, nan_json, api_name, args, match):
    _refused(session, args, api_name, match)
    _still_serving(session)


def test_out_of_range_inputs_log_one_line_not_a_traceback(session, capfd, caplog):
    with caplog.at_level("WARNING", logger="interp.app"):
        _refused(session, ("tiny32", 0, 0.7, 10**6), "/generate", "greater than maximum value")   # Gradio's check
        _refused(session, ("tiny32", "PCA", "all", 0, 0, 3, "", False), "/explore_find_directions",
                 "not in the list of choices|not in")                                            # a Radio choice
    assert "Traceback" not in capfd.readouterr().err
    assert caplog.text.count("input refused") == 2
    _still_serving(session)


# ----------------------------------------------------------------------------------------------------
# Files


def _read(path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _rewrite(src, dst, tensors=None, drop=(), **meta):
    """A copy of the safetensors file ``src`` with some tensors replaced (or dropped) and metadata changed."""
    t, m = _read(src)
    t.update(tensors or {})
    for k in drop:
        t.pop(k, None)
    m.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()})
    save_file(t, str(dst), metadata=m)
    return dst


def _raw(dst, header: dict, data: bytes = b"\0" * 64, header_len: int | None = None):
    """A hand-written safetensors file: 8-byte little-endian header length, JSON header, data."""
    head = json.dumps(header).encode()
    dst.write_bytes(struct.pack("<Q", len(head) if header_len is None else header_len) + head + data)
    return dst


def _huge_header(meta: dict[str, str], name: str) -> dict:
    """One tensor declared as 10^9 x 512 floats (2 TB) over 64 bytes of data."""
    return {"__metadata__": meta, name: {"dtype": "F32", "shape": [10**9, 512], "data_offsets": [0, 4 * 512 * 10**9]}}


@pytest.fixture(scope="module")
def recipe_files(tmp_path_factory, tiny_generator):
    from interp import diskcache
    from interp.edit import DirectionEdit, Latent, Recipe, UnitEdit
    from interp.models.stylegan2 import Generator, GeneratorConfig

    G = tiny_generator
    tmp = tmp_path_factory.mktemp("recipes")
    rows = tuple(range(G.num_ws))
    d = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(0))
    good = Recipe(Latent.from_seed(G, "tiny32", 3, 0.7), (DirectionEdit(d, "w", rows, 1.0, 0.5, "d", "sefa"),))
    src = good.save(tmp / "good.safetensors")
    t, m = _read(src)
    edits = json.loads(m["edits"])
    unit = Recipe(good.latent, (UnitEdit("b8.conv0", (0, 1)),)).save(tmp / "unit.safetensors")
    ut, um = _read(unit)
    unit_edits = json.loads(um["edits"])
    torch.manual_seed(1)
    other = Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=32, mapping_layers=2, channel_base=128,
                                      channel_max=16)).eval()
    def tensors(name, **replaced):                     # the good recipe with some tensors replaced
        return _rewrite(src, tmp / f"{name}.safetensors", {k.replace("_", "."): v for k, v in replaced.items()})

    def edit(name, base=src, base_edits=edits, **changes):  # ... with its first edit's metadata changed
        return _rewrite(base, tmp / f"{name}.safetensors", edits=[{**base_edits[0], **changes}])

    def z_edit(name, **origin):                        # a z-space edit on a seed latent with this origin
        return _rewrite(src, tmp / f"{name}.safetensors", origin={"kind": "seed", "psi": 0.7, **origin},
                        edits=[{**edits[0], "space": "z"}])

    def unit_edit(name, **changes):
        return edit(name, base=unit, base_edits=unit_edits, **changes)

    res, nan_ws = G.img_resolution, torch.full((G.num_ws, G.w_dim), NAN)
    files = {
        "good": src,
        "another-model": Recipe(Latent.from_seed(other, "tiny32", 3, 0.7)).save(tmp / "other.safetensors"),
        "ws-wrong-shape": tensors("ws_shape", latent_ws=torch.zeros(G.num_ws + 1, G.w_dim)),
        "ws-wrong-width": tensors("ws_width", latent_ws=torch.zeros(G.num_ws, 7)),
        "ws-flat": tensors("ws_flat", latent_ws=torch.zeros(G.w_dim)),
        "ws-missing": _rewrite(src, tmp / "ws_missing.safetensors", drop=["latent.ws"]),
        "ws-nan": tensors("ws_nan", latent_ws=nan_ws),
        "ws-huge": tensors("ws_huge", latent_ws=torch.full((G.num_ws, G.w_dim), 1e38)),
        "styles-wrong-size": tensors("styles", latent_styles=torch.zeros(5)),
        "direction-nan": tensors("dir_nan", edits_0_direction=torch.full((G.w_dim,), NAN)),
        "direction-wrong-size": tensors("dir_size", edits_0_direction=torch.ones(G.w_dim + 3)),
        "direction-zero": tensors("dir_zero", edits_0_direction=torch.zeros(G.w_dim)),
        "strength-nan": edit("s_nan", strength=NAN),
        "strength-inf": edit("s_inf", strength=INF),
        "strength-huge": edit("s_huge", strength=1e30),
        "std-negative": edit("std", std=-1.0),
        "std-huge": edit("std_huge", std=1e30),
        "unknown-space": edit("space", space="q"),
        "rows-out-of-range": edit("rows", layers=[0, 99]),
        "rows-negative": edit("rows_neg", layers=[-1]),
        "edit-unknown-type": edit("type", type="magic"),
        "edits-not-a-list": _rewrite(src, tmp / "edits_obj.safetensors", edits="5"),
        "edits-not-json": _rewrite(src, tmp / "edits_json.safetensors", edits="[{"),
        "origin-unknown-kind": _rewrite(src, tmp / "origin.safetensors", origin={"kind": "magic"}),
        "z-edit-huge-n": z_edit("zn", seed=3, index=0, n=10**12),
        "z-edit-bad-seed": z_edit("zseed", seed=-5),
        "z-edit-index-beyond-n": z_edit("zidx", seed=3, index=7, n=2),
        "unit-unknown-layer": unit_edit("u_layer", layer="b999.conv0"),
        "unit-torgb-layer": unit_edit("u_torgb", layer="b8.torgb"),
        "unit-unknown-units": unit_edit("u_units", units=[0, 99999]),
        "unit-negative-units": unit_edit("u_neg", units=[-3]),
        "unit-unknown-mode": unit_edit("u_mode", mode="explode"),
        "unit-value-nan": _rewrite(unit, tmp / "u_val.safetensors", {"edits.0.value": torch.tensor([NAN])}),
        "unit-mask-nan": _rewrite(unit, tmp / "u_mask.safetensors", {"edits.0.mask": torch.full((res, res), NAN)}),
        "unit-mask-wrong-size": _rewrite(unit, tmp / "u_mask_size.safetensors", {"edits.0.mask": torch.ones(5, 3)}),
        "huge-declared-tensor": _raw(tmp / "huge.safetensors", _huge_header(m, "latent.ws")),
        "huge-header-length": _raw(tmp / "huge_len.safetensors", {"__metadata__": m}, header_len=2**62),
        "shape-disagrees-with-offsets": _raw(tmp / "offsets.safetensors", {
            "__metadata__": m, "latent.ws": {"dtype": "F32", "shape": [10**6], "data_offsets": [0, 64]}}),
        "text-file": tmp / "notes.safetensors",
        "empty-file": tmp / "empty.safetensors",
        "not-a-recipe": _raw(tmp / "foreign.safetensors", {"__metadata__": {"format": "pt"}}, b""),
    }
    files["text-file"].write_text("just some text\n" * 10)
    files["empty-file"].write_bytes(b"")
    assert diskcache.model_hash(G) == m["model_hash"]
    return files


RECIPE_CASES = {
    "another-model": "made with model",
    "ws-wrong-shape": "latent has ws",
    "ws-wrong-width": "latent has ws",
    "ws-flat": "ws must be",
    "ws-missing": "damaged or inconsistent",
    "ws-nan": "finite",
    "ws-huge": "NaN / infinity",
    "styles-wrong-size": "styles must be",
    "direction-nan": "finite",
    "direction-wrong-size": "dimension",
    "direction-zero": "non-zero",
    "strength-nan": "finite",
    "strength-inf": "finite",
    "strength-huge": "strength",
    "std-negative": "std must be positive",
    "std-huge": "latent units",
    "unknown-space": "unknown latent space",
    "rows-out-of-range": "ws row 99",
    "rows-negative": "layers must be",
    "edit-unknown-type": "unknown type",
    "edits-not-a-list": "damaged or inconsistent",
    "edits-not-json": "damaged or inconsistent",
    "origin-unknown-kind": "origin kind",
    "z-edit-huge-n": "sample|seed",
    "z-edit-bad-seed": "seed",
    "z-edit-index-beyond-n": "index|sample",
    "unit-unknown-layer": "unknown layer",
    "unit-torgb-layer": "convolution layers",
    "unit-unknown-units": "does not exist",
    "unit-negative-units": "units must be",
    "unit-value-nan": "finite",
    "unit-mask-nan": "finite",
    "unit-mask-wrong-size": "the mask is",
    "unit-unknown-mode": "unknown unit edit mode",
    "huge-declared-tensor": "truncated or corrupted",
    "huge-header-length": "truncated or corrupted",
    "shape-disagrees-with-offsets": "truncated or corrupted",
    "text-file": "truncated or corrupted",
    "empty-file": "truncated or corrupted|empty",
    "not-a-recipe": "not a recipe",
}


@pytest.mark.parametrize("case", list(RECIPE_CASES))
def test_hostile_recipe_files(session, recipe_files, case):
    from gradio_client import handle_file

    _refused(session, ("tiny32", handle_file(str(recipe_files[case]))), "/recipe_open", RECIPE_CASES[case])
    _still_serving(session)


def test_a_good_recipe_still_opens(session, recipe_files):
    """Control for the cases above: the file they are made from opens."""
    from gradio_client import handle_file

    image, summary = session.predict("tiny32", handle_file(str(recipe_files["good"])), api_name="/recipe_open")
    assert image and "1. SeFa 'd': +1.00 std in w" in summary


@pytest.fixture(scope="module")
def direction_files(tmp_path_factory, tiny_generator):
    from interp.directions import DirectionSet, save_directions
    from interp.methods import sefa

    G = tiny_generator
    tmp = tmp_path_factory.mktemp("directions")
    dirs, values = sefa.directions(G, "all", 3)
    ds = DirectionSet.create(dirs, values, torch.ones(3), space="w", layers=range(G.num_ws), method="sefa",
                             model_id="tiny32", model_hash=G.content_hash())
    src = save_directions(ds, tmp / "good.safetensors")
    t, m = _read(src)
    naming = [{"index": 0, "phrase": "a smile", "entry": "a smile", "sign": 1, "score": 0.1, "confidence": 0.5}]
    files = {
        "good": src,
        "another-model": _rewrite(src, tmp / "other.safetensors", model_hash="0123456789abcdef"),
        "wrong-dimension": _rewrite(src, tmp / "dim.safetensors", {"directions": torch.ones(3, G.w_dim + 1)}),
        "s-space-wrong-dimension": _rewrite(src, tmp / "sdim.safetensors", space="s"),
        "values-wrong-shape": _rewrite(src, tmp / "values.safetensors", {"values": torch.ones(4)}),
        "directions-1d": _rewrite(src, tmp / "flat.safetensors", {"directions": torch.ones(G.w_dim)}),
        "directions-missing": _rewrite(src, tmp / "missing.safetensors", drop=["directions"]),
        "directions-nan": _rewrite(src, tmp / "nan.safetensors", {"directions": torch.full((3, G.w_dim), NAN)}),
        "values-nan": _rewrite(src, tmp / "values_nan.safetensors", {"values": torch.full((3,), NAN)}),
        "shares-inf": _rewrite(src, tmp / "shares_inf.safetensors", {"shares": torch.full((3,), INF)}),
        "stds-inf": _rewrite(src, tmp / "stds_inf.safetensors", {"stds": torch.full((3,), INF)}),
        "stds-zero": _rewrite(src, tmp / "stds_zero.safetensors", {"stds": torch.zeros(3)}),
        "rows-out-of-range": _rewrite(src, tmp / "rows.safetensors", layers=[0, 99]),
        "rows-negative": _rewrite(src, tmp / "rows_neg.safetensors", layers=[-1, 0]),
        "rows-fractional": _rewrite(src, tmp / "rows_frac.safetensors", layers=[0.5, 1.5]),
        "rows-not-a-list": _rewrite(src, tmp / "rows_obj.safetensors", layers={"a": 1}),
        "unknown-space": _rewrite(src, tmp / "space.safetensors", space="q"),
        "names-wrong-count": _rewrite(src, tmp / "names.safetensors", names=["a"]),
        "params-not-an-object": _rewrite(src, tmp / "params.safetensors", params=[1, 2]),
        "naming-malformed": _rewrite(src, tmp / "naming.safetensors", params={"naming": [{"phrase": 5}]}),
        "naming-not-a-list": _rewrite(src, tmp / "naming_obj.safetensors", params={"naming": "smile"}),
        "naming-confidence-nan": _rewrite(src, tmp / "naming_nan.safetensors",
                                          params={"naming": [{**naming[0], "confidence": NAN}]}),
        "naming-runner-sign": _rewrite(src, tmp / "naming_runner.safetensors",
                                      params={"naming": [{**naming[0], "runner_up": "a wide face", "runner_sign": 2}]}),
        "huge-declared-tensor": _raw(tmp / "huge.safetensors", _huge_header(m, "directions")),
        "huge-header-length": _raw(tmp / "huge_len.safetensors", {"__metadata__": m}, header_len=2**62),
        "text-file": tmp / "notes.safetensors",
        "a-recipe": None,
    }
    files["text-file"].write_text("just some text\n" * 10)
    runner = {**naming[0], "runner_up": "a wide face | a narrow face", "runner_sign": -1, "runner_score": 0.05}
    files["good-with-naming"] = _rewrite(src, tmp / "named.safetensors",          # older files have no runner-up
                                         params={"naming": naming * 2 + [{**runner, "index": 2}]})
    return files


DIRECTION_CASES = {
    "another-model": "directions for model",
    "wrong-dimension": "do not fit",
    "s-space-wrong-dimension": "do not fit",
    "values-wrong-shape": "damaged or inconsistent",
    "directions-1d": "damaged or inconsistent",
    "directions-missing": "lacks the tensors",
    "directions-nan": "finite",
    "values-nan": "finite",
    "shares-inf": "finite",
    "stds-inf": "finite",
    "stds-zero": "positive",
    "rows-out-of-range": "do not fit",
    "rows-negative": "layers must be",
    "rows-fractional": "layers must be",
    "rows-not-a-list": "layers must be",
    "unknown-space": "unknown latent space",
    "names-wrong-count": "names must have",
    "params-not-an-object": "params",
    "naming-malformed": "naming",
    "naming-not-a-list": "naming",
    "naming-confidence-nan": "naming",
    "naming-runner-sign": "naming",
    "huge-declared-tensor": "truncated or corrupted",
    "huge-header-length": "truncated or corrupted",
    "text-file": "truncated or corrupted",
    "a-recipe": "not a direction file",
}


@pytest.mark.parametrize("case", list(DIRECTION_CASES))
def test_hostile_direction_files(session, direction_files, recipe_files, case):
    from gradio_client import handle_file

    path = recipe_files["good"] if case == "a-recipe" else direction_files[case]
    _refused(session, ("tiny32", handle_file(str(path))), "/explore_import_directions", DIRECTION_CASES[case])
    _still_serving(session)


def test_good_direction_files_still_import(session, direction_files):
    """Control for the cases above: the files they are made from import (with and without CLIP names)."""
    from gradio_client import handle_file

    for case in ("good", "good-with-naming"):
        status, *updates = session.predict("tiny32", handle_file(str(direction_files[case])),
                                           api_name="/explore_import_directions")
        assert "Imported" in status and "3 directions" in status
    assert updates[0]["label"] == "a smile #0 (right = more)"                 # twice without a runner-up
    assert updates[2]["label"] == "a smile and a narrow face (right = more)"
    assert "next best phrase: a narrow face" in updates[2]["info"]
    _still_serving(session)
